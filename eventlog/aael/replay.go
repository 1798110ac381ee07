package aael

import (
	"bytes"
	"errors"
	"fmt"
	"hash"
	"io"
	"iter"
	"sort"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// TDXName names a CC MR index on TDX: 0 mrtd, 1..4 rtmr0..rtmr3, others
// "mrindexN".
func TDXName(i uint32) string {
	switch {
	case i == 0:
		return "mrtd"
	case i <= 4:
		return fmt.Sprintf("rtmr%d", i-1)
	}
	return fmt.Sprintf("mrindex%d", i)
}

// PCRName names an MR index on a TPM, where it is the PCR number: pcrN.
func PCRName(i uint32) string { return fmt.Sprintf("pcr%d", i) }

// ReplayOptions configure Replay.
type ReplayOptions struct {
	// File names the input in errors.
	File string
	// Backing names the backing register of a log that uses one MR index
	// (ccmr's own logs). When empty, Name names it.
	Backing string
	// Name names the register of an MR index; nil means TDXName. Pass
	// PCRName for a log on a TPM.
	Name func(uint32) string
	// OnEntry, when set, is called for every entry in order (after its
	// checks). Returning an error stops the replay with that error.
	OnEntry func(*Entry) error
	// OnVirtual, when set, is called for every virtual-register record in
	// log order. Returning an error stops the replay with that error.
	OnVirtual func(VirtualRecord) error
	// Resume, when set, continues a replay that stopped earlier (a monitor
	// that verified the log up to some entry and now reads only what
	// follows): the backing register starts at Resume.Backing instead of
	// zero, and the virtual registers at Resume.Virtual with their record
	// counts. The input must then not start with an INIT entry.
	Resume *Resume
}

// Resume is where an earlier replay stopped.
type Resume struct {
	Backing mr.Digest
	Virtual []mr.Value
	Counts  map[string]int
}

// VirtualRecord is one record of one virtual register, as Replay meets it.
type VirtualRecord struct {
	// Name is the virtual register.
	Name string
	// Seq numbers the register's records from 0 in this log (segment):
	// for mr_ima, record Seq is IMA entry Seq (counting from the snapshot,
	// for a segment that starts with one).
	Seq int
	// Digest is the digest the record extends the register with.
	Digest mr.Digest
	// Value is the register's value after the record.
	Value mr.Digest
	// Entry is the log entry holding the record (valid during the callback).
	Entry *Entry
}

// Result is the outcome of Replay. eventlog.Replay.Registers holds the backing
// register(s), Virtual every virtual register, sorted by name.
type Result struct {
	eventlog.Replay
	// Init is the start value of the INIT entry, zero when there is none.
	Init mr.Digest
	// Snapshot holds the values a snapshot record set, when there is one.
	Snapshot []Snapshot
	// Counts is the number of records of each virtual register.
	Counts map[string]int
	// Previous is the backing register's value before the last extended
	// entry (the start value when none was extended): vmr's roll-forward
	// check compares the hardware register with it.
	Previous mr.Digest
	// Last is the index of the last extended entry, -1 when none.
	Last int
	// LastOffset is the byte offset of that entry.
	LastOffset int64
	// End is the byte offset just after the last entry read.
	End int64
}

type regState struct {
	name string
	idx  uint32
	ext  *mr.Extender
}

type vState struct {
	ext *mr.Extender
	alg mr.Alg
	n   int
}

// Replay reads every entry of r and replays it: each backing register
// starts at zero (or at the INIT value) and is extended with each extended
// entry's digest in order; each AAEL entry's digest must equal H(event)
// (else a *eventlog.Mismatch naming the record and its offset); each virtual
// register starts at zeros of its algorithm (or at its snapshot value) and
// folds v = H(v || digest) over its records. A virtual register mixing
// algorithms, a snapshot that is not the first record, or bad input is a
// *eventlog.Error. On error the partial Result up to the failing entry is
// returned too.
func Replay(r EntryReader, opt ReplayOptions) (*Result, error) {
	p := newReplayer(opt)
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err == nil {
			err = p.entry(e)
		}
		if err != nil {
			p.finish()
			return p.res, err
		}
	}
	if p.last == nil {
		// Nothing extended: Previous is the start value of the (single) register.
		for _, s := range p.regs {
			p.res.Previous = s.ext.Value()
		}
	}
	p.finish()
	return p.res, nil
}

