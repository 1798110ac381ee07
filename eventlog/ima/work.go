package ima

import (
	"encoding/binary"
	"fmt"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// worker hashes whole blocks: it parses each entry in place, checks its
// listed SHA-1, writes its template hash for every bank into the block's
// digests and verifies its signature. Its buffers are reused from entry to
// entry and block to block.
type worker struct {
	p       *pipeline
	e       Entry
	legacy  [20 + legacyNameSize]byte // a legacy ima entry's padded data
	list    listHasher                // the hasher of the list's bank
	sum     [64]byte
	hashers []hasher
	offs    []int // bank b's digest starts offs[b] bytes into an entry's
	stride  int
}

func newWorker(p *pipeline) *worker {
	w := &worker{p: p, stride: p.stride()}
	for b, a := range p.po.banks {
		w.hashers = append(w.hashers, a.New())
		w.offs = append(w.offs, p.bankOffset(b))
	}
	return w
}

// hash processes block c. The first entry that cannot be read stops it:
// c.good entries before it are folded, and the replay fails there anyway.
func (w *worker) hash(c *chunk) {
	po := &w.p.po
	if need := len(c.ents) * w.stride; cap(c.digests) < need {
		c.digests = make([]byte, need)
	} else {
		c.digests = c.digests[:need]
	}
	c.good = len(c.ents)
	for k := range c.ents {
		e, err := w.entry(c, &c.ents[k])
		if err == nil {
			err = w.bankHashes(c, k, e)
		}
		if err != nil {
			c.parse, c.good = problem{err, c.ents[k].index, c.seq}, k
			return
		}
		if po.checkHash && c.bad.err == nil {
			if err := checkTemplateHash(po.file, e, &w.list, w.sum[:0]); err != nil {
				c.bad = problem{err, e.Index, c.seq}
			}
		}
		if po.sigs && c.sig.err == nil {
			if err := judgeSignature(po.file, e, po.keys, po.requireAll, &c.count); err != nil {
				c.sig = problem{err, e.Index, c.seq}
			}
		}
	}
}

// entry rebuilds the Entry of ref as the Reader would have returned it, and
// fails as the Reader would on template data that does not parse.
func (w *worker) entry(c *chunk, ref *entryRef) (*Entry, error) {
	e := &w.e
	*e = Entry{Index: ref.index, Offset: ref.offset, PCR: int(ref.pcr), TemplateHash: c.buf[ref.hash : ref.hash+ref.hlen],
		Bank: ref.bank, TemplateName: ref.name, Fields: e.Fields[:0], BigEndian: ref.big}
	switch {
	case ref.dlen < 0:
	case ref.legacy:
		// digest[20], u32 name length, name: padded as the kernel hashes it.
		copy(w.legacy[:20], c.buf[ref.data:])
		n := copy(w.legacy[20:], c.buf[ref.data+24:ref.data+24+ref.dlen])
		clear(w.legacy[20+n:])
		e.TemplateData = w.legacy[:]
	default:
		end := ref.data + ref.dlen
		e.TemplateData = c.buf[ref.data:end:end]
	}
	var order binary.ByteOrder = binary.LittleEndian
	if ref.big {
		order = binary.BigEndian
	}
	if err := e.parseFields(order); err != nil && !ref.parsed {
		return nil, &eventlog.Error{File: w.p.readFile, Record: e.Index, Offset: e.Offset, Err: fmt.Errorf("%w: %v", mr.ErrMalformed, err)}
	}
	return e, nil
}

// bankHashes writes e's template hash of every bank into the digests of
// entry k of c.
func (w *worker) bankHashes(c *chunk, k int, e *Entry) error {
	po := &w.p.po
	for b, a := range po.banks {
		at := k*w.stride + w.offs[b]
		if _, err := appendTemplateHash(c.digests[at:at:at+a.Size()], e, a, po.sha1Padded, w.hashers[b]); err != nil {
			return &eventlog.Error{File: po.file, Record: e.Index, Offset: e.Offset, Err: err}
		}
	}
	return nil
}
