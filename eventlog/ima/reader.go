package ima

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// Limits. The kernel's own are smaller (template names of at most 15
// characters, file names of at most 255 in the legacy template); these only
// keep a corrupt length from asking for absurd buffers.
const (
	// MaxTemplateName is the longest template name accepted.
	MaxTemplateName = 255
	// MaxTemplateData is the largest template data accepted (ima-buf
	// entries can carry large buffers).
	MaxTemplateData = 16 << 20
	// MaxPCR is the highest PCR index accepted.
	MaxPCR = 255
)

// ErrTruncated marks a list that ends inside an entry. It wraps
// mr.ErrMalformed.
var ErrTruncated = fmt.Errorf("%w: list ends inside an entry", mr.ErrMalformed)

// Options tune a Reader.
type Options struct {
	// File names the list in errors.
	File string
	// ByteOrder forces the byte order of a binary list's integers. Nil
	// detects it from the first entry's PCR field. For an ascii list it is
	// the order used to rebuild the template data's field lengths (nil:
	// little-endian, as ima_canonical_fmt and little-endian kernels write).
	ByteOrder binary.ByteOrder
	// Bank is the PCR bank whose template hash the list holds: zero or
	// mr.SHA1 for binary_runtime_measurements (the SHA-1 list every
	// kernel writes), another bank for the per-bank lists of Linux 6.10
	// and later (binary_runtime_measurements_sha256, ...), whose template
	// hash is that bank's digest of the template data, 20 to 64 bytes.
	Bank mr.Alg
}

// listBank returns the bank of a list's template hashes: bank, or sha1
// when bank is zero. An unknown bank is an error.
func listBank(bank mr.Alg) (mr.Alg, error) {
	if bank == 0 {
		return mr.SHA1, nil
	}
	if !bank.Valid() {
		return 0, fmt.Errorf("%w: bank %v", mr.ErrUnsupported, bank)
	}
	return bank, nil
}

// Reader streams the entries of an IMA list, binary or ascii, in constant
// memory. It is not safe for concurrent use.
type Reader struct {
	br     *bufio.Reader
	ascii  bool
	file   string
	order  binary.ByteOrder
	off    int64
	index  int
	e      Entry
	bank   mr.Alg // the bank of the listed template hashes
	hsize  int    // its digest size: the template hash's length
	hash   [64]byte
	data   []byte // template data buffer, reused
	name   []byte
	line   []byte
	hdr    [8 + 64]byte
	failed error
}

// newReader makes a Reader; an unknown opts.Bank makes every Next fail.
func newReader(r io.Reader, opts Options, ascii bool, order binary.ByteOrder) *Reader {
	rd := &Reader{br: bufio.NewReaderSize(r, 64<<10), ascii: ascii, file: opts.File, order: order}
	bank, err := listBank(opts.Bank)
	if err != nil {
		rd.failed = &eventlog.Error{File: opts.File, Record: 0, Err: err}
		bank = mr.SHA1
	}
	rd.bank, rd.hsize = bank, bank.Size()
	return rd
}

// NewBinaryReader reads a binary list (binary_runtime_measurements, or a
// per-bank list binary_runtime_measurements_BANK when opts.Bank says so).
func NewBinaryReader(r io.Reader, opts Options) *Reader {
	return newReader(r, opts, false, opts.ByteOrder)
}

// NewASCIIReader reads an ascii list (ascii_runtime_measurements, or a
// per-bank list ascii_runtime_measurements_BANK when opts.Bank says so).
func NewASCIIReader(r io.Reader, opts Options) *Reader {
	o := opts.ByteOrder
	if o == nil {
		o = binary.LittleEndian
	}
	return newReader(r, opts, true, o)
}

// Bank returns the bank of the list's template hashes (mr.SHA1 for
// binary_runtime_measurements).
func (r *Reader) Bank() mr.Alg { return r.bank }

// Offset returns the byte offset just past the last entry read: the length
// of the list's well-formed prefix after Next returned an error.
func (r *Reader) Offset() int64 { return r.off }

// Next returns the next entry, or io.EOF after the last one. Bad input gives
// a *eventlog.Error naming the file, the entry number and the byte offset of the
// entry's first byte (wrapping ErrTruncated for a partial last entry, and
// mr.ErrMalformed for anything else); after an error Next keeps returning
// it. The Entry is reused by the next call (see Entry).
func (r *Reader) Next() (*Entry, error) {
	if r.failed != nil {
		return nil, r.failed
	}
	var err error
	if r.ascii {
		err = r.nextASCII()
	} else {
		err = r.nextBinary()
	}
	if err != nil {
		if err != io.EOF {
			var le *eventlog.Error
			if !errors.As(err, &le) {
				err = &eventlog.Error{File: r.file, Record: r.index, Offset: r.off, Err: err}
			}
		}
		r.failed = err
		return nil, err
	}
	r.index++
	return &r.e, nil
}

// readFull reads exactly len(b) bytes; a short read is a truncation.
func (r *Reader) readFull(b []byte, what string) error {
	n, err := io.ReadFull(r.br, b)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w (%d of %d bytes of the %s)", ErrTruncated, n, len(b), what)
	}
	return err
}

