package logfile

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/cel"
	"github.com/ccmr-dev/ccmr/mr"
)

// ---- systemd's userspace measurement log -----------------------------------

// systemdCodec reads systemd's /run/log/systemd/tpm2-measure.log
// (eventlog/cel: SystemdReader): CEL-JSON records of content type
// "systemd", one digest per bank, on PCRs or NV indexes.
type systemdCodec struct{}

func (systemdCodec) Format() eventlog.Format { return eventlog.FormatSystemd }
func (systemdCodec) Role() Role              { return RoleUserspace }
func (systemdCodec) Detect(head []byte) bool { return detectSystemd(head) }

// detectSystemd recognises systemd's log by its first record: RS, then an
// object whose content_type is "systemd". ccmr's own CEL-JSON exports never
// carry that content type.
func detectSystemd(head []byte) bool {
	if len(head) == 0 || head[0] != 0x1e {
		return false
	}
	rec := head[1:]
	if i := bytes.IndexByte(rec, 0x1e); i >= 0 {
		rec = rec[:i]
	}
	_, err := cel.NewSystemdReader(bytes.NewReader(append([]byte{0x1e}, rec...)), "").Next()
	return err == nil
}

// Show shows every record, a record without a digest of a bank the first
// PCR record carries flagged (replay refuses it).
func (systemdCodec) Show(ctx context.Context, lf *File, opts Options, fn func(eventlog.Event) error) error {
	r, err := lf.rewind()
	if err != nil {
		return err
	}
	rd := cel.NewSystemdReader(r, lf.Name)
	var banks []mr.Alg
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		rec, err := rd.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		ev := SystemdEvent(rec)
		if !rec.IsNV {
			if banks == nil {
				for _, d := range rec.Digests {
					banks = append(banks, d.Alg)
				}
			}
			for _, a := range banks {
				if _, ok := rec.Digest(a); !ok {
					ev.Problems = append(ev.Problems, fmt.Sprintf("no %v digest (the first record has one): %s %v cannot be replayed", a, rec.Register(), a))
				}
			}
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
}

// SystemdEvent is how `ccmr log show` and the verifier see a record of
// systemd's log. Its text is bound to its digests only when every digest is
// the hash of the content string (a phase word, machine-id:...); otherwise
// (cryptsetup's HMAC of a volume key, NV index records) it is DigestOnly.
func SystemdEvent(rec *cel.SystemdRecord) eventlog.Event {
	c := rec.Content
	typ := "systemd"
	if c.EventType != "" {
		typ = "systemd " + c.EventType
	}
	text := ""
	if c.String != nil {
		text = strconv.Quote(*c.String) // escapes what a terminal would act on
	}
	ev := eventlog.Event{Index: rec.Index, Offset: rec.Offset, Register: rec.Register(), Type: typ,
		Digests: rec.Digests, Text: text, DigestOnly: !rec.ContentMatches()}
	if rec.IsNV {
		ev.Problems = append(ev.Problems, "an NV index record: a PCR replay does not judge it")
	}
	if c.EventType == "phase" && ev.DigestOnly {
		ev.Problems = append(ev.Problems, "a phase record whose digests are not the hash of its word")
	}
	return ev
}

// Replay replays the log from the reset values in the banks of opts.Banks,
// by default every bank its first PCR record carries (and those Expect
// names).
func (systemdCodec) Replay(ctx context.Context, lf *File, opts Options) (*eventlog.Replay, error) {
	res, err := ReplaySystemd(ctx, lf, opts, nil)
	if err != nil {
		return nil, err
	}
	return &res.Replay, check(lf.Name, &res.Replay, opts.Expect)
}

// ReplaySystemd replays a systemd log with its registers starting at start
// (the verifier's joint replay: the firmware log's end values); a register
// start does not name starts at its reset value. Banks are opts.Banks, else
// those of the first PCR record plus those opts.Expect names.
func ReplaySystemd(ctx context.Context, lf *File, opts Options, start []mr.Value) (*cel.SystemdReplay, error) {
	if lf.Format != eventlog.FormatSystemd {
		return nil, fmt.Errorf("%s: %w: format %q is not systemd's log", lf.Name, mr.ErrUnsupported, lf.Format)
	}
	banks := append([]mr.Alg(nil), opts.Banks...)
	if len(banks) == 0 && len(opts.Expect) > 0 {
		r, err := lf.rewind()
		if err != nil {
			return nil, err
		}
		sr := cel.NewSystemdReader(r, lf.Name)
		for {
			rec, err := sr.Next()
			if err != nil {
				break // Replay below reports it
			}
			if !rec.IsNV {
				for _, d := range rec.Digests {
					banks = append(banks, d.Alg)
				}
				break
			}
		}
		for _, e := range opts.Expect {
			if !containsAlg(banks, e.Digest.Alg) {
				banks = append(banks, e.Digest.Alg)
			}
		}
	}
	r, err := lf.rewind()
	if err != nil {
		return nil, err
	}
	return cel.ReplaySystemd(cel.NewSystemdReader(r, lf.Name), cel.SystemdReplayOptions{File: lf.Name, Banks: banks, Start: start,
		OnRecord: func(*cel.SystemdRecord) error { return ctx.Err() }})
}

func containsAlg(as []mr.Alg, a mr.Alg) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}
