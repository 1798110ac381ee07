package ima

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"sync/atomic"

	"github.com/ccmr-dev/ccmr/mr"
)

// entryRef locates one entry inside a block, for the workers.
type entryRef struct {
	offset int64
	index  int
	pcr    int32
	hash   int // the listed template hash: buf[hash:hash+hlen]
	hlen   int
	bank   mr.Alg // the bank of the listed hash
	data   int    // template data; for the legacy ima template, the file digest
	dlen   int    // template data length (legacy: the file name's); -1: unknown
	name   string
	legacy bool // the legacy ima template, whose data is rebuilt (padded)
	big    bool
	parsed bool // the source parsed the fields already (a generic Source)
}

// chunk is a block of whole entries moving through the pipeline.
type chunk struct {
	seq     int
	buf     []byte
	ents    []entryRef
	digests []byte // one digest per bank per entry, written by a worker
	good    int    // entries hashed: up to the first that could not be read
	parse   problem
	bad     problem
	sig     problem
	count   SignatureReport
	hashed  chan struct{} // closed once a worker is done with the block
	refs    atomic.Int32  // steps still to read the block
}

func (c *chunk) reset(seq int) {
	c.seq, c.good = seq, 0
	c.buf, c.ents = c.buf[:0], c.ents[:0]
	c.parse, c.bad, c.sig, c.count = problem{}, problem{}, problem{}, SignatureReport{}
	c.hashed = make(chan struct{})
}

// release hands the block back to the pool once every step is done with it.
func (c *chunk) release(free chan<- *chunk) {
	if c.refs.Add(-1) == 0 {
		if cap(c.buf) > 4*blockSize {
			c.buf = nil
		}
		free <- c
	}
}

