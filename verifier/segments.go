package verifier

import (
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/mr"
)

// segment is one runtime log of a backing register in the bundle; several
// make a chain (docs/design.md, "The CC runtime log", Segments), oldest first.
type segment struct {
	name string
	log  *bundle.Log
}

func (sg segment) reader(data io.Reader) aael.EntryReader {
	return sg.readerWith(data, aael.Options{File: sg.name})
}

// continueReader reads a segment's data after the offset a monitor state
// verified: its entries must use the digest algorithm and MR index of the
// ones before, as they must when the whole segment is read.
func (sg segment) continueReader(data io.Reader, st *RuntimeState) aael.EntryReader {
	return sg.readerWith(data, aael.Options{File: sg.name, Continue: true, Alg: st.entryAlg(), MRIndex: *st.MRIndex})
}

func (sg segment) readerWith(data io.Reader, opt aael.Options) aael.EntryReader {
	if sg.log.Format == string(eventlog.FormatAAELText) {
		return aael.NewTextReader(data, opt)
	}
	return aael.NewReader(data, opt)
}

// entryForm is the digest algorithm and MR index of a segment's entries,
// from its first (the reader holds every later entry to them); ok is false
// for an empty or unreadable segment.
func (sg segment) entryForm() (mr.Alg, uint32, bool) {
	e, err := sg.reader(sg.log.Open(0)).Next()
	if err != nil {
		return 0, 0, false
	}
	return e.Digest.Alg, e.MRIndex, e.Digest.Alg.Valid()
}

// initOf returns the INIT value a segment starts with (zero without one).
func initOf(sg segment) mr.Digest {
	e, err := sg.reader(sg.log.Open(0)).Next()
	if err != nil {
		return mr.Digest{}
	}
	return e.Init
}

