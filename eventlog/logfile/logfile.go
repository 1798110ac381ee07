// Package logfile opens a measurement log of any format ccmr reads and gives
// the one code path that `ccmr log show`, `ccmr log replay`, the verifier and
// the conformance tests share: sniff the format, stream the events, replay
// and compare with expected values.
package logfile

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"syscall"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/eventlog/cel"
	"github.com/ccmr-dev/ccmr/eventlog/dstack"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/eventlog/tcg"
	"github.com/ccmr-dev/ccmr/internal/termsafe"
	"github.com/ccmr-dev/ccmr/mr"
)

// Formats lists the names --format accepts.
var formats = []eventlog.Format{eventlog.FormatAuto, eventlog.FormatTCG2, eventlog.FormatCCEL, eventlog.FormatIMABinary, eventlog.FormatIMAASCII,
	eventlog.FormatRuntime, eventlog.FormatAAELText, eventlog.FormatCELJSON, eventlog.FormatCELTLV, eventlog.FormatDstackJSON}

// ParseFormat checks a --format value.
func ParseFormat(s string) (eventlog.Format, error) {
	if s == "" {
		return eventlog.FormatAuto, nil
	}
	for _, f := range formats {
		if string(f) == s {
			return f, nil
		}
	}
	return "", fmt.Errorf("%w: format %q (want one of auto, tcg2, ccel, ima-binary, ima-ascii, runtime, aael-text, cel-json, cel-tlv, dstack-json)", mr.ErrUnsupported, s)
}

// Sniff guesses a log's format from its first bytes.
func Sniff(head []byte) (eventlog.Format, bool) {
	if f, ok := aael.Sniff(head); ok {
		return f, true
	}
	if f, ok := tcg.Sniff(head); ok {
		return f, true
	}
	if f, ok := ima.Detect(head); ok {
		return f, true
	}
	if dstack.Sniff(head) {
		return eventlog.FormatDstackJSON, true
	}
	if isCELTLV(head) {
		return eventlog.FormatCELTLV, true
	}
	if t := bytes.TrimLeft(head, " \t\r\n[\x1e"); bytes.HasPrefix(t, []byte("{")) && bytes.Contains(head, []byte(`"content_type"`)) {
		return eventlog.FormatCELJSON, true
	}
	return "", false
}

// isCELTLV recognises a CEL-TLV log by its first TLV: the recnum (type 0)
// with an 8-byte big-endian value.
func isCELTLV(head []byte) bool {
	return len(head) >= 5 && head[0] == 0 && head[1] == 0 && head[2] == 0 && head[3] == 0 && head[4] == 8
}

// Options configure Show and Replay.
type Options struct {
	// Format is the log's format; auto sniffs it.
	Format eventlog.Format
	// Banks are the IMA PCR banks to compute (default sha1 and sha256, plus
	// those Expect names).
	Banks []mr.Alg
	// Expect are expected register values; a difference is a *eventlog.Mismatch.
	Expect []mr.Value
	// TPM makes a runtime log's MR indexes PCR numbers (a log on a TPM);
	// by default they are CC MR indexes (4 = rtmr3).
	TPM bool
}

// File is an opened log: its name, format and the bytes of formats that are
// parsed whole (firmware logs are small; IMA lists are streamed instead).
type File struct {
	Name   string
	Format eventlog.Format
	f      io.ReadSeeker
	closer io.Closer
}

// fileKind names what a non-regular file is, for errors.
func fileKind(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a folder"
	case m&os.ModeSocket != 0:
		return "a socket"
	}
	return "a special file"
}

// MaxWhole bounds a log parsed whole (TCG2 and CCEL firmware logs, a few
// hundred KiB in practice): a larger file is bad input, not a reason to fill
// memory.
const MaxWhole = 64 << 20