func (r *Reader) nextBinary() error {
	// pcr (4) + template hash (the bank's size) + template name length (4)
	hs := r.hsize
	h := r.hdr[:8+hs]
	n, err := io.ReadFull(r.br, h)
	if n == 0 && err == io.EOF {
		return io.EOF
	}
	if err != nil {
		if err == io.ErrUnexpectedEOF {
			return fmt.Errorf("%w (%d of the %d header bytes)", ErrTruncated, n, len(h))
		}
		return err
	}
	if r.order == nil {
		switch {
		case binary.LittleEndian.Uint32(h) <= MaxPCR:
			r.order = binary.LittleEndian
		case binary.BigEndian.Uint32(h) <= MaxPCR:
			r.order = binary.BigEndian
		default:
			return fmt.Errorf("%w: first entry's PCR field %x is no PCR index in either byte order", mr.ErrMalformed, h[:4])
		}
	}
	o := r.order
	pcr := o.Uint32(h)
	if pcr > MaxPCR {
		return fmt.Errorf("%w: PCR %d", mr.ErrMalformed, pcr)
	}
	copy(r.hash[:], h[4:4+hs])
	nameLen := o.Uint32(h[4+hs:])
	if nameLen == 0 || nameLen > MaxTemplateName {
		return fmt.Errorf("%w: template name length %d", mr.ErrMalformed, nameLen)
	}
	r.name = grow(r.name, int(nameLen))
	if err := r.readFull(r.name, "template name"); err != nil {
		return err
	}
	e := &r.e
	*e = Entry{Index: r.index, Offset: r.off, PCR: int(pcr), TemplateHash: r.hash[:hs], Bank: r.bank,
		TemplateName: internTemplate(r.name), Fields: e.Fields[:0], BigEndian: o == binary.BigEndian}
	size := int64(8+hs) + int64(nameLen)
	if e.TemplateName == TemplateIMA {
		// digest[20], u32 name length, name: no template data length.
		b := r.hdr[:24] // the header is consumed: reuse it
		if err := r.readFull(b, "ima digest and name length"); err != nil {
			return err
		}
		fl := o.Uint32(b[20:])
		if fl > legacyNameSize-1 {
			return fmt.Errorf("%w: ima template name length %d exceeds %d", mr.ErrMalformed, fl, legacyNameSize-1)
		}
		r.data = grow(r.data, 20+legacyNameSize)
		copy(r.data, b[:20])
		if err := r.readFull(r.data[20:20+fl], "ima file name"); err != nil {
			return err
		}
		clear(r.data[20+fl:])
		size += 24 + int64(fl)
	} else {
		b := r.hdr[:4]
		if err := r.readFull(b, "template data length"); err != nil {
			return err
		}
		dl := o.Uint32(b)
		if dl > MaxTemplateData {
			return fmt.Errorf("%w: template data length %d exceeds %d", mr.ErrMalformed, dl, MaxTemplateData)
		}
		if err := r.readData(int(dl)); err != nil {
			return err
		}
		size += 4 + int64(dl)
	}
	e.TemplateData = r.data
	if err := e.parseFields(o); err != nil {
		return fmt.Errorf("%w: %v", mr.ErrMalformed, err)
	}
	r.off += size
	return nil
}

// readData reads n bytes of template data into r.data, growing the buffer
// as bytes arrive so that a corrupt length in a short file costs no more
// memory than the file holds.
func (r *Reader) readData(n int) error {
	if r.data == nil {
		// Empty template data is data, not unknown data (nil): even in
		// the first entry, before the buffer exists.
		r.data = make([]byte, 0, 512)
	}
	if n <= cap(r.data) {
		r.data = r.data[:n]
		return r.readFull(r.data, "template data")
	}
	r.data = r.data[:0]
	for len(r.data) < n {
		chunk := min(n-len(r.data), 1<<20)
		start := len(r.data)
		r.data = append(r.data, make([]byte, chunk)...)
		if m, err := io.ReadFull(r.br, r.data[start:]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return fmt.Errorf("%w (%d of %d bytes of the template data)", ErrTruncated, start+m, n)
			}
			return err
		}
	}
	return nil
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n, max(n, 2*cap(b)))
	}
	return b[:n]
}

// maxLine bounds an ascii line: hex doubles the template data.
const maxLine = 2*MaxTemplateData + 4096

func (r *Reader) readLine() ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	if err == nil {
		return line, nil
	}
	if err != bufio.ErrBufferFull {
		return line, err
	}
	r.line = append(r.line[:0], line...)
	for {
		line, err = r.br.ReadSlice('\n')
		r.line = append(r.line, line...)
		if len(r.line) > maxLine {
			return nil, fmt.Errorf("%w: line longer than %d bytes", mr.ErrMalformed, maxLine)
		}
		if err != bufio.ErrBufferFull {
			return r.line, err
		}
	}
}