// take waits for a free block.
func (p *pipeline) take(ctx context.Context, seq int) (*chunk, error) {
	select {
	case c := <-p.free:
		c.reset(seq)
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// split feeds the pipeline from src: a binary Reader is split block by
// block without copying entries; any other source entry by entry.
func (p *pipeline) split(ctx context.Context, src Source) error {
	if r, ok := src.(*Reader); ok && !r.ascii && r.failed == nil {
		return p.splitBinary(ctx, r)
	}
	return p.splitEntries(ctx, src, 0, 0)
}

// binarySplit is the state of splitBinary between blocks.
type binarySplit struct {
	r     *Reader
	order binary.ByteOrder
	index int
	off   int64
	seq   int
	carry []byte // the start of an entry the last block cut
	eof   bool
	rerr  error // a read error: the entry it cuts fails with it
}

// splitBinary reads the list in blocks and cuts them at entry boundaries.
// Anything it does not accept (bad lengths, a cut-off last entry, a read
// error) is handed, from that entry on, to a Reader and splitEntries, so
// that errors are the Reader's own, word for word.
func (p *pipeline) splitBinary(ctx context.Context, r *Reader) error {
	s := &binarySplit{r: r, order: r.order, index: r.index, off: r.off}
	p.readFile = r.file
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if p.failed() || p.full() {
			return nil
		}
		c, err := p.take(ctx, s.seq)
		if err != nil {
			return err
		}
		c.buf = append(c.buf, s.carry...)
		s.fill(c, blockSize)
		pos, handOver := p.cut(s, c)
		s.carry = append(s.carry[:0], c.buf[pos:]...)
		p.emitOrFree(c)
		s.seq++
		if handOver {
			return p.splitEntries(ctx, s.reader(), s.seq, s.index)
		}
		if s.eof && len(s.carry) == 0 || p.full() {
			r.index, r.off, r.order = s.index, s.off, s.order
			return nil
		}
	}
}

// cut appends the block's whole entries to c.ents and returns where the
// first entry it did not take starts, and whether the rest must go to a
// Reader.
func (p *pipeline) cut(s *binarySplit, c *chunk) (pos int, handOver bool) {
	for !p.full() {
		if s.order == nil && !s.detect(c.buf) {
			return pos, true
		}
		size, need := scanEntry(c, pos, s.order, s.r.bank, s.index, s.off)
		switch {
		case size > 0:
			pos += size
			s.index++
			s.off += int64(size)
			p.entries++
		case need == 0 || s.eof || s.rerr != nil:
			return pos, true
		case pos > 0:
			return pos, false // the entry goes to the next block
		default:
			s.fill(c, need) // one entry larger than a block
		}
	}
	return pos, false
}

// detect sets the byte order from the first entry's PCR field as the Reader
// does; false leaves the decision (and the error) to the Reader.
func (s *binarySplit) detect(b []byte) bool {
	if len(b) < 4 {
		return false
	}
	switch {
	case binary.LittleEndian.Uint32(b) <= MaxPCR:
		s.order = binary.LittleEndian
	case binary.BigEndian.Uint32(b) <= MaxPCR:
		s.order = binary.BigEndian
	default:
		return false
	}
	return true
}

// fill reads into c.buf until it holds want bytes or the list ends. The
// buffer grows as bytes arrive, from 64 KiB, so that neither a short list
// nor a corrupt length in a short file costs more memory than the file
// holds.
func (s *binarySplit) fill(c *chunk, want int) {
	for len(c.buf) < want && !s.eof && s.rerr == nil {
		if cap(c.buf) == len(c.buf) {
			c.buf = append(c.buf, make([]byte, min(want, max(64<<10, 2*cap(c.buf)))-len(c.buf))...)[:len(c.buf)]
		}
		n, err := io.ReadFull(s.r.br, c.buf[len(c.buf):min(want, cap(c.buf))])
		c.buf = c.buf[:len(c.buf)+n]
		switch err {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			s.eof = true
		default:
			s.rerr = err
		}
	}
}

// reader reads the list from the carried entry on, as the Reader would.
func (s *binarySplit) reader() *Reader {
	var rest io.Reader = bytes.NewReader(bytes.Clone(s.carry))
	switch {
	case s.rerr != nil:
		rest = io.MultiReader(rest, errReader{s.rerr})
	case !s.eof:
		rest = io.MultiReader(rest, s.r.br)
	}
	return &Reader{br: bufio.NewReaderSize(rest, 64<<10), file: s.r.file, order: s.order, off: s.off, index: s.index,
		bank: s.r.bank, hsize: s.r.hsize}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// scanEntry reads the lengths of the entry at c.buf[pos:] and, when it is
// whole and its lengths are those the Reader accepts, appends its ref and
// returns its size. Otherwise size is 0 and need is the bytes the entry
// needs from pos (0: the lengths are wrong, the Reader will say how).
func scanEntry(c *chunk, pos int, o binary.ByteOrder, bank mr.Alg, index int, off int64) (size, need int) {
	b := c.buf[pos:]
	hs := bank.Size() // the list's template hash size: 20 to 64 bytes
	top := 8 + hs     // pcr, template hash, template name length
	if len(b) < top {
		return 0, top
	}
	pcr := o.Uint32(b)
	nl := o.Uint32(b[4+hs:])
	if pcr > MaxPCR || nl == 0 || nl > MaxTemplateName {
		return 0, 0
	}
	h := top + int(nl)
	if len(b) < h+4 {
		return 0, h + 4
	}
	ref := entryRef{offset: off, index: index, pcr: int32(pcr), hash: pos + 4, hlen: hs, bank: bank, big: o == binary.BigEndian}
	if string(b[top:h]) == TemplateIMA {
		if len(b) < h+24 {
			return 0, h + 24
		}
		fl := o.Uint32(b[h+20:])
		if fl > legacyNameSize-1 {
			return 0, 0
		}
		size = h + 24 + int(fl)
		ref.name, ref.legacy, ref.data, ref.dlen = TemplateIMA, true, pos+h, int(fl)
	} else {
		dl := o.Uint32(b[h:])
		if dl > MaxTemplateData {
			return 0, 0
		}
		size = h + 4 + int(dl)
		ref.name, ref.data, ref.dlen = internTemplate(b[top:h]), pos+h+4, int(dl)
	}
	if len(b) < size {
		return 0, size
	}
	c.ents = append(c.ents, ref)
	return size, 0
}

// emitOrFree sends a block with entries down the pipeline and puts an empty
// one back in the pool.
func (p *pipeline) emitOrFree(c *chunk) {
	if len(c.ents) == 0 {
		p.free <- c
		return
	}
	p.emit(c)
}

// full reports whether the pass has read all the entries it may.
func (p *pipeline) full() bool { return p.po.limit >= 0 && p.entries >= p.po.limit }

// splitEntries feeds the pipeline from any Source, copying each entry into
// a block: an ascii list, or the rest of a binary one from an entry
// splitBinary did not accept. seq and index are the next block's and
// entry's numbers.
func (p *pipeline) splitEntries(ctx context.Context, src Source, seq, index int) error {
	var c *chunk
	flush := func() {
		if c != nil {
			p.emitOrFree(c)
			c = nil
			seq++
		}
	}
	defer flush()
	for !p.full() {
		if p.entries&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		e, err := src.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			p.failSplit(err, index, seq)
			return nil
		}
		if c == nil {
			if c, err = p.take(ctx, seq); err != nil {
				return err
			}
		}
		c.ents = append(c.ents, copyEntry(c, e))
		index = e.Index + 1
		p.entries++
		if len(c.buf) >= blockSize {
			flush()
		}
	}
	return nil
}

// copyEntry copies e's hash and template data into the block.
func copyEntry(c *chunk, e *Entry) entryRef {
	ref := entryRef{offset: e.Offset, index: e.Index, pcr: int32(e.PCR), hash: len(c.buf), hlen: len(e.TemplateHash), bank: e.Bank, dlen: -1,
		name: e.TemplateName, big: e.BigEndian, parsed: true}
	c.buf = append(c.buf, e.TemplateHash...)
	if e.TemplateData != nil {
		ref.data, ref.dlen = len(c.buf), len(e.TemplateData)
		c.buf = append(c.buf, e.TemplateData...)
	}
	return ref
}