// Open opens path and settles its format. path must be a regular file: a
// log is read more than once (sniffed, then parsed from its start), and a
// FIFO or a device such as /dev/zero would block in open or never end. It
// is opened with O_NONBLOCK so that a FIFO without a writer is refused at
// once instead of blocking (the flag does nothing to a regular file).
func Open(path string, format eventlog.Format) (*File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("%w: %s, not a regular file: a log must be a file", mr.ErrMalformed, fileKind(fi.Mode()))
		}
		return nil, &eventlog.Error{File: path, Record: -1, Err: err}
	}
	lf := &File{Name: path, Format: format, f: f, closer: f}
	if format == "" || format == eventlog.FormatAuto {
		head := make([]byte, 64<<10)
		n, err := io.ReadFull(f, head)
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			f.Close()
			return nil, err
		}
		ff, ok := Sniff(head[:n])
		if !ok {
			f.Close()
			return nil, &eventlog.Error{File: path, Record: -1, Err: fmt.Errorf("%w: unknown log format (give --format)", mr.ErrMalformed)}
		}
		lf.Format = ff
	}
	return lf, nil
}

// FromBytes gives a log held in memory (a bundle's) the same code path as
// Open. format must name the format (no sniffing); name names it in errors.
func FromBytes(name string, data []byte, format eventlog.Format) *File {
	return &File{Name: name, Format: format, f: bytes.NewReader(data)}
}

// Close closes the file.
func (lf *File) Close() error {
	if lf.closer == nil {
		return nil
	}
	return lf.closer.Close()
}

func (lf *File) rewind() (io.Reader, error) {
	if _, err := lf.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return lf.f, nil
}

func (lf *File) all() ([]byte, error) {
	r, err := lf.rewind()
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(r, MaxWhole+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxWhole {
		return nil, &eventlog.Error{File: lf.Name, Record: -1, Err: fmt.Errorf("%w: a %s log larger than %d bytes", mr.ErrMalformed, lf.Format, MaxWhole)}
	}
	return b, nil
}

func (lf *File) runtimeReader(r io.Reader) aael.EntryReader {
	if lf.Format == eventlog.FormatCELJSON {
		return cel.NewRuntimeReader(r, lf.Name)
	}
	if lf.Format == eventlog.FormatAAELText {
		return aael.NewTextReader(r, aael.Options{File: lf.Name})
	}
	return aael.NewReader(r, aael.Options{File: lf.Name})
}

func (lf *File) imaReader(r io.Reader) *ima.Reader {
	if lf.Format == eventlog.FormatIMAASCII {
		return ima.NewASCIIReader(r, ima.Options{File: lf.Name})
	}
	return ima.NewBinaryReader(r, ima.Options{File: lf.Name})
}

// Show calls fn for every event of the log in order.
func (lf *File) Show(ctx context.Context, opts Options, fn func(eventlog.Event) error) error {
	switch lf.Format {
	case eventlog.FormatTCG2, eventlog.FormatCCEL:
		data, err := lf.all()
		if err != nil {
			return err
		}
		l, err := tcg.Parse(lf.Name, data, lf.Format)
		if err != nil {
			return err
		}
		for ev := range l.Show() {
			if err := fn(ev); err != nil {
				return err
			}
		}
		return nil
	case eventlog.FormatIMABinary, eventlog.FormatIMAASCII:
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
	case eventlog.FormatDstackJSON:
		r, err := lf.rewind()
		if err != nil {
			return err
		}
		_, err = dstack.Replay(dstack.NewReader(r, lf.Name), lf.Name, func(e *dstack.Event) error {
			ev := eventlog.Event{Index: e.Index, Offset: e.Offset, Register: dstack.Register(e.IMR), Type: fmt.Sprintf("0x%08x", e.EventType),
				Digests: []mr.Digest{e.Digest}, Text: dstackText(e)}
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
	case eventlog.FormatCELTLV:
		alg := lf.tlvAlg(opts)
		r, err := lf.rewind()
		if err != nil {
			return err
		}
		_, err = cel.ReplayTLV(cel.NewTLVReader(r, lf.Name), cel.TLVReplayOptions{File: lf.Name, Alg: alg, OnRecord: func(t *cel.TLVRecord) error {
			return fn(eventlog.Event{Index: t.Index, Offset: t.Offset, Register: cel.DefaultTLVName(t.IndexType, t.Register),
				Type: fmt.Sprintf("content type %d", t.ContentType), Digests: t.Digests, Text: printable(t.Content)})
		}})
		return err
	case eventlog.FormatRuntime, eventlog.FormatAAELText, eventlog.FormatCELJSON:
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
					Digests: []mr.Digest{e.Digest}, Text: e.Text()})
			}})
		return err
	}
	return fmt.Errorf("%s: %w: format %s cannot be shown yet", lf.Name, mr.ErrUnsupported, lf.Format)
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

