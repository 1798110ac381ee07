package logfile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/eventlog/cel"
	"github.com/ccmr-dev/ccmr/eventlog/dstack"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/eventlog/tcg"
	"github.com/ccmr-dev/ccmr/mr"
)

// ---- TCG2 and CCEL firmware logs -------------------------------------------

// tcgCodec reads the TCG PC Client (crypto-agile or SHA-1) log and the
// CCEL, both parsed whole.
type tcgCodec struct{ f eventlog.Format }

func (c tcgCodec) Format() eventlog.Format          { return c.f }
func (c tcgCodec) Role() Role                       { return RoleFirmware }
func (c tcgCodec) Detect(head []byte) bool          { return detectTCG(head, c.f) }
func (c tcgCodec) parse(lf *File) (*tcg.Log, error) { return ParseFirmware(lf) }

func (c tcgCodec) Show(ctx context.Context, lf *File, opts Options, fn func(eventlog.Event) error) error {
	l, err := c.parse(lf)
	if err != nil {
		return err
	}
	// The verifier fails a log on the first record whose event data its
	// type's rules refute (tcg.Log.CheckEventData: an EV_NO_ACTION record
	// in no TCG-defined form, data that does not hash to its digest); show
	// flags that record with the verifier's reason. Replay does not fail on
	// it: real logs hold such records (go-attestation's option ROM log),
	// and a replay uses the digests only.
	var refuted *eventlog.Mismatch
	if _, err := l.CheckEventData(); !errors.As(err, &refuted) && err != nil {
		return err
	}
	for ev := range l.Show() {
		if refuted != nil && ev.Index == refuted.Record {
			p := "the verifier refuses this record: " + refuted.Reason
			if !slices.Contains(ev.Problems, p) {
				ev.Problems = append(ev.Problems, p)
			}
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	return nil
}

func (c tcgCodec) Replay(ctx context.Context, lf *File, opts Options) (*eventlog.Replay, error) {
	l, err := c.parse(lf)
	if err != nil {
		return nil, err
	}
	res, err := l.Replay()
	if err != nil {
		return res, err
	}
	return res, check(lf.Name, res, opts.Expect)
}

// ParseFirmware parses a TCG2 or CCEL log whole (the verifier reads the
// parsed log's event data too).
func ParseFirmware(lf *File) (*tcg.Log, error) {
	if c, ok := Lookup(lf.Format); !ok || c.Role() != RoleFirmware {
		return nil, fmt.Errorf("%s: %w: format %q is not a firmware log", lf.Name, mr.ErrUnsupported, lf.Format)
	}
	data, err := lf.all()
	if err != nil {
		return nil, err
	}
	return tcg.Parse(lf.Name, data, lf.Format)
}

// ---- IMA measurement lists -------------------------------------------------

// imaCodec streams an IMA list (binary_runtime_measurements or the ASCII
// form, or a per-bank list of Linux 6.10 and later:
// binary_runtime_measurements_sha256, ...), which may be large.
type imaCodec struct{ f eventlog.Format }

func (c imaCodec) Format() eventlog.Format { return c.f }
func (c imaCodec) Role() Role              { return RoleIMA }
func (c imaCodec) Detect(head []byte) bool { return detectIMA(head, c.f) }

func (c imaCodec) Show(ctx context.Context, lf *File, opts Options, fn func(eventlog.Event) error) error {
	r, err := lf.rewind()
	if err != nil {
		return err
	}
	rd := lf.imaReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(ima.Event(lf.Name, e, opts.Banks)); err != nil {
			return err
		}
	}
}

// Replay replays PCR banks, and the mr_ima fold when Expect names it.
func (c imaCodec) Replay(ctx context.Context, lf *File, opts Options) (*eventlog.Replay, error) {
	var pcrExpect []mr.Value
	var virt *mr.Value
	for _, v := range opts.Expect {
		if v.Register.Name == ima.VirtualName {
			v := v
			virt = &v
		} else {
			pcrExpect = append(pcrExpect, v)
		}
	}
	r, err := lf.rewind()
	if err != nil {
		return nil, err
	}
	res, err := ima.Replay(ctx, lf.imaReader(r), ima.ReplayOptions{File: lf.Name, Banks: opts.Banks, Expect: pcrExpect})
	if err != nil || virt == nil {
		return res, err
	}
	if r, err = lf.rewind(); err != nil {
		return res, err
	}
	vr, err := ima.ReplayVirtual(ctx, lf.imaReader(r), ima.VirtualOptions{File: lf.Name, Expect: virt.Digest})
	if vr != nil {
		res.Virtual = vr.Virtual
	}
	return res, err
}

// ---- the CC runtime log and CEL-JSON ---------------------------------------

// runtimeCodec reads the CC runtime log (binary, its text form) and
// CEL-JSON, whose records aael replays.
type runtimeCodec struct{ f eventlog.Format }

func (c runtimeCodec) Format() eventlog.Format { return c.f }

func (c runtimeCodec) Role() Role {
	if c.f == eventlog.FormatCELJSON {
		return RoleWhole
	}
	return RoleRuntime
}

func (c runtimeCodec) Detect(head []byte) bool {
	if c.f == eventlog.FormatCELJSON {
		return detectCELJSON(head)
	}
	return detectAAEL(head, c.f)
}

func (c runtimeCodec) Show(ctx context.Context, lf *File, opts Options, fn func(eventlog.Event) error) error {
	r, err := lf.rewind()
	if err != nil {
		return err
	}
	name := aael.TDXName
	if opts.TPM {
		name = aael.PCRName
	}
	_, err = aael.Replay(lf.runtimeReader(r), aael.ReplayOptions{File: lf.Name, Name: name,
		OnEntry: func(e *aael.Entry) error {
			return fn(eventlog.Event{Index: e.Index, Offset: e.Offset, Register: name(e.MRIndex), Type: runtimeType(e),
				Digests: []mr.Digest{e.Digest}, Text: e.Text(), DigestOnly: e.Foreign})
		}})
	return err
}

func (c runtimeCodec) Replay(ctx context.Context, lf *File, opts Options) (*eventlog.Replay, error) {
	r, err := lf.rewind()
	if err != nil {
		return nil, err
	}
	ro := aael.ReplayOptions{File: lf.Name}
	if opts.TPM {
		ro.Name = aael.PCRName
	}
	res, err := aael.Replay(lf.runtimeReader(r), ro)
	if err != nil {
		if res != nil {
			return &res.Replay, err
		}
		return nil, err
	}
	return &res.Replay, check(lf.Name, &res.Replay, opts.Expect)
}

func runtimeType(e *aael.Entry) string {
	switch e.Type {
	case aael.EvNoAction:
		return "EV_NO_ACTION"
	case aael.EvEventTag:
		return "EV_EVENT_TAG"
	}
	return fmt.Sprintf("0x%x", e.Type)
}

// ---- CEL-TLV ----------------------------------------------------------------

// celTLVCodec reads the TCG Canonical Event Log in its TLV encoding.
type celTLVCodec struct{}

func (celTLVCodec) Format() eventlog.Format { return eventlog.FormatCELTLV }
func (celTLVCodec) Role() Role              { return RoleWhole }
func (celTLVCodec) Detect(head []byte) bool { return detectCELTLV(head) }

func (celTLVCodec) Show(ctx context.Context, lf *File, opts Options, fn func(eventlog.Event) error) error {
	alg := lf.tlvAlg(opts)
	r, err := lf.rewind()
	if err != nil {
		return err
	}
	_, err = cel.ReplayTLV(cel.NewTLVReader(r, lf.Name), cel.TLVReplayOptions{File: lf.Name, Alg: alg, OnRecord: func(t *cel.TLVRecord) error {
		return fn(eventlog.Event{Index: t.Index, Offset: t.Offset, Register: cel.DefaultTLVName(t.IndexType, t.Register),
			Type: fmt.Sprintf("content type %d", t.ContentType), Digests: t.Digests, Text: printable(t.Content),
			DigestOnly: t.ContentType != cel.TLVCOSEvent})
	}})
	return err
}

func (celTLVCodec) Replay(ctx context.Context, lf *File, opts Options) (*eventlog.Replay, error) {
	alg := lf.tlvAlg(opts)
	r, err := lf.rewind()
	if err != nil {
		return nil, err
	}
	res, err := cel.ReplayTLV(cel.NewTLVReader(r, lf.Name), cel.TLVReplayOptions{File: lf.Name, Alg: alg})
	if err != nil {
		return res, err
	}
	return res, check(lf.Name, res, opts.Expect)
}

// ---- dstack -----------------------------------------------------------------

// dstackCodec reads dstack's JSON event log of RTMR0-3.
type dstackCodec struct{}

func (dstackCodec) Format() eventlog.Format { return eventlog.FormatDstackJSON }
func (dstackCodec) Role() Role              { return RoleWhole }
func (dstackCodec) Detect(head []byte) bool { return detectDstack(head) }

func (dstackCodec) Show(ctx context.Context, lf *File, opts Options, fn func(eventlog.Event) error) error {
	r, err := lf.rewind()
	if err != nil {
		return err
	}
	_, err = dstack.Replay(dstack.NewReader(r, lf.Name), lf.Name, func(e *dstack.Event) error {
		ev := eventlog.Event{Index: e.Index, Offset: e.Offset, Register: dstack.Register(e.IMR), Type: fmt.Sprintf("0x%08x", e.EventType),
			Digests: []mr.Digest{e.Digest}, Text: dstackText(e), DigestOnly: !e.Recomputed()}
		if err := e.Check(lf.Name); err != nil {
			ev.Problems = append(ev.Problems, err.Error())
		}
		return fn(ev)
	})
	var mm *eventlog.Mismatch
	if errors.As(err, &mm) {
		return nil // shown as a problem of its event
	}
	return err
}

func (dstackCodec) Replay(ctx context.Context, lf *File, opts Options) (*eventlog.Replay, error) {
	r, err := lf.rewind()
	if err != nil {
		return nil, err
	}
	res, err := dstack.Replay(dstack.NewReader(r, lf.Name), lf.Name, nil)
	if err != nil {
		return res, err
	}
	return res, check(lf.Name, res, opts.Expect)
}