// replayer is the state of one Replay: the backing registers by MR index,
// the virtual registers by name, and what Result reports.
type replayer struct {
	opt       ReplayOptions
	name      func(uint32) string
	res       *Result
	regs      map[uint32]*regState
	virt      map[string]*vState
	sawRecord bool      // a record was met: a snapshot may no longer come
	last      *regState // the register of the last extended entry
	hashers   map[mr.Alg]hash.Hash
	sum       []byte
	prev      []byte // the value of last before its last extend
	prevAlg   mr.Alg
}

// newReplayer starts a replay, from opt.Resume when it is set.
func newReplayer(opt ReplayOptions) *replayer {
	p := &replayer{opt: opt, name: opt.Name, res: &Result{Counts: map[string]int{}, Last: -1},
		regs: map[uint32]*regState{}, virt: map[string]*vState{}, hashers: map[mr.Alg]hash.Hash{}}
	if p.name == nil {
		p.name = TDXName
	}
	if opt.Resume != nil {
		for _, v := range opt.Resume.Virtual {
			n := opt.Resume.Counts[v.Register.Name]
			p.virt[v.Register.Name] = &vState{alg: v.Digest.Alg, ext: mr.NewExtender(v.Digest), n: n}
			p.res.Counts[v.Register.Name] = n
		}
		p.sawRecord = true
	}
	return p
}

// fail is bad input at entry e.
func (p *replayer) fail(e *Entry, format string, a ...any) error {
	return &eventlog.Error{File: p.opt.File, Record: e.Index, Offset: e.Offset,
		Err: fmt.Errorf("%w: %s", mr.ErrMalformed, fmt.Sprintf(format, a...))}
}

// entry replays one entry: its INIT value, its extend, its record, then
// the caller's OnEntry.
func (p *replayer) entry(e *Entry) error {
	p.res.End = e.Offset + e.Size
	if !e.Init.IsZero() {
		if _, err := p.reg(e, e.Init); err != nil {
			return err
		}
		if p.res.Init.IsZero() {
			p.res.Init = e.Init
		}
	}
	if e.Extended {
		if err := p.extend(e); err != nil {
			return err
		}
	}
	if rec := e.Record; !rec.IsZero() {
		if err := p.record(e, rec); err != nil {
			return err
		}
		p.sawRecord = true
	}
	p.res.Events++
	if p.opt.OnEntry != nil {
		return p.opt.OnEntry(e)
	}
	return nil
}

// reg returns the backing register of e's MR index, creating it at start
// (an INIT value), at Resume.Backing, or at zero.
func (p *replayer) reg(e *Entry, start mr.Digest) (*regState, error) {
	s := p.regs[e.MRIndex]
	if s != nil {
		if !start.IsZero() {
			return nil, p.fail(e, "INIT entry for MR index %d after entries extending it", e.MRIndex)
		}
		return s, nil
	}
	if start.IsZero() && p.opt.Resume != nil && len(p.regs) == 0 {
		start = p.opt.Resume.Backing
	} else if !start.IsZero() && p.opt.Resume != nil {
		return nil, p.fail(e, "INIT entry in a resumed replay")
	}
	n := p.opt.Backing
	if n == "" || len(p.regs) > 0 {
		n = p.name(e.MRIndex)
	}
	if start.IsZero() {
		// The register's reset value: all ones on TPM PCRs 17-22.
		start = mr.ResetValue(n, e.Digest.Alg)
	}
	s = &regState{name: n, idx: e.MRIndex, ext: mr.NewExtender(start)}
	p.regs[e.MRIndex] = s
	return s, nil
}

