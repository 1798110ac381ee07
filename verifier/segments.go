package verifier

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
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
	if err := r.judgeResettable(reg, segs[0], l); err != nil {
		return err
	}
	var resume *aael.Resume
	skip := int64(0)
	stateCut := false // the anchor segment starts exactly where the state stopped
	base := 0         // segs[base] is where the replay starts (the anchor)
	st := r.state.runtimeFor(reg)
	if st != nil {
		a, err := r.findAnchor(reg, segs, st, l)
		if err != nil {
			return err
		}
		base, stateCut = a.k, a.cut
		if !a.cut {
			resume, skip = st.resume(), a.skip
		}
		segs = segs[base:]
		if err := r.resumedStart(reg, st, segs[0].name, l); err != nil {
			return err
		}
	} else if segs[0].log.Offset != 0 {
		// checkTails refuses this first; never replay a tail as a whole log.
		return fail("%s: a tail of the runtime log of %s without a monitor state that verified its head", segs[0].name, reg)
	}
	var prevFinal mr.Digest
	var prevVirt []mr.Value
	var last *aael.Result
	var h history // the chain's start, when no monitor state proves it
	// Every segment of a chain is a log of the same register: its entries
	// use the first segment's digest algorithm and MR index (the reader
	// holds the entries within one segment to them).
	alg0, mri0, form0 := segs[0].entryForm()
	if resume != nil {
		alg0, mri0, form0 = st.entryAlg(), *st.MRIndex, true
	}
	for i, sg := range segs {
		if a, m, ok := sg.entryForm(); i > 0 && form0 && ok && (a != alg0 || m != mri0) {
			return &failError{&Failure{Log: sg.name, Record: 0, Register: reg,
				Reason: fmt.Sprintf("segment %d uses %v and MR index %d, but segment %d of %s uses %v and MR index %d: a chain is one register's log", base+i, a, m, base, reg, alg0, mri0)}}
		}
		opt := aael.ReplayOptions{File: sg.name, Backing: reg,
			OnVirtual: func(v aael.VirtualRecord) error {
				r.counts[v.Name]++
				if v.Name == ima.VirtualName {
					r.feedIMA(v.Digest) // matched with the IMA list as it comes
				}
				if _, ok := r.opts.AppLogs[v.Name]; ok {
					r.records[v.Name] = append(r.records[v.Name], v.Digest)
				}
				return nil
			}}
		if r.b.Platform == mr.PlatformTPM {
			opt.Name = aael.PCRName
		}
		rd := sg.reader(sg.log.Open(0))
		if i == 0 && resume != nil {
			opt.Resume = resume
			rd = sg.continueReader(sg.log.Open(skip), st)
		}
		res, err := aael.Replay(rd, opt)
		if err != nil {
			var le *eventlog.Error
			if errors.As(err, &le) && i == 0 {
				le.Offset += skip + sg.log.Offset
			}
			var mm *eventlog.Mismatch
			if errors.As(err, &mm) && i == 0 && mm.Offset >= 0 {
				mm.Offset += skip + sg.log.Offset
			}
			return failFrom(sg.name, err)
		}
		switch {
		case i > 0:
			if !res.Init.Equal(prevFinal) {
				return &failError{&Failure{Log: sg.name, Record: 0, Register: reg, Expected: prevFinal.String(), Computed: res.Init.String(),
					Reason: fmt.Sprintf("segment %d does not start where segment %d ended: a segment is missing or altered", base+i, base+i-1)}}
			}
			if err := sameValues(sg.name, res.Snapshot, prevVirt); err != nil {
				return err
			}
		case stateCut:
			if err := sameValues(sg.name, res.Snapshot, st.resume().Virtual); err != nil {
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
	var start *mr.Digest // what a monitor state keeps as the chain's start
	if st != nil {
		start = st.Start
	}
	if resume == nil && !stateCut {
		if h.start.IsZero() {
			h.start = r.resetValue(reg, prevFinal.Alg) // no INIT: the replay started at the reset value
		}
		if err := r.judgeStart(reg, segs[0], h, l); err != nil {
			return err
		}
		start = &h.start
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
	last0 := segs[len(segs)-1].log
	end := last0.Offset + last0.Size()
	counts := map[string]int{}
	for n, c := range last.Counts {
		counts[n] = c
	}
	// The entries' algorithm and MR index: the state's when the resumed
	// segment is the last, else those of the last segment's first entry.
	var alg mr.Alg
	var mri uint32
	if len(segs) == 1 && resume != nil {
		alg, mri = st.entryAlg(), *st.MRIndex
	} else if a, m, ok := segs[len(segs)-1].entryForm(); ok {
		alg, mri = a, m
	} else {
		return fail("%s: the runtime log has no entry to take its digest algorithm and MR index from", segs[len(segs)-1].name)
	}
	if !r.unjudged {
		init := initOf(segs[len(segs)-1])
		if len(segs) == 1 && resume != nil {
			init = st.SegmentInit // a tail's first bytes are no INIT
		}
		r.next.setRuntime(reg, init, end, prevFinal, last.Virtual, counts, alg, mri, start)
		if r.mon != nil {
			if err := r.archive(reg, st, stateCut, segs); err != nil {
				return err
			}
		}
	}
	return nil
}

// resumedStart judges, for a chain that resumes a monitor state, the
// firmware or dstack log's replay of its register: the chain is not
// replayed from its start, so judgeStart does not run, and without this
// the log's events there (a made-up EV_IPL on PCR 14, a dstack
// compose-hash event on RTMR3) would be judged by nothing. The replay must
// give the start the state proved when it was first written, and by events
// that may start a runtime log (firmwareStartProblems), as in a
// verification of the whole chain.
func (r *run) resumedStart(reg string, st *RuntimeState, name string, l *LayerResult) error {
	cs, ok := r.starts[regKey{reg, st.Value.Alg}]
	if !ok {
		return nil // no log of the bundle replays the register
	}
	switch {
	case cs.unproven != "":
		return &failError{&Failure{Log: cs.from, Record: -1, Register: reg, Computed: cs.value.String(),
			Reason: fmt.Sprintf("%s, so its replay of %s is no runtime log's start, and those events are judged by nothing (the runtime log of %s resumes the monitor state of %s)", cs.unproven, reg, reg, stateTime(r.state))}}
	case st.Start == nil:
		return &failError{&Failure{Log: cs.from, Record: -1, Register: reg, Computed: cs.value.String(),
			Reason: fmt.Sprintf("%s replays %s, but the monitor state of %s keeps no start of its runtime log to compare it with (written before it kept one): its events there would be judged by nothing; start a new state", cs.from, reg, stateTime(r.state))}}
	case !cs.value.Equal(*st.Start):
		return &failError{&Failure{Log: cs.from, Record: -1, Register: reg, Expected: st.Start.String(), Computed: cs.value.String(),
			Reason: fmt.Sprintf("%s replays %s to another value than the start of its runtime log the monitor state of %s proved: its events there changed", cs.from, reg, stateTime(r.state))}}
	}
	l.Checked = append(l.Checked, fmt.Sprintf("%s: %s replays %s to the start of its runtime log the monitor state proved", name, cs.from, reg))
	return nil
}

// anchor is where a chain resumes a monitor state: segment k, resumed at
// byte skip of its bytes (the state's offset), or, when cut, replayed
// whole from its INIT, which is the state's value.
type anchor struct {
	k    int
	skip int64
	cut  bool
}

// findAnchor finds the segment of reg's chain the state's point is in: a
// tail (checkTails proved it reaches the point), or the first whole segment
// that starts as the state's segment did, is at least as long and whose
// first Offset bytes hash as the ones verified; else the first segment that
// starts (INIT) at the state's value. The segments before it are what the
// state judged: they are not replayed, and their bytes must be segments it
// archived (checkArchived).
func (r *run) findAnchor(reg string, segs []segment, st *RuntimeState, l *LayerResult) (anchor, error) {
	if lg := segs[0].log; lg.Offset != 0 {
		h, err := resumeHash(st.PrefixState)
		if err != nil {
			return anchor{}, fail("%s: monitor state: %v", segs[0].name, err)
		}
		skip := pos(lg, st.Offset)
		r.mon.runtime[reg] = &prefixHash{log: lg, off: skip, start: skip, h: h, records: st.Records}
		l.NotChecked = append(l.NotChecked, fmt.Sprintf("%s: a tail from byte %d: %d records (%d bytes) proven by the monitor state of %s, not sent", segs[0].name, lg.Offset, st.Records, st.Offset, stateTime(r.state)))
		if skip > 0 {
			l.NotChecked = append(l.NotChecked, fmt.Sprintf("%s: bytes %d-%d were verified before (the state's point is later than the tail's start): not compared, as the state keeps no hash of them alone, and not used", segs[0].name, lg.Offset, st.Offset))
		}
		return anchor{skip: skip}, nil
	}
	var why error
	for k, sg := range segs {
		init := initOf(sg)
		if !(init.Equal(st.SegmentInit) || init.IsZero() && st.SegmentInit.IsZero()) {
			continue
		}
		if sg.log.Size() < st.Offset {
			if why == nil {
				why = &failError{&Failure{Log: sg.name, Record: -1, Register: reg,
					Reason: fmt.Sprintf("the runtime log is %d bytes, shorter than the %d the monitor state verified: rewritten, or a new boot (start a new state)", sg.log.Size(), st.Offset)}}
			}
			continue
		}
		h := sha256.New()
		if err := hashRange(h, sg.log, 0, st.Offset); err != nil {
			return anchor{}, failFrom(sg.name, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != st.Prefix {
			if why == nil {
				why = &failError{&Failure{Log: sg.name, Record: -1, Register: reg, Expected: "sha256:" + st.Prefix, Computed: "sha256:" + got,
					Reason: fmt.Sprintf("the first %d bytes of the runtime log differ from the ones the monitor state of %s verified: history changed after it was judged", st.Offset, stateTime(r.state))}}
			}
			continue
		}
		if err := r.checkArchived(reg, segs[:k], st.Archived); err != nil {
			return anchor{}, err
		}
		r.mon.runtime[reg] = &prefixHash{log: sg.log, off: st.Offset, start: st.Offset, h: h, records: st.Records}
		l.NotChecked = append(l.NotChecked, fmt.Sprintf("%s: %d records (%d bytes) proven by the monitor state of %s, not re-read (their hash is the one verified)", sg.name, st.Records, st.Offset, stateTime(r.state)))
		return anchor{k: k, skip: st.Offset}, nil
	}
	if why != nil {
		return anchor{}, why
	}
	for k, sg := range segs {
		if initOf(sg).Equal(st.Value) {
			// The state's segment ended at its point: its hash is Prefix.
			if err := r.checkArchived(reg, segs[:k], append(slices.Clip(st.Archived), st.Prefix)); err != nil {
				return anchor{}, err
			}
			return anchor{k: k, cut: true}, nil
		}
	}
	init0 := initOf(segs[0])
	computed := init0.String()
	if init0.IsZero() {
		computed = "no INIT (the log's start)"
	}
	return anchor{}, &failError{&Failure{Log: segs[0].name, Record: -1, Register: reg, Expected: st.Value.String(), Computed: computed,
		Reason: fmt.Sprintf("the runtime log does not continue the monitor state: none of its %d segments starts where the state's segment started (INIT %v) and holds the bytes it verified, nor where the state stopped (rewritten, or a new boot)", len(segs), st.SegmentInit)}}
}

// checkArchived compares the segments before the anchor with the hashes of
// the segments the state archived: they are not replayed again, so a copy
// changed after it was judged would otherwise ride along unseen. They must
// be the last len(before) of them (older ones may have been deleted).
func (r *run) checkArchived(reg string, before []segment, archived []string) error {
	if len(before) > len(archived) {
		return &failError{&Failure{Log: before[0].name, Record: -1, Register: reg,
			Reason: fmt.Sprintf("%d segments precede the one the monitor state of %s resumes, but it judged %d before it: the log's history was rewritten", len(before), stateTime(r.state), len(archived))}}
	}
	want := archived[len(archived)-len(before):]
	for i, sg := range before {
		h := sha256.New()
		if err := hashRange(h, sg.log, 0, sg.log.Size()); err != nil {
			return failFrom(sg.name, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want[i] {
			return &failError{&Failure{Log: sg.name, Record: -1, Register: reg, Expected: "sha256:" + want[i], Computed: "sha256:" + got,
				Reason: fmt.Sprintf("the archived segment differs from the one the monitor state of %s judged: history changed after it was judged", stateTime(r.state))}}
		}
	}
	return nil
}

// archive records in the next state the hashes of the chain's segments
// before its last: the state's archive (and its own segment when the
// chain continued it), then the segments this run replayed.
func (r *run) archive(reg string, st *RuntimeState, cut bool, segs []segment) error {
	var list []string
	if st != nil {
		list = append(list, st.Archived...)
		if cut {
			list = append(list, st.Prefix)
		}
	}
	for i, sg := range segs[:len(segs)-1] {
		if ph := r.mon.runtime[reg]; i == 0 && ph != nil && ph.log == sg.log {
			// The resumed segment: continue the state's hash to its end.
			if err := hashRange(ph.h, sg.log, ph.off, sg.log.Size()); err != nil {
				return failFrom(sg.name, err)
			}
			ph.off = sg.log.Size()
			list = append(list, hex.EncodeToString(ph.h.Sum(nil)))
			continue
		}
		h := sha256.New()
		if err := hashRange(h, sg.log, 0, sg.log.Size()); err != nil {
			return failFrom(sg.name, err)
		}
		list = append(list, hex.EncodeToString(h.Sum(nil)))
	}
	if rs := r.next.runtimeFor(reg); rs != nil {
		rs.Archived = list
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
