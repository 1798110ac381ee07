package aael

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// MaxEventSize bounds the event of one entry of an embedding CCEL or TCG2
// log (Options.Embedded); ccmr's own entries are bounded by MaxRecordSize.
const MaxEventSize = 16 << 20

// ErrTruncated marks a log that ends inside an entry (a writer that died in
// the middle of its write). It wraps mr.ErrMalformed.
var ErrTruncated = fmt.Errorf("%w: truncated entry", mr.ErrMalformed)

// Options configure a Reader.
type Options struct {
	// File names the input in errors.
	File string
	// Embedded reads AAEL entries embedded in a CCEL or TCG2 log, as the
	// attestation agent appends them to the CCEL it reports (Trustee's
	// CCEL_AAEL sample): a leading SHA-1 format Spec ID header is skipped,
	// entries that are not AAEL tagged events are returned as Foreign
	// entries, several MR indices may appear, and trailing 0xFF or 0x00
	// padding ends the eventlog. Without it the reader accepts only ccmr's own
	// headerless runtime log: AAEL entries of one MR index and one
	// algorithm, optionally after one INIT entry.
	Embedded bool
	// MRIndex is the MR index the aael-text form (which carries none)
	// reports in every entry. The binary reader uses it only with
	// Continue.
	MRIndex uint32
	// Continue reads a log from the middle, after entries read earlier
	// (a monitor state resuming at the offset it verified): every entry
	// must use Alg and, in the binary form, MRIndex, as the earlier ones
	// did, and an INIT entry (or INIT line) is refused there as it is
	// after a log's first entry. An empty input is then no error.
	// Ignored with Embedded.
	Continue bool
	// Alg is the digest algorithm of the earlier entries (with Continue).
	Alg mr.Alg
}

// EntryReader is what Replay consumes: the binary Reader and the TextReader.
type EntryReader interface {
	// Next returns the next entry, or io.EOF after the last one. Bad input
	// is a *eventlog.Error.
	Next() (*Entry, error)
}

// Reader reads the binary runtime log (headerless TCG_PCR_EVENT2 entries)
// one entry at a time; memory stays bounded by the largest entry.
type Reader struct {
	br     *bufio.Reader
	opt    Options
	off    int64
	n      int
	buf    []byte
	alg    mr.Alg
	mri    uint32
	seen   bool
	done   bool
	err    error
	hdr    [64]byte
	sawRec bool
}

// NewReader returns a Reader of r.
func NewReader(r io.Reader, opt Options) *Reader {
	rd := &Reader{br: bufio.NewReaderSize(r, 64<<10), opt: opt}
	if opt.Continue && !opt.Embedded {
		rd.seen, rd.alg, rd.mri, rd.sawRec = true, opt.Alg, opt.MRIndex, true
		if !opt.Alg.Valid() {
			rd.fail(0, "%w: continuing a log whose digest algorithm %v is unknown", mr.ErrUnsupported, opt.Alg)
		}
	}
	return rd
}

func (r *Reader) fail(off int64, format string, a ...any) error {
	err := fmt.Errorf(format, a...)
	if !errors.Is(err, mr.ErrMalformed) && !errors.Is(err, mr.ErrUnsupported) {
		err = fmt.Errorf("%w: %w", mr.ErrMalformed, err)
	}
	r.err = &eventlog.Error{File: r.opt.File, Record: r.n, Offset: off, Err: err}
	return r.err
}

// read fills p completely; a short read in the middle of an entry is a
// truncation error naming the entry.
func (r *Reader) read(p []byte, start int64, what string) error {
	k, err := io.ReadFull(r.br, p)
	r.off += int64(k)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return r.fail(start, "%w: %s at byte %d: %d of %d bytes", ErrTruncated, what, r.off-int64(k), k, len(p))
		}
		r.err = &eventlog.Error{File: r.opt.File, Record: r.n, Offset: start, Err: err}
		return r.err
	}
	return nil
}

// readEvent reads n bytes into r.buf, growing it as the bytes arrive so a
// huge size in a short file costs no huge allocation.
func (r *Reader) readEvent(n int, start int64) error {
	r.buf = r.buf[:0]
	for len(r.buf) < n {
		chunk := min(n-len(r.buf), 1<<20)
		l := len(r.buf)
		r.buf = append(r.buf, make([]byte, chunk)...)
		if err := r.read(r.buf[l:], start, "event data"); err != nil {
			return err
		}
	}
	return nil
}

