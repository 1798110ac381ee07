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
	ext  *folder
}

type vState struct {
	ext *folder
	alg mr.Alg
	n   int
}

// folder is a register value being extended, v = H(v || d), reusing its
// hash and buffer (mr.Extender without the copy per read).
type folder struct {
	alg mr.Alg
	h   hash.Hash
	v   []byte
}

func newFolder(start mr.Digest) *folder {
	return &folder{alg: start.Alg, h: start.Alg.New(), v: append(make([]byte, 0, 64), start.Bytes...)}
}

func (f *folder) Extend(d []byte) error {
	if len(d) != len(f.v) {
		return fmt.Errorf("%w: extending a %v register needs %d bytes, got %d", mr.ErrDigestSize, f.alg, len(f.v), len(d))
	}
	f.h.Reset()
	f.h.Write(f.v)
	f.h.Write(d)
	f.v = f.h.Sum(f.v[:0])
	return nil
}

func (f *folder) Value() mr.Digest { return mr.Digest{Alg: f.alg, Bytes: append([]byte(nil), f.v...)} }

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
	name := opt.Name
	if name == nil {
		name = TDXName
	}
	res := &Result{Counts: map[string]int{}, Last: -1}
	regs := map[uint32]*regState{}
	virt := map[string]*vState{}
	sawRecord := false
	if opt.Resume != nil {
		for _, v := range opt.Resume.Virtual {
			n := opt.Resume.Counts[v.Register.Name]
			virt[v.Register.Name] = &vState{alg: v.Digest.Alg, ext: newFolder(v.Digest), n: n}
			res.Counts[v.Register.Name] = n
		}
		sawRecord = true
	}
	var last *regState
	hashers := map[mr.Alg]hash.Hash{}
	var sum, prev []byte
	var prevAlg mr.Alg
	fail := func(e *Entry, format string, a ...any) error {
		return &eventlog.Error{File: opt.File, Record: e.Index, Offset: e.Offset,
			Err: fmt.Errorf("%w: %s", mr.ErrMalformed, fmt.Sprintf(format, a...))}
	}
	finish := func() {
		if last != nil {
			res.Previous = mr.Digest{Alg: prevAlg, Bytes: append([]byte(nil), prev...)}
		}
		res.Registers = res.Registers[:0]
		rs := make([]*regState, 0, len(regs))
		for _, s := range regs {
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
		names := make([]string, 0, len(virt))
		for n := range virt {
			names = append(names, n)
		}
		sort.Strings(names)
		res.Virtual = res.Virtual[:0]
		for _, n := range names {
			v := virt[n].ext.Value()
			res.Virtual = append(res.Virtual, mr.Value{
				Register: mr.Register{Name: n, Alg: v.Alg, Size: v.Alg.Size(), Flags: mr.Virtual, Index: -1},
				Digest:   v,
			})
		}
	}
	reg := func(e *Entry, start mr.Digest) (*regState, error) {
		s := regs[e.MRIndex]
		if s != nil {
			if !start.IsZero() {
				return nil, fail(e, "INIT entry for MR index %d after entries extending it", e.MRIndex)
			}
			return s, nil
		}
		if start.IsZero() && opt.Resume != nil && len(regs) == 0 {
			start = opt.Resume.Backing
		} else if !start.IsZero() && opt.Resume != nil {
			return nil, fail(e, "INIT entry in a resumed replay")
		}
		if start.IsZero() {
			start = mr.Zero(e.Digest.Alg)
		}
		n := opt.Backing
		if n == "" || len(regs) > 0 {
			n = name(e.MRIndex)
		}
		s = &regState{name: n, idx: e.MRIndex, ext: newFolder(start)}
		regs[e.MRIndex] = s
		return s, nil
	}
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			finish()
			return res, err
		}
		res.End = e.Offset + e.Size
		if !e.Init.IsZero() {
			if _, err := reg(e, e.Init); err != nil {
				finish()
				return res, err
			}
			if res.Init.IsZero() {
				res.Init = e.Init
			}
		}
		if e.Extended {
			s, err := reg(e, mr.Digest{})
			if err != nil {
				finish()
				return res, err
			}
			if !e.Foreign {
				h := hashers[e.Digest.Alg]
				if h == nil {
					h = e.Digest.Alg.New()
					hashers[e.Digest.Alg] = h
				}
				h.Reset()
				h.Write(e.Event)
				if sum = h.Sum(sum[:0]); !bytes.Equal(sum, e.Digest.Bytes) {
					finish()
					return res, &eventlog.Mismatch{File: opt.File, Register: s.name, Record: e.Index, Offset: e.Offset,
						Expected: e.Digest, Computed: mr.Digest{Alg: e.Digest.Alg, Bytes: append([]byte(nil), sum...)},
						Reason: fmt.Sprintf("entry digest is not H(event) of %q", clip(e.Text()))}
				}
			}
			prev = append(prev[:0], s.ext.v...)
			prevAlg = e.Digest.Alg
			if err := s.ext.Extend(e.Digest.Bytes); err != nil {
				finish()
				return res, fail(e, "%v", err)
			}
			res.Last, res.LastOffset, last = e.Index, e.Offset, s
		}
		if rec := e.Record; !rec.IsZero() {
			switch {
			case rec.IsVirtual():
				n, d, err := rec.Virtual()
				if err != nil {
					finish()
					return res, fail(e, "%v", err)
				}
				v := virt[n]
				if v == nil {
					v = &vState{alg: d.Alg, ext: newFolder(mr.Zero(d.Alg))}
					virt[n] = v
				}
				if v.alg != d.Alg {
					finish()
					return res, fail(e, "virtual register %s is %v, but record %q extends it with %v",
						n, v.alg, clip(rec.String()), d.Alg)
				}
				if err := v.ext.Extend(d.Bytes); err != nil {
					finish()
					return res, fail(e, "virtual register %s: %v", n, err)
				}
				res.Counts[n]++
				if opt.OnVirtual != nil {
					if err := opt.OnVirtual(VirtualRecord{Name: n, Seq: v.n, Digest: d, Value: v.ext.Value(), Entry: e}); err != nil {
						finish()
						return res, err
					}
				}
				v.n++
			case rec.Domain == DomainCCMR && rec.Operation == OpSnapshot:
				if sawRecord {
					finish()
					return res, fail(e, "snapshot record is not the first record of the log (segment)")
				}
				snap, err := ParseSnapshot(rec.Content)
				if err != nil {
					finish()
					return res, fail(e, "%v", err)
				}
				for _, s := range snap {
					virt[s.Name] = &vState{alg: s.Value.Alg, ext: newFolder(s.Value)}
				}
				res.Snapshot = snap
			}
			sawRecord = true
		}
		res.Events++
		if opt.OnEntry != nil {
			if err := opt.OnEntry(e); err != nil {
				finish()
				return res, err
			}
		}
	}
	if last == nil {
		// Nothing extended: Previous is the start value of the (single) register.
		for _, s := range regs {
			res.Previous = s.ext.Value()
		}
	}
	finish()
	return res, nil
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