// runtimeChain replays the segments of one backing register: each segment
// after the first must start (INIT) where the one before ended and its
// snapshot must hold the virtual values the one before derived; the last
// must end at the register's trusted value. The first segment is resumed
// from the monitor state when it is the segment the state stopped in; a
// first segment that starts with a snapshot must be proven by the state.
func (r *run) runtimeChain(reg string, segs []segment, l *LayerResult) error {
	var resume *aael.Resume
	skip := int64(0)
	stateCut := false // the first segment starts exactly where the state stopped
	if st := r.state.runtimeFor(reg); st != nil {
		init0 := initOf(segs[0])
		switch {
		case init0.Equal(st.SegmentInit) || (init0.IsZero() && st.SegmentInit.IsZero()):
			if segs[0].log.Size() < st.Offset {
				return &failError{&Failure{Log: segs[0].name, Record: -1, Register: reg,
					Reason: fmt.Sprintf("the runtime log is %d bytes, shorter than the %d the monitor state verified: rewritten, or a new boot (start a new state)", segs[0].log.Size(), st.Offset)}}
			}
			resume = st.resume()
			skip = st.Offset
		case init0.Equal(st.Value):
			stateCut = true
		default:
			return &failError{&Failure{Log: segs[0].name, Record: -1, Register: reg, Expected: st.Value.String(), Computed: init0.String(),
				Reason: "the runtime log does not continue the monitor state: its segment starts neither where the state's segment started nor where the state stopped (rewritten, or a new boot)"}}
		}
	}
	var prevFinal mr.Digest
	var prevVirt []mr.Value
	var last *aael.Result
	var h history // the chain's start, when no monitor state proves it
	// Every segment of a chain is a log of the same register: its entries
	// use the first segment's digest algorithm and MR index (the reader
	// holds the entries within one segment to them).
	alg0, mri0, form0 := segs[0].entryForm()
	for i, sg := range segs {
		if a, m, ok := sg.entryForm(); i > 0 && form0 && ok && (a != alg0 || m != mri0) {
			return &failError{&Failure{Log: sg.name, Record: 0, Register: reg,
				Reason: fmt.Sprintf("segment %d uses %v and MR index %d, but segment 0 of %s uses %v and MR index %d: a chain is one register's log", i, a, m, reg, alg0, mri0)}}
		}
		opt := aael.ReplayOptions{File: sg.name, Backing: reg,
			OnVirtual: func(v aael.VirtualRecord) error {
				r.records[v.Name] = append(r.records[v.Name], v.Digest)
				return nil
			}}
		if r.b.Platform == mr.PlatformTPM {
			opt.Name = aael.PCRName
		}
		rd := sg.reader(sg.log.Open(0))
		if i == 0 && resume != nil {
			opt.Resume = resume
			rd = sg.continueReader(sg.log.Open(skip), r.state.runtimeFor(reg))
		}
		res, err := aael.Replay(rd, opt)
		if err != nil {
			var le *eventlog.Error
			if errors.As(err, &le) && i == 0 {
				le.Offset += skip
			}
			var mm *eventlog.Mismatch
			if errors.As(err, &mm) && i == 0 {
				mm.Offset += skip
			}
			return failFrom(sg.name, err)
		}
		switch {
		case i > 0:
			if !res.Init.Equal(prevFinal) {
				return &failError{&Failure{Log: sg.name, Record: 0, Register: reg, Expected: prevFinal.String(), Computed: res.Init.String(),
					Reason: fmt.Sprintf("segment %d does not start where segment %d ended: a segment is missing or altered", i, i-1)}}
			}
			if err := sameValues(sg.name, res.Snapshot, prevVirt); err != nil {
				return err
			}
		case stateCut:
			if err := sameValues(sg.name, res.Snapshot, r.state.runtimeFor(reg).resume().Virtual); err != nil {
				return err
			}
		case resume == nil && res.Snapshot != nil && !r.opts.AcceptUnverifiedHistory:
			return &failError{&Failure{Log: sg.name, Record: 1, Register: reg,
				Reason: "the segment starts with a snapshot that nothing proves: give the segment before it, or verify with the monitor state that saw the cut (--accept-unverified-history accepts it, weakened)"}}
		case resume == nil:
			h.start, h.snapshot = res.Init, res.Snapshot // judged by judgeStart below
		}
		if !res.Init.IsZero() {
			h.records-- // the INIT entry is no record
		}
		h.records += res.Events
		prevFinal, prevVirt, last = finalValue(res, reg, resume, i), res.Virtual, res
		l.Checked = append(l.Checked, fmt.Sprintf("%s: %d records replayed", sg.name, res.Events))
	}
	want, ok := r.trusted[regKey{reg, prevFinal.Alg}]
	if !ok {
		return fail("%s: backing register %s (%v) is not covered by the evidence", segs[len(segs)-1].name, reg, prevFinal.Alg)
	}
	if !want.Equal(prevFinal) {
		return &failError{&Failure{Log: segs[len(segs)-1].name, Record: -1, Register: reg, Expected: want.String(), Computed: prevFinal.String(),
			Reason: fmt.Sprintf("replay of the runtime log does not give the quoted %s", reg)}}
	}
	if resume == nil && !stateCut {
		if h.start.IsZero() {
			h.start = mr.Zero(prevFinal.Alg) // no INIT: the replay started at zero
		}
		if err := r.judgeStart(reg, segs[0], h, l); err != nil {
			return err
		}
	}
	if len(segs) > 1 {
		l.Checked = append(l.Checked, fmt.Sprintf("%d segments of %s chain: each starts where the one before ended, each snapshot proven", len(segs), reg))
	}
	for _, v := range last.Virtual {
		if _, dup := r.virtual[v.Register.Name]; dup {
			return fail("%s: virtual register %s also appears in another runtime log", segs[len(segs)-1].name, v.Register.Name)
		}
		r.virtual[v.Register.Name] = v.Digest
	}
	l.Checked = append(l.Checked, fmt.Sprintf("the runtime log of %s replays to the quoted value", reg))
	// What a monitor state will remember.
	end := segs[len(segs)-1].log.Size()
	counts := map[string]int{}
	for n, c := range last.Counts {
		counts[n] = c
	}
	// The entries' algorithm and MR index: the state's when the resumed
	// segment is the last, else those of the last segment's first entry.
	var alg mr.Alg
	var mri uint32
	if st := r.state.runtimeFor(reg); len(segs) == 1 && resume != nil {
		alg, mri = st.entryAlg(), *st.MRIndex
	} else if a, m, ok := segs[len(segs)-1].entryForm(); ok {
		alg, mri = a, m
	} else {
		return fail("%s: the runtime log has no entry to take its digest algorithm and MR index from", segs[len(segs)-1].name)
	}
	if !r.unjudged {
		r.next.setRuntime(reg, initOf(segs[len(segs)-1]), end, prevFinal, last.Virtual, counts, alg, mri)
	}
	return nil
}

// finalValue is the backing register's value after a replay: the replayed
// value, or the resume value when the resumed part held no entry.
func finalValue(res *aael.Result, reg string, resume *aael.Resume, i int) mr.Digest {
	if v, ok := res.Value(reg); ok {
		return v
	}
	if i == 0 && resume != nil {
		return resume.Backing
	}
	if len(res.Registers) > 0 {
		return res.Registers[0].Digest
	}
	return mr.Digest{}
}

// sameValues checks a snapshot against the virtual values it must repeat.
func sameValues(name string, snap []aael.Snapshot, want []mr.Value) error {
	got := map[string]mr.Digest{}
	for _, s := range snap {
		got[s.Name] = s.Value
	}
	if len(snap) == 0 && len(want) > 0 {
		return &failError{&Failure{Log: name, Record: 1, Reason: "the segment has no snapshot record but the virtual registers had values"}}
	}
	names := make([]string, 0, len(want))
	for _, w := range want {
		names = append(names, w.Register.Name)
	}
	sort.Strings(names)
	for _, w := range want {
		g, ok := got[w.Register.Name]
		if !ok || !g.Equal(w.Digest) {
			return &failError{&Failure{Log: name, Record: 1, Register: w.Register.Name, Expected: w.Digest.String(), Computed: g.String(),
				Reason: fmt.Sprintf("the snapshot lies about %s", w.Register.Name)}}
		}
		delete(got, w.Register.Name)
	}
	for n := range got {
		return &failError{&Failure{Log: name, Record: 1, Register: n, Reason: fmt.Sprintf("the snapshot names %s, which had no value", n)}}
	}
	return nil
}