// Replay replays the log and compares the result with opts.Expect. The
// result is returned with a mismatch too.
func (lf *File) Replay(ctx context.Context, opts Options) (*eventlog.Replay, error) {
	switch lf.Format {
	case eventlog.FormatTCG2, eventlog.FormatCCEL:
		data, err := lf.all()
		if err != nil {
			return nil, err
		}
		l, err := tcg.Parse(lf.Name, data, lf.Format)
		if err != nil {
			return nil, err
		}
		res, err := l.Replay()
		if err != nil {
			return res, err
		}
		return res, check(lf.Name, res, opts.Expect)
	case eventlog.FormatIMABinary, eventlog.FormatIMAASCII:
		return lf.replayIMA(ctx, opts)
	case eventlog.FormatDstackJSON:
		r, err := lf.rewind()
		if err != nil {
			return nil, err
		}
		res, err := dstack.Replay(dstack.NewReader(r, lf.Name), lf.Name, nil)
		if err != nil {
			return res, err
		}
		return res, check(lf.Name, res, opts.Expect)
	case eventlog.FormatCELTLV:
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
	case eventlog.FormatRuntime, eventlog.FormatAAELText, eventlog.FormatCELJSON:
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
	return nil, fmt.Errorf("%s: %w: format %s cannot be replayed yet", lf.Name, mr.ErrUnsupported, lf.Format)
}

// replayIMA replays PCR banks, and the mr_ima fold when Expect names it.
func (lf *File) replayIMA(ctx context.Context, opts Options) (*eventlog.Replay, error) {
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

// check compares replayed values with expected ones, in a stable order.
func check(file string, res *eventlog.Replay, expect []mr.Value) error {
	exp := append([]mr.Value(nil), expect...)
	sort.SliceStable(exp, func(i, j int) bool { return exp[i].Register.Name < exp[j].Register.Name })
	for _, want := range exp {
		got, ok := find(res, want.Register.Name, want.Digest.Alg)
		if !ok {
			if isZero(want.Digest.Bytes) {
				continue // a register the log never extends holds zeros
			}
			return &eventlog.Mismatch{File: file, Register: want.Register.Name, Record: -1, Expected: want.Digest,
				Reason: "the log does not extend this register in this bank"}
		}
		if !got.Equal(want.Digest) {
			return &eventlog.Mismatch{File: file, Register: want.Register.Name, Record: -1, Expected: want.Digest, Computed: got,
				Reason: "replayed value differs"}
		}
	}
	return nil
}

func find(res *eventlog.Replay, name string, alg mr.Alg) (mr.Digest, bool) {
	for _, list := range [][]mr.Value{res.Registers, res.Virtual} {
		for _, v := range list {
			if v.Register.Name == name && v.Digest.Alg == alg {
				return v.Digest, true
			}
		}
	}
	return mr.Digest{}, false
}

func isZero(b []byte) bool { return len(bytes.Trim(b, "\x00")) == 0 }

// tlvAlg is the bank a CEL-TLV replay uses: the first asked for, else the
// one an expectation names, else the first record's first digest's.
func (lf *File) tlvAlg(opts Options) mr.Alg {
	if len(opts.Banks) > 0 {
		return opts.Banks[0]
	}
	for _, e := range opts.Expect {
		return e.Digest.Alg
	}
	if r, err := lf.rewind(); err == nil {
		if rec, err := cel.NewTLVReader(r, lf.Name).Next(); err == nil && len(rec.Digests) > 0 {
			return rec.Digests[0].Alg
		}
	}
	return mr.SHA256
}

// printable shows event content for people: text as text, else its size.
func printable(b []byte) string {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return fmt.Sprintf("%d bytes", len(b))
		}
	}
	return string(b)
}

