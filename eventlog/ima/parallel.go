package ima

import (
	"context"
	"sync"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// A parallel replay is a pipeline of three steps, so that no goroutine
// touches every byte of the list on the critical path:
//
//   - the splitter (the caller's goroutine) reads the list in large blocks
//     and finds the entry boundaries from the length fields alone, without
//     copying an entry (split.go);
//   - workers, one per core, take whole blocks, parse their entries, check
//     each listed SHA-1, hash the template data for every bank and verify
//     signatures (work.go);
//   - one folder per bank folds the blocks' digests into its chain in list
//     order (the fold is a chain, so it is the only sequential part, and it
//     costs one or two compressions per entry).
//
// Blocks come from a fixed pool and go back to it once hashed and folded, so
// memory does not grow with the list. Every step records its first problem
// with the entry's number, and the outcome keeps, of each kind, the one with
// the lowest number: the result and the error are those of the sequential
// replay, whatever the scheduling.

// pipeOptions say what a pipeline computes.
type pipeOptions struct {
	file       string
	banks      []mr.Alg
	sha1Padded bool
	checkHash  bool // check each listed SHA-1 against the template data
	sigs       bool // verify signatures against keys
	keys       []Key
	requireAll bool // an unsigned entry is a signature failure
	limit      int  // entries to read; < 0: all
}

// replayParallel is Replay spread over the cores.
func replayParallel(ctx context.Context, src Source, opts ReplayOptions, banks []mr.Alg) (*eventlog.Replay, error) {
	res, _, err := runPipeline(ctx, src, pipeOptions{file: opts.File, banks: banks, sha1Padded: opts.SHA1Padded, checkHash: true, limit: -1})
	if err != nil {
		return nil, err
	}
	if res.parseErr != nil {
		return nil, res.parseErr
	}
	return finishReplay(opts, banks, res.entries, res.pcrs, res.bad.err)
}

// ReplaySigned is Replay that also verifies, in the same pass and on every
// core, the signature of each entry against keys as CheckSignatures does.
// The replay's error comes first (an entry that cannot be read, then a
// listed hash that does not match, then an expected value that differs);
// without one, the error is CheckSignatures' for the list. The report
// counts the entries before the first signature failure.
func ReplaySigned(ctx context.Context, src Source, opts ReplayOptions, keys []Key, requireAll bool) (*eventlog.Replay, SignatureReport, error) {
	banks, err := replayBanks(opts, src)
	if err != nil {
		return nil, SignatureReport{}, err
	}
	o, rep, err := runPipeline(ctx, src, pipeOptions{file: opts.File, banks: banks, sha1Padded: opts.SHA1Padded,
		checkHash: true, sigs: true, keys: keys, requireAll: requireAll, limit: -1})
	if err != nil {
		return nil, rep, err
	}
	if o.parse.err != nil {
		return nil, rep, o.parse.err
	}
	res, err := finishReplay(opts, banks, o.entries, o.pcrs, o.bad.err)
	if err == nil {
		err = o.sig.err
	}
	return res, rep, err
}

// runPipeline runs the splitter, the workers and the folders over src and
// returns what they found. err is an error of the pipeline itself (a
// cancelled context); problems of the list are in the outcome.
func runPipeline(ctx context.Context, src Source, po pipeOptions) (*outcome, SignatureReport, error) {
	p := newPipeline(po)
	p.start()
	err := p.split(ctx, src)
	p.stop()
	if err != nil {
		return nil, SignatureReport{}, err
	}
	return p.collect()
}

// pipeline holds the shared state of one parallel pass.
type pipeline struct {
	po      pipeOptions
	workers int
	free    chan *chunk   // the block pool
	todo    chan *chunk   // blocks waiting for a worker
	fold    []chan *chunk // per bank, blocks in list order
	folded  []map[int]*mr.Extender
	wg      sync.WaitGroup

	// Written by the splitter only.
	entries  int    // entries split so far
	readFile string // the Reader's name for the list, for errors of reading

	mu  sync.Mutex
	out outcome
}

// start launches the workers and the folders.
func (p *pipeline) start() {
	for range p.workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			w := newWorker(p)
			for c := range p.todo {
				w.hash(c)
				p.merge(c)
				close(c.hashed)
				c.release(p.free)
			}
		}()
	}
	for b := range p.po.banks {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.folded[b] = foldBank(p.fold[b], b, p.po.banks[b], p.stride(), p.bankOffset(b), p.free)
		}()
	}
}

// stop tells the workers and folders that no block follows and waits for
// them.
func (p *pipeline) stop() {
	close(p.todo)
	for _, c := range p.fold {
		close(c)
	}
	p.wg.Wait()
}

// emit hands a split block to the workers and, in order, to the folders.
func (p *pipeline) emit(c *chunk) {
	c.refs.Store(int32(1 + len(p.fold)))
	for _, f := range p.fold {
		f <- c
	}
	p.todo <- c
}

// foldBank folds bank alg of every block it receives, in order, into one
// extender per PCR. A block's entries from the first that could not be
// parsed on are not folded (the replay fails there anyway).
func foldBank(in <-chan *chunk, bank int, alg mr.Alg, stride, off int, free chan<- *chunk) map[int]*mr.Extender {
	pcrs := map[int]*mr.Extender{}
	lastPCR, last := -1, (*mr.Extender)(nil)
	size := alg.Size()
	for c := range in {
		<-c.hashed
		for k := range c.good {
			ref := &c.ents[k]
			if int(ref.pcr) != lastPCR {
				lastPCR = int(ref.pcr)
				if last = pcrs[lastPCR]; last == nil {
					last = mr.NewExtender(mr.Zero(alg))
					pcrs[lastPCR] = last
				}
			}
			at := k*stride + off
			// The digest has the bank's size: it cannot fail.
			_ = last.Extend(c.digests[at : at+size])
		}
		c.release(free)
	}
	return pcrs
}

// collect turns the merged outcome into the replay's extenders and the
// signature report.
func (p *pipeline) collect() (*outcome, SignatureReport, error) {
	o := &p.out
	o.entries = p.entries
	o.pcrs = map[int][]*mr.Extender{}
	for b, m := range p.folded {
		for pcr, e := range m {
			if o.pcrs[pcr] == nil {
				o.pcrs[pcr] = make([]*mr.Extender, len(p.po.banks))
			}
			o.pcrs[pcr][b] = e
		}
	}
	return o, o.signatureReport(), nil
}
