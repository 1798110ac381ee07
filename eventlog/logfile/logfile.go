// Package logfile holds the registry of the measurement-log formats ccmr
// reads (one Codec per format: detect, show, replay) and the opened log
// (File) every reader goes through: `ccmr log show|replay|export`, the
// conformance tests, `ccmr evidence import` and the verifier's log layer.
// A format added here is read by all of them; NewRuntimeReader and
// NewIMAReader give the readers of runtime segments and IMA lists that
// start mid-log (monitor states) the same choice of parser.
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
	"github.com/ccmr-dev/ccmr/internal/termsafe"
	"github.com/ccmr-dev/ccmr/mr"
)

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

// File is an opened log: its name, its format and a way to read it from
// its start again (a log is sniffed, then parsed, and some formats are read
// twice).
type File struct {
	// Name names the log in errors.
	Name string
	// Format is the log's format, settled when the File is made.
	Format eventlog.Format
	f      io.ReadSeeker    // a file or bytes, rewound by Seek
	open   func() io.Reader // or a source that opens at the start (a bundle's log)
	closer io.Closer
	wrap   func(io.Reader) io.Reader
}

// Meter makes every later read of the log go through wrap (a progress
// meter's Reader), so a caller can show how far a long read has come.
func (lf *File) Meter(wrap func(io.Reader) io.Reader) { lf.wrap = wrap }

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
		head := make([]byte, SniffSize)
		n, err := io.ReadFull(f, head)
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			f.Close()
			return nil, err
		}
		ff, ok := Sniff(head[:n])
		if _, named := ima.FileNameFormat(path); named && (!ok || imaFormat(ff)) {
			// An IMA list's file name says its bank
			// (binary_runtime_measurements_sha384): it settles sha256
			// against sm3, and a name the contents contradict is refused.
			if ff, err = ima.DetectNamed(head[:n], path); err != nil {
				f.Close()
				return nil, &eventlog.Error{File: path, Record: -1, Err: err}
			}
			ok = true
		}
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

// FromOpener gives a log read through open, which returns a reader at the
// log's first byte each time (bundle.Log.Open(0): a member of a streamed
// bundle need not be held in memory), the same code path as Open. format
// must name the format (no sniffing).
func FromOpener(name string, open func() io.Reader, format eventlog.Format) *File {
	return &File{Name: name, Format: format, open: open}
}

// Close closes the file.
func (lf *File) Close() error {
	if lf.closer == nil {
		return nil
	}
	return lf.closer.Close()
}

func (lf *File) rewind() (io.Reader, error) {
	var r io.Reader
	if lf.open != nil {
		r = lf.open()
	} else {
		if _, err := lf.f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		r = lf.f
	}
	if lf.wrap != nil {
		r = lf.wrap(r)
	}
	return r, nil
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
	rd, _ := NewRuntimeReader(lf.Format, r, aael.Options{File: lf.Name}) // the codec's format is one
	return rd
}

func (lf *File) imaReader(r io.Reader) *ima.Reader {
	rd, _ := NewIMAReader(lf.Format, r, ima.Options{File: lf.Name}) // the codec's format is one
	return rd
}

// NewRuntimeReader reads the entries of a log of format f from r, which
// may start anywhere a segment or a monitor state says: the binary runtime
// log, its text form, or CEL-JSON (which takes only opt.File). Another
// format is an error wrapping mr.ErrUnsupported.
func NewRuntimeReader(f eventlog.Format, r io.Reader, opt aael.Options) (aael.EntryReader, error) {
	switch f {
	case eventlog.FormatRuntime:
		return aael.NewReader(r, opt), nil
	case eventlog.FormatAAELText:
		return aael.NewTextReader(r, opt), nil
	case eventlog.FormatCELJSON:
		return cel.NewRuntimeReader(r, opt.File), nil
	}
	return nil, fmt.Errorf("%s: %w: format %q is not a runtime log", opt.File, mr.ErrUnsupported, f)
}

// NewIMAReader reads the entries of an IMA list of format f from r: the
// SHA-1 list (ima-binary, ima-ascii) or a per-bank list of Linux 6.10 and
// later (ima-binary-sha256, ima-ascii-sha384, ...; see ima.BankFormat),
// whose bank it sets. Another format is an error wrapping
// mr.ErrUnsupported.
func NewIMAReader(f eventlog.Format, r io.Reader, opt ima.Options) (*ima.Reader, error) {
	if !imaFormat(f) {
		return nil, fmt.Errorf("%s: %w: format %q is not an IMA list", opt.File, mr.ErrUnsupported, f)
	}
	return ima.NewFormatReader(f, r, opt)
}

// imaFormat reports whether f is an IMA list format, of any bank.
func imaFormat(f eventlog.Format) bool {
	_, _, ok := ima.FormatBank(f)
	return ok
}

// Show calls fn for every event of the log in order, through the codec of
// its format.
func (lf *File) Show(ctx context.Context, opts Options, fn func(eventlog.Event) error) error {
	c, err := lf.codec()
	if err != nil {
		return err
	}
	return c.Show(ctx, lf, opts, fn)
}

// Replay replays the log through the codec of its format and compares the
// result with opts.Expect. The result is returned with a mismatch too.
func (lf *File) Replay(ctx context.Context, opts Options) (*eventlog.Replay, error) {
	c, err := lf.codec()
	if err != nil {
		return nil, err
	}
	return c.Replay(ctx, lf, opts)
}

// Check reads every record of the log and replays it without expected
// values: what `ccmr evidence import` runs before a log enters a bundle.
// Bad input is an error; a record that contradicts its own content (an
// *eventlog.Mismatch) is not, so that verify, not import, judges it.
func (lf *File) Check(ctx context.Context, opts Options) error {
	opts.Expect = nil
	_, err := lf.Replay(ctx, opts)
	if errors.Is(err, eventlog.ErrMismatch) {
		return nil
	}
	return err
}

func (lf *File) codec() (Codec, error) {
	c, ok := Lookup(lf.Format)
	if !ok {
		return nil, fmt.Errorf("%s: %w: format %q (want one of %s)", lf.Name, mr.ErrUnsupported, lf.Format, FormatList())
	}
	return c, nil
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
	switch {
	case lf.Format == eventlog.FormatRuntime || lf.Format == eventlog.FormatAAELText || lf.Format == eventlog.FormatCELJSON:
		return cel.ExportRuntime(w, lf.runtimeReader(r), cel.Seq)
	case imaFormat(lf.Format):
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
	if !imaFormat(lf.Format) {
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