func (r *Reader) nextASCII() error {
	line, err := r.readLine()
	if len(line) == 0 && err == io.EOF {
		return io.EOF
	}
	if err != nil && err != io.EOF {
		return err
	}
	if err == io.EOF {
		return fmt.Errorf("%w: last line has no newline", ErrTruncated)
	}
	size := int64(len(line))
	line = line[:len(line)-1]
	if err := r.parseASCII(line); err != nil {
		return fmt.Errorf("%w: %v", mr.ErrMalformed, err)
	}
	r.off += size
	return nil
}

// cut splits s at the first space.
func cut(s []byte) (before, after []byte, ok bool) {
	return bytes.Cut(s, []byte{' '})
}

func (r *Reader) parseASCII(line []byte) error {
	pcrS, rest, ok := cut(line)
	if !ok {
		return errors.New("line has no template hash")
	}
	pcr, err := strconv.ParseUint(string(pcrS), 10, 32)
	if err != nil || pcr > MaxPCR {
		return fmt.Errorf("PCR %q", pcrS)
	}
	hashS, rest, ok := cut(rest)
	if !ok || len(hashS) != 2*r.hsize {
		return fmt.Errorf("template hash %q is not %d hex digits (a %v list)", hashS, 2*r.hsize, r.bank)
	}
	if _, err := hex.Decode(r.hash[:r.hsize], hashS); err != nil {
		return fmt.Errorf("template hash: %v", err)
	}
	nameS, rest, ok := cut(rest)
	if len(nameS) == 0 || len(nameS) > MaxTemplateName {
		return fmt.Errorf("template name %q", nameS)
	}
	e := &r.e
	*e = Entry{Index: r.index, Offset: r.off, PCR: int(pcr), TemplateHash: r.hash[:r.hsize], Bank: r.bank,
		TemplateName: internTemplate(nameS), Fields: e.Fields[:0], BigEndian: r.order == binary.BigEndian}
	if !ok {
		return fmt.Errorf("template %s has no fields", e.TemplateName)
	}
	ids := templateFields(e.TemplateName)
	if ids == nil {
		// Unknown template: the ascii form does not say how to rebuild
		// the template data; keep the entry opaque.
		return nil
	}
	if e.TemplateName == TemplateIMA {
		dS, name, ok := cut(rest)
		if !ok || len(dS) != 40 {
			return fmt.Errorf("ima digest %q is not 40 hex digits", dS)
		}
		if len(name) > legacyNameSize-1 {
			return fmt.Errorf("ima file name longer than %d bytes", legacyNameSize-1)
		}
		r.data = grow(r.data, 20+legacyNameSize)
		if _, err := hex.Decode(r.data[:20], dS); err != nil {
			return fmt.Errorf("ima digest: %v", err)
		}
		n := copy(r.data[20:], name)
		clear(r.data[20+n:])
		e.TemplateData = r.data
		return e.parseFields(r.order)
	}
	// Fields: digest first, then the name, then len(ids)-2 fields that
	// hold no spaces (hex): take those from the end, so that names with
	// spaces survive.
	toks := make([][]byte, len(ids))
	var first []byte
	first, rest, ok = cut(rest)
	if !ok && len(ids) > 1 {
		return fmt.Errorf("%s line has %d of %d fields", e.TemplateName, 1, len(ids))
	}
	toks[0] = first
	for i := len(ids) - 1; i >= 2; i-- {
		j := bytes.LastIndexByte(rest, ' ')
		if j < 0 {
			return fmt.Errorf("%s line has too few fields", e.TemplateName)
		}
		toks[i] = rest[j+1:]
		rest = rest[:j]
	}
	toks[1] = rest
	r.data = r.data[:0]
	for i, id := range ids {
		lenAt := len(r.data)
		r.data = append(r.data, 0, 0, 0, 0)
		t := toks[i]
		switch id {
		case FieldDigestNG, FieldDigestNGv2, FieldDigestModsig:
			if len(t) == 0 && id == FieldDigestModsig {
				break
			}
			j := bytes.LastIndexByte(t, ':')
			if j < 1 {
				return fmt.Errorf("%s field %q is not ALG:HEX", id, t)
			}
			r.data = append(r.data, t[:j+1]...)
			r.data = append(r.data, 0)
			var err error
			if r.data, err = appendHex(r.data, t[j+1:]); err != nil {
				return fmt.Errorf("%s field: %v", id, err)
			}
		case FieldNameNG:
			r.data = append(r.data, t...)
			r.data = append(r.data, 0)
		default:
			var err error
			if r.data, err = appendHex(r.data, t); err != nil {
				return fmt.Errorf("%s field: %v", id, err)
			}
		}
		r.order.PutUint32(r.data[lenAt:], uint32(len(r.data)-lenAt-4))
	}
	if len(r.data) > MaxTemplateData {
		return fmt.Errorf("template data of %d bytes exceeds %d", len(r.data), MaxTemplateData)
	}
	e.TemplateData = r.data
	return e.parseFields(r.order)
}

func appendHex(dst, src []byte) ([]byte, error) {
	if len(src)%2 != 0 {
		return dst, fmt.Errorf("odd hex length %d", len(src))
	}
	n := len(dst)
	dst = append(dst, make([]byte, len(src)/2)...)
	if _, err := hex.Decode(dst[n:], src); err != nil {
		return dst, err
	}
	return dst, nil
}