// ExportCELJSON writes the log as CEL-JSON (JSON text sequences, as systemd
// writes its measurement log): runtime logs as "aael" records, IMA lists as
// "ima_template" records with the template hash of every bank in opts.Banks
// (default sha1 and sha256).
func (lf *File) ExportCELJSON(ctx context.Context, w io.Writer, opts Options) (int, error) {
	r, err := lf.rewind()
	if err != nil {
		return 0, err
	}
	switch lf.Format {
	case eventlog.FormatRuntime, eventlog.FormatAAELText, eventlog.FormatCELJSON:
		return cel.ExportRuntime(w, lf.runtimeReader(r), cel.Seq)
	case eventlog.FormatIMABinary, eventlog.FormatIMAASCII:
		banks := opts.Banks
		if len(banks) == 0 {
			banks = []mr.Alg{mr.SHA1, mr.SHA256}
		}
		cw := cel.NewWriter(w, cel.Seq)
		rd := lf.imaReader(r)
		n := 0
		for {
			if err := ctx.Err(); err != nil {
				return n, err
			}
			e, err := rd.Next()
			if errors.Is(err, io.EOF) {
				return n, cw.Close()
			}
			if err != nil {
				return n, err
			}
			ds := make([]mr.Digest, 0, len(banks))
			for _, b := range banks {
				d, err := ima.TemplateHash(e, b, false)
				if err != nil {
					return n, err
				}
				ds = append(ds, d)
			}
			rec, err := cel.IMARecord(uint64(n), uint32(e.PCR), ds, e.TemplateName, e.TemplateData)
			if err != nil {
				return n, err
			}
			if err := cw.Write(rec); err != nil {
				return n, err
			}
			n++
		}
	}
	return 0, fmt.Errorf("%s: %w: export of %s to cel-json", lf.Name, mr.ErrUnsupported, lf.Format)
}

// CheckIMASignatures verifies the signature of every signed entry of an IMA
// list against keys (`ccmr log replay --ima-keys`).
func (lf *File) CheckIMASignatures(keys []ima.Key, requireAll bool) (ima.SignatureReport, error) {
	if lf.Format != eventlog.FormatIMABinary && lf.Format != eventlog.FormatIMAASCII {
		return ima.SignatureReport{}, fmt.Errorf("%s: %w: --ima-keys needs an IMA list, not %s", lf.Name, mr.ErrUnsupported, lf.Format)
	}
	r, err := lf.rewind()
	if err != nil {
		return ima.SignatureReport{}, err
	}
	return ima.CheckSignatures(lf.imaReader(r), lf.Name, keys, -1, requireAll)
}

// dstackText shows a dstack event's name and payload (the payload is what
// a relying party judges: an app-id, a compose hash), both escaped for a
// terminal, and says when the digest does not bind them.
func dstackText(e *dstack.Event) string {
	p := "hex:" + hex.EncodeToString(e.Payload)
	if len(e.Payload) > 0 && termsafe.Safe(string(e.Payload)) {
		p = strconv.Quote(string(e.Payload))
	}
	t := fmt.Sprintf("%s payload %s", strconv.Quote(e.Name), p)
	if !e.Recomputed() {
		t += " (boot event: the digest is not recomputed from name and payload)"
	}
	return t
}