// extend checks that an AAEL entry's digest is H(event) and folds the
// digest into its backing register.
func (p *replayer) extend(e *Entry) error {
	s, err := p.reg(e, mr.Digest{})
	if err != nil {
		return err
	}
	if !e.Foreign {
		h := p.hashers[e.Digest.Alg]
		if h == nil {
			h = e.Digest.Alg.New()
			p.hashers[e.Digest.Alg] = h
		}
		h.Reset()
		h.Write(e.Event)
		if p.sum = h.Sum(p.sum[:0]); !bytes.Equal(p.sum, e.Digest.Bytes) {
			return &eventlog.Mismatch{File: p.opt.File, Register: s.name, Record: e.Index, Offset: e.Offset,
				Expected: e.Digest, Computed: mr.Digest{Alg: e.Digest.Alg, Bytes: append([]byte(nil), p.sum...)},
				Reason: fmt.Sprintf("entry digest is not H(event) of %q", clip(e.Text()))}
		}
	}
	p.prev = s.ext.AppendValue(p.prev[:0])
	p.prevAlg = e.Digest.Alg
	if err := s.ext.Extend(e.Digest.Bytes); err != nil {
		return p.fail(e, "%v", err)
	}
	p.res.Last, p.res.LastOffset, p.last = e.Index, e.Offset, s
	return nil
}

// record replays the record of entry e: a virtual-register extend or a
// snapshot; other records change no register.
func (p *replayer) record(e *Entry, rec Record) error {
	switch {
	case rec.IsVirtual():
		return p.virtual(e, rec)
	case rec.Domain == DomainCCMR && rec.Operation == OpSnapshot:
		return p.snapshot(e, rec)
	}
	return nil
}

// virtual folds a virtual-register record into its register (created at
// zeros of the record's algorithm) and tells OnVirtual.
func (p *replayer) virtual(e *Entry, rec Record) error {
	n, d, err := rec.Virtual()
	if err != nil {
		return p.fail(e, "%v", err)
	}
	v := p.virt[n]
	if v == nil {
		v = &vState{alg: d.Alg, ext: mr.NewExtender(mr.Zero(d.Alg))}
		p.virt[n] = v
	}
	if v.alg != d.Alg {
		return p.fail(e, "virtual register %s is %v, but record %q extends it with %v",
			n, v.alg, clip(rec.String()), d.Alg)
	}
	if err := v.ext.Extend(d.Bytes); err != nil {
		return p.fail(e, "virtual register %s: %v", n, err)
	}
	p.res.Counts[n]++
	if p.opt.OnVirtual != nil {
		if err := p.opt.OnVirtual(VirtualRecord{Name: n, Seq: v.n, Digest: d, Value: v.ext.Value(), Entry: e}); err != nil {
			return err
		}
	}
	v.n++
	return nil
}

// snapshot sets the virtual registers a snapshot record holds; it must be
// the first record of the log (segment).
func (p *replayer) snapshot(e *Entry, rec Record) error {
	if p.sawRecord {
		return p.fail(e, "snapshot record is not the first record of the log (segment)")
	}
	snap, err := ParseSnapshot(rec.Content)
	if err != nil {
		return p.fail(e, "%v", err)
	}
	for _, s := range snap {
		p.virt[s.Name] = &vState{alg: s.Value.Alg, ext: mr.NewExtender(s.Value)}
	}
	p.res.Snapshot = snap
	return nil
}