// Next returns the next entry; io.EOF at the end. The entry's Event is
// valid until the following call.
func (r *Reader) Next() (*Entry, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.done {
		return nil, io.EOF
	}
	start := r.off
	if _, err := r.br.Peek(1); err == io.EOF {
		r.done = true
		return nil, io.EOF
	}
	if r.opt.Embedded {
		if e, ok, err := r.specHeader(start); ok || err != nil {
			return e, err
		}
		if b, err := r.br.Peek(8); err == nil {
			a, t := binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
			if (a == 0xffffffff && t == 0xffffffff) || (a == 0 && t == 0) {
				r.done = true // end of a padded CCEL buffer
				return nil, io.EOF
			}
		}
	}
	h := r.hdr[:14]
	if err := r.read(h[:12], start, "entry header"); err != nil {
		return nil, err
	}
	e := &Entry{Index: r.n, Offset: start}
	e.MRIndex = binary.LittleEndian.Uint32(h)
	e.Type = binary.LittleEndian.Uint32(h[4:])
	if cnt := binary.LittleEndian.Uint32(h[8:]); cnt != 1 {
		return nil, r.fail(start, "digest count %d (a runtime log entry has exactly 1)", cnt)
	}
	if err := r.read(h[12:14], start, "digest algorithm"); err != nil {
		return nil, err
	}
	alg := mr.Alg(binary.LittleEndian.Uint16(h[12:]))
	if !alg.Valid() {
		return nil, r.fail(start, "%w: unknown digest algorithm 0x%04x", mr.ErrUnsupported, uint16(alg))
	}
	if r.seen && alg != r.alg {
		return nil, r.fail(start, "digest algorithm %v, but earlier entries use %v", alg, r.alg)
	}
	if r.seen && !r.opt.Embedded && e.MRIndex != r.mri {
		return nil, r.fail(start, "MR index %d, but earlier entries use %d (one log per backing register)", e.MRIndex, r.mri)
	}
	r.seen, r.alg, r.mri = true, alg, e.MRIndex
	db := make([]byte, alg.Size()+4)
	if err := r.read(db, start, "digest and event size"); err != nil {
		return nil, err
	}
	e.Digest = mr.Digest{Alg: alg, Bytes: db[:alg.Size()]}
	size := binary.LittleEndian.Uint32(db[alg.Size():])
	limit := uint32(MaxRecordSize + taggedHeader)
	if r.opt.Embedded {
		limit = MaxEventSize
	}
	if size > limit {
		return nil, r.fail(start, "event size %d exceeds %d", size, limit)
	}
	if err := r.readEvent(int(size), start); err != nil {
		return nil, err
	}
	e.Event = r.buf
	e.Size = r.off - start
	if err := r.decode(e, start); err != nil {
		return nil, err
	}
	r.n++
	return e, nil
}

// specHeader consumes a leading TCG_PCR_EVENT (SHA-1 format) Spec ID
// header of an embedding eventlog.
func (r *Reader) specHeader(start int64) (*Entry, bool, error) {
	if r.n != 0 {
		return nil, false, nil
	}
	b, err := r.br.Peek(32 + 16)
	if err != nil || binary.LittleEndian.Uint32(b[4:]) != EvNoAction ||
		!bytes.Equal(b[8:28], make([]byte, 20)) || !bytes.HasPrefix(b[32:], []byte("Spec ID Event")) {
		return nil, false, nil
	}
	size := binary.LittleEndian.Uint32(b[28:])
	if size > MaxEventSize {
		return nil, true, r.fail(start, "Spec ID event size %d exceeds %d", size, MaxEventSize)
	}
	h := make([]byte, 32)
	if err := r.read(h, start, "Spec ID header"); err != nil {
		return nil, true, err
	}
	if err := r.readEvent(int(size), start); err != nil {
		return nil, true, err
	}
	e := &Entry{Index: 0, Offset: start, Size: r.off - start, MRIndex: binary.LittleEndian.Uint32(h),
		Type: EvNoAction, Digest: mr.Digest{Alg: mr.SHA1, Bytes: h[8:28]}, Foreign: true, Event: r.buf}
	r.n++
	return e, true, nil
}

// decode interprets the event of e.
func (r *Reader) decode(e *Entry, start int64) error {
	ev := e.Event
	aael := len(ev) >= taggedHeader && binary.LittleEndian.Uint32(ev) == TagAAEL
	if r.opt.Embedded && (!aael || (e.Type != EvEventTag && e.Type != EvNoAction)) {
		e.Foreign = true
		e.Extended = e.Type != EvNoAction
		return nil
	}
	switch e.Type {
	case EvEventTag, EvNoAction:
	default:
		return r.fail(start, "event type 0x%x (want EV_EVENT_TAG 6, or EV_NO_ACTION 3 for INIT)", e.Type)
	}
	if len(ev) < taggedHeader {
		return r.fail(start, "event of %d bytes is shorter than a tagged event header", len(ev))
	}
	if id := binary.LittleEndian.Uint32(ev); id != TagAAEL {
		return r.fail(start, "tagged event ID 0x%08x (want 0x%08x AAEL)", id, TagAAEL)
	}
	if sz := binary.LittleEndian.Uint32(ev[4:]); uint64(sz) != uint64(len(ev)-taggedHeader) {
		return r.fail(start, "tagged event size %d, but the event holds %d bytes after its header", sz, len(ev)-taggedHeader)
	}
	text := string(ev[taggedHeader:])
	if e.Type == EvNoAction {
		if r.n != 0 && !r.opt.Embedded || r.sawRec {
			return r.fail(start, "EV_NO_ACTION entry after the first entry (only an INIT entry may open the log)")
		}
		d, err := ParseInit(text)
		if err != nil {
			return r.fail(start, "INIT entry: %w", err)
		}
		if d.Alg != e.Digest.Alg {
			return r.fail(start, "INIT value is %v but the entry's digest is %v", d.Alg, e.Digest.Alg)
		}
		if !bytes.Equal(e.Digest.Bytes, make([]byte, len(e.Digest.Bytes))) {
			return r.fail(start, "INIT entry (EV_NO_ACTION) has a non-zero digest")
		}
		e.Init = d
		return nil
	}
	rec, err := ParseRecord(text)
	if err != nil {
		return r.fail(start, "%w", err)
	}
	e.Record = rec
	e.Extended = true
	r.sawRec = true
	return nil
}
