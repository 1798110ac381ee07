package ima

import (
	"runtime"

	"github.com/ccmr-dev/ccmr/mr"
)

// blockSize is the size of the parallel pipeline's blocks. A block holds a
// few thousand entries: big enough that handing it over costs nothing next
// to hashing it, small enough to stay in the caches. The pool bounds the
// memory of a pass; a block grown for one huge entry (an ima-buf of
// megabytes) is dropped, not pooled, past 4 blocks. A variable so that tests
// can cut lists at many more boundaries.
var blockSize = 512 << 10

// problem is a problem of one entry: its number orders problems of a kind.
type problem struct {
	err    error
	record int
	seq    int // the block it was found in
}

// earlier keeps the problem with the lower entry number.
func (p *problem) earlier(err error, record, seq int) {
	if err != nil && (p.err == nil || record < p.record) {
		*p = problem{err, record, seq}
	}
}

// outcome is what a pipeline found: of each kind of problem the first one in
// list order, and the folded registers.
type outcome struct {
	entries int
	parse   problem                 // the entry could not be read: the pass fails there
	bad     problem                 // listed SHA-1 does not match the template data
	sig     problem                 // signature failure
	counts  map[int]SignatureReport // per block, up to its first failure
	pcrs    map[int][]*mr.Extender

	parseErr error // parse.err, for callers
}

// stopAt is the block after which no entry counts: the block of the first
// parse or signature problem, or -1 when there is none.
func (o *outcome) stopAt() (seq int, err error) {
	first := o.parse
	if o.sig.err != nil && (first.err == nil || o.sig.record < first.record) {
		first = o.sig
	}
	if first.err == nil {
		return -1, nil
	}
	return first.seq, first.err
}

// signatureReport sums the signature counts of the blocks up to the first
// failure (each block counts only up to its own first failure).
func (o *outcome) signatureReport() SignatureReport {
	stop, _ := o.stopAt()
	var rep SignatureReport
	for seq, c := range o.counts {
		if stop < 0 || seq <= stop {
			rep.Verified += c.Verified
			rep.Unsigned += c.Unsigned
		}
	}
	return rep
}

// merge records a hashed block's problems and counts.
func (p *pipeline) merge(c *chunk) {
	p.mu.Lock()
	defer p.mu.Unlock()
	o := &p.out
	o.parse.earlier(c.parse.err, c.parse.record, c.seq)
	o.bad.earlier(c.bad.err, c.bad.record, c.seq)
	o.sig.earlier(c.sig.err, c.sig.record, c.seq)
	o.parseErr = o.parse.err
	if p.po.sigs {
		o.counts[c.seq] = c.count
	}
}

// failSplit records a problem the splitter found after the last entry of
// block seq.
func (p *pipeline) failSplit(err error, record, seq int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.out.parse.earlier(err, record, seq)
	p.out.parseErr = p.out.parse.err
}

// failed reports whether an entry could not be read: splitting on is
// wasted work.
func (p *pipeline) failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.parse.err != nil
}

func newPipeline(po pipeOptions) *pipeline {
	workers := runtime.GOMAXPROCS(0)
	n := 2*workers + 2
	p := &pipeline{
		po:      po,
		workers: workers,
		free:    make(chan *chunk, n),
		todo:    make(chan *chunk, n),
		fold:    make([]chan *chunk, len(po.banks)),
		folded:  make([]map[int]*mr.Extender, len(po.banks)),
	}
	p.out.counts = map[int]SignatureReport{}
	for i := range p.fold {
		p.fold[i] = make(chan *chunk, n)
	}
	for range n {
		p.free <- &chunk{}
	}
	return p
}

// stride is the bytes of digests per entry: one digest per bank.
func (p *pipeline) stride() int {
	s := 0
	for _, a := range p.po.banks {
		s += a.Size()
	}
	return s
}

// bankOffset is where bank b's digest starts in an entry's digests.
func (p *pipeline) bankOffset(b int) int {
	s := 0
	for _, a := range p.po.banks[:b] {
		s += a.Size()
	}
	return s
}