// finish fills the Result's registers from the replay's state, sorted: the
// backing registers by MR index, the virtual ones by name.
func (p *replayer) finish() {
	res := p.res
	if p.last != nil {
		res.Previous = mr.Digest{Alg: p.prevAlg, Bytes: append([]byte(nil), p.prev...)}
	}
	res.Registers = res.Registers[:0]
	rs := make([]*regState, 0, len(p.regs))
	for _, s := range p.regs {
		rs = append(rs, s)
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].idx < rs[j].idx })
	for _, s := range rs {
		v := s.ext.Value()
		res.Registers = append(res.Registers, mr.Value{
			Register: mr.Register{Name: s.name, Alg: v.Alg, Size: v.Alg.Size(), Index: int(s.idx)},
			Digest:   v,
		})
	}
	names := make([]string, 0, len(p.virt))
	for n := range p.virt {
		names = append(names, n)
	}
	sort.Strings(names)
	res.Virtual = res.Virtual[:0]
	for _, n := range names {
		v := p.virt[n].ext.Value()
		res.Virtual = append(res.Virtual, mr.Value{
			Register: mr.Register{Name: n, Alg: v.Alg, Size: v.Alg.Size(), Flags: mr.Virtual, Index: -1},
			Digest:   v,
		})
	}
}

// Records iterates over the records of virtual register name in log order,
// streaming (the log is not kept in memory). The error of a bad log is
// yielded once, as the last pair.
func Records(r EntryReader, name string, opt ReplayOptions) iter.Seq2[VirtualRecord, error] {
	return func(yield func(VirtualRecord, error) bool) {
		stop := errors.New("stop")
		o := opt
		o.OnEntry = nil
		o.OnVirtual = func(v VirtualRecord) error {
			if v.Name != name {
				return nil
			}
			if !yield(v, nil) {
				return stop
			}
			return nil
		}
		if _, err := Replay(r, o); err != nil && err != stop {
			yield(VirtualRecord{}, err)
		}
	}
}

// Value returns the replayed value of register name (backing or virtual).
func (r *Result) Value(name string) (mr.Digest, bool) {
	for _, v := range r.Registers {
		if v.Register.Name == name {
			return v.Digest, true
		}
	}
	for _, v := range r.Virtual {
		if v.Register.Name == name {
			return v.Digest, true
		}
	}
	return mr.Digest{}, false
}

// Check compares the replayed values with expected ones (register name →
// value). The first difference, in name order, is a *eventlog.Mismatch with
// Record -1 (a register holds only the end of its chain); a name the log
// does not touch is a mismatch too.
func (r *Result) Check(file string, expect map[string]mr.Digest) error {
	names := make([]string, 0, len(expect))
	for n := range expect {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		want := expect[n]
		got, ok := r.Value(n)
		if !ok {
			return &eventlog.Mismatch{File: file, Register: n, Record: -1, Expected: want, Reason: "register not in the log"}
		}
		if !got.Equal(want) {
			return &eventlog.Mismatch{File: file, Register: n, Record: -1, Expected: want, Computed: got, Reason: "replayed value differs"}
		}
	}
	return nil
}

// Sniff tells the runtime log's two forms apart from the first bytes of a
// file: aael-text starts with "INIT ", the binary form with an entry
// header of type EV_EVENT_TAG or EV_NO_ACTION. ok is false for neither.
func Sniff(head []byte) (f eventlog.Format, ok bool) {
	if bytes.HasPrefix(head, []byte(InitKeyword+" ")) {
		return eventlog.FormatAAELText, true
	}
	if len(head) >= 20 {
		t := uint32(head[4]) | uint32(head[5])<<8 | uint32(head[6])<<16 | uint32(head[7])<<24
		cnt := uint32(head[8]) | uint32(head[9])<<8 | uint32(head[10])<<16 | uint32(head[11])<<24
		alg := mr.Alg(uint16(head[12]) | uint16(head[13])<<8)
		if (t == EvEventTag || t == EvNoAction) && cnt == 1 && alg.Valid() {
			return eventlog.FormatRuntime, true
		}
	}
	return "", false
}
