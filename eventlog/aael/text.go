package aael

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// TextReader reads the older aael-text form of the runtime log: a first
// line `INIT ALG/HEX`, then one record per LF-terminated line. Every line,
// INIT included, is extended as H_ALG(line without LF), starting from the
// INIT value. (This is how Trustee's AAEventlog.integrity_check replays it.)
type TextReader struct {
	br   *bufio.Reader
	opt  Options
	off  int64
	n    int
	alg  mr.Alg
	line []byte
	err  error
}

// NewTextReader returns a TextReader of r. Options.MRIndex is reported in
// every entry; Embedded is ignored. With Options.Continue, r is the rest of
// a log after lines read earlier: every line is a record hashed with
// Options.Alg, and an INIT line is refused as after a log's first line.
func NewTextReader(r io.Reader, opt Options) *TextReader {
	t := &TextReader{br: bufio.NewReaderSize(r, 64<<10), opt: opt}
	if opt.Continue {
		t.alg = opt.Alg
		if !opt.Alg.Valid() {
			t.fail(0, fmt.Errorf("%w: continuing a log whose digest algorithm %v is unknown", mr.ErrUnsupported, opt.Alg))
		}
	}
	return t
}

func (t *TextReader) fail(off int64, err error) error {
	if !errors.Is(err, mr.ErrMalformed) && !errors.Is(err, mr.ErrUnsupported) {
		err = fmt.Errorf("%w: %w", mr.ErrMalformed, err)
	}
	t.err = &eventlog.Error{File: t.opt.File, Record: t.n, Offset: off, Err: err}
	return t.err
}

// readLine returns the next line without its LF, bounded by MaxRecordSize.
func (t *TextReader) readLine(start int64) ([]byte, error) {
	t.line = t.line[:0]
	for {
		frag, err := t.br.ReadSlice('\n')
		t.line = append(t.line, frag...)
		t.off += int64(len(frag))
		if len(t.line) > MaxRecordSize+1 {
			return nil, t.fail(start, fmt.Errorf("line longer than %d bytes", MaxRecordSize))
		}
		switch {
		case err == nil:
			return t.line[:len(t.line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(t.line) == 0 {
				return nil, io.EOF
			}
			return nil, t.fail(start, fmt.Errorf("last line is not LF-terminated (truncated write?)"))
		default:
			t.err = &eventlog.Error{File: t.opt.File, Record: t.n, Offset: start, Err: err}
			return nil, t.err
		}
	}
}

// Next returns the next line as an entry (Type EvEventTag, Extended true;
// the INIT line has Init set); io.EOF at the end.
func (t *TextReader) Next() (*Entry, error) {
	if t.err != nil {
		return nil, t.err
	}
	start := t.off
	line, err := t.readLine(start)
	if err == io.EOF {
		if t.n == 0 && !t.opt.Continue {
			return nil, t.fail(0, fmt.Errorf("empty log: no INIT line"))
		}
		return nil, io.EOF
	}
	if err != nil {
		return nil, err
	}
	e := &Entry{Index: t.n, Offset: start, Size: t.off - start, MRIndex: t.opt.MRIndex,
		Type: EvEventTag, Extended: true, Event: line}
	if t.n == 0 && !t.opt.Continue {
		d, err := ParseInit(string(line))
		if err != nil {
			return nil, t.fail(start, fmt.Errorf("first line: %w", err))
		}
		t.alg, e.Init = d.Alg, d
	} else {
		if bytes.HasPrefix(line, []byte(InitKeyword+" ")) {
			return nil, t.fail(start, fmt.Errorf("INIT line after the first line"))
		}
		rec, err := ParseRecord(string(line))
		if err != nil {
			return nil, t.fail(start, err)
		}
		e.Record = rec
	}
	e.Digest = t.alg.Sum(line)
	t.n++
	return e, nil
}

// AppendTextLine appends rec as an aael-text line (with LF), validating it.
func AppendTextLine(dst []byte, rec Record) ([]byte, error) {
	if err := rec.Validate(); err != nil {
		return dst, err
	}
	dst = append(dst, rec.String()...)
	return append(dst, '\n'), nil
}

// AppendTextInit appends the aael-text INIT line `INIT ALG/HEX` (with LF).
func AppendTextInit(dst []byte, start mr.Digest) ([]byte, error) {
	if _, err := mr.NewDigest(start.Alg, start.Bytes); err != nil {
		return dst, fmt.Errorf("INIT: %w", err)
	}
	dst = append(dst, InitString(start)...)
	return append(dst, '\n'), nil
}
