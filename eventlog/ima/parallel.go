package ima

import (
	"context"
	"crypto/sha1"
	"fmt"
	"io"
	"sync"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// A replay of several banks is spread over the cores: the reading goroutine
// parses each entry, checks its listed SHA-1 against sha1(template data)
// and folds the sha1 bank (which extends the listed hash, so costs no more
// hashing), while one goroutine per other bank hashes the template data and
// folds that bank. The banks are independent chains, so the result is the
// sequential one; only the hashing runs in parallel.

const parallelBatch = 512

// pbatch is a run of entries handed to the bank workers: the template data
// of each (nil for a violation) in one reused buffer.
type pbatch struct {
	pcr  []int
	data [][]byte
	buf  []byte
	left sync.WaitGroup // workers still reading the batch
}

func (b *pbatch) reset() {
	b.pcr, b.data, b.buf = b.pcr[:0], b.data[:0], b.buf[:0]
}

func replayParallel(ctx context.Context, src Source, opts ReplayOptions, banks []mr.Alg) (*eventlog.Replay, error) {
	// Worker w folds bank others[w]; the sha1 bank, if asked, is folded here.
	sha1Bank := -1
	var others []int
	for i, a := range banks {
		if a == mr.SHA1 {
			sha1Bank = i
		} else {
			others = append(others, i)
		}
	}
	pcrs := map[int][]*mr.Extender{}
	ext := func(p, i int) *mr.Extender {
		e := pcrs[p]
		if e == nil {
			e = make([]*mr.Extender, len(banks))
			for j, a := range banks {
				e[j] = mr.NewExtender(mr.Zero(a))
			}
			pcrs[p] = e
		}
		return e[i]
	}
	// Workers keep their own per-PCR extenders, merged at the end.
	type wstate struct {
		pcrs map[int]*mr.Extender
		err  error
	}
	ws := make([]wstate, len(others))
	chans := make([]chan *pbatch, len(others))
	free := make(chan *pbatch, 4)
	for i := 0; i < 4; i++ {
		free <- &pbatch{}
	}
	var wg sync.WaitGroup
	for w, bi := range others {
		chans[w] = make(chan *pbatch, 4)
		ws[w].pcrs = map[int]*mr.Extender{}
		wg.Add(1)
		go func(w int, a mr.Alg) {
			defer wg.Done()
			h := a.New()
			var sum [64]byte
			ones := make([]byte, a.Size())
			for i := range ones {
				ones[i] = 0xff
			}
			for b := range chans[w] {
				for k, d := range b.data {
					e := ws[w].pcrs[b.pcr[k]]
					if e == nil {
						e = mr.NewExtender(mr.Zero(a))
						ws[w].pcrs[b.pcr[k]] = e
					}
					dg := ones
					if d != nil {
						h.Reset()
						h.Write(d)
						dg = h.Sum(sum[:0])
					}
					if err := e.Extend(dg); err != nil && ws[w].err == nil {
						ws[w].err = err
					}
				}
				b.left.Done()
			}
		}(w, banks[bi])
	}
	var pending *pbatch
	send := func() {
		if pending == nil || len(pending.data) == 0 {
			return
		}
		pending.left.Add(len(chans))
		b := pending
		for _, c := range chans {
			c <- b
		}
		// Recycle the batch once every worker is done with it.
		go func() { b.left.Wait(); b.reset(); free <- b }()
		pending = nil
	}
	stop := func() {
		send()
		for _, c := range chans {
			close(c)
		}
		wg.Wait()
	}
	sha := sha1.New()
	var sum [20]byte
	var firstBad error
	n := 0
	for {
		if n&1023 == 0 {
			if err := ctx.Err(); err != nil {
				stop()
				return nil, err
			}
		}
		e, err := src.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			stop()
			return nil, err
		}
		n++
		if firstBad == nil {
			firstBad = checkTemplateHash(opts.File, e, sha, sum[:0])
		}
		if sha1Bank >= 0 {
			d, err := appendTemplateHash(sum[:0], e, mr.SHA1, false, nil)
			if err == nil {
				err = ext(e.PCR, sha1Bank).Extend(d)
			}
			if err != nil {
				stop()
				return nil, &eventlog.Error{File: opts.File, Record: e.Index, Offset: e.Offset, Err: err}
			}
		} else {
			ext(e.PCR, 0) // the PCR exists in the result even without a sha1 bank
		}
		if !e.IsViolation() && e.TemplateData == nil {
			stop()
			return nil, &eventlog.Error{File: opts.File, Record: e.Index, Offset: e.Offset,
				Err: fmt.Errorf("%w: %v template hash of a %s entry read from an ascii list (template data unknown)",
					mr.ErrUnsupported, banks[others[0]], e.TemplateName)}
		}
		if pending == nil {
			pending = <-free
		}
		pending.pcr = append(pending.pcr, e.PCR)
		if e.IsViolation() {
			pending.data = append(pending.data, nil)
		} else {
			// Keep offsets valid across buffer growth: record the data
			// after appending, re-slicing at the end of the batch.
			start := len(pending.buf)
			pending.buf = append(pending.buf, e.TemplateData...)
			pending.data = append(pending.data, pending.buf[start:len(pending.buf):len(pending.buf)])
		}
		if len(pending.data) == parallelBatch {
			fixSlices(pending)
			send()
		}
	}
	if pending != nil {
		fixSlices(pending)
	}
	stop()
	for w, bi := range others {
		if ws[w].err != nil {
			return nil, ws[w].err
		}
		for p, e := range ws[w].pcrs {
			if pcrs[p] == nil {
				ext(p, bi)
			}
			pcrs[p][bi] = e
		}
	}
	return finishReplay(opts, banks, n, pcrs, firstBad)
}

// fixSlices re-points each entry's data into the batch buffer: appends may
// have moved the buffer while the batch filled up.
func fixSlices(b *pbatch) {
	off := 0
	for k, d := range b.data {
		if d == nil {
			continue
		}
		l := len(d)
		b.data[k] = b.buf[off : off+l : off+l]
		off += l
	}
}
