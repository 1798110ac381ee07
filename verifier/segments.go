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
	c, err := r.anchorChain(reg, segs, l)
	if err != nil {
		return err
	}
	for i, sg := range c.segs {
		if err := c.replaySegment(i, sg); err != nil {
			return err
		}
	}
	start, err := c.judgeEnds()
	if err != nil {
		return err
	}
	if err := c.takeVirtual(); err != nil {
		return err
	}
	return c.remember(start)
}

// chain is the replay of one backing register's runtime log segments by
// runtimeChain: where it starts (the anchor) and what the segments
// replayed so far gave.
type chain struct {
	r   *run
	reg string
	l   *LayerResult

	segs     []segment     // from the anchor on
	st       *RuntimeState // the monitor state of reg, if any
	resume   *aael.Resume  // the state to resume the first segment from
	skip     int64         // bytes of the first segment the state covers
	stateCut bool          // the anchor segment starts exactly where the state stopped
	base     int           // the anchor's index among all the segments

	// Every segment of a chain is a log of the same register: its entries
	// use the first segment's digest algorithm and MR index (the reader
	// holds the entries within one segment to them).
	alg0  mr.Alg
	mri0  uint32
	form0 bool

	prevFinal mr.Digest
	prevVirt  []mr.Value
	last      *aael.Result
	h         history // the chain's start, when no monitor state proves it
}

// anchorChain finds where the replay of segs starts: the segment the
// monitor state stopped in, resumed from the state, or else the first.
func (r *run) anchorChain(reg string, segs []segment, l *LayerResult) (*chain, error) {
	c := &chain{r: r, reg: reg, l: l}
	st := r.state.runtimeFor(reg)
	if st != nil {
		a, err := r.findAnchor(reg, segs, st, l)
		if err != nil {
			return nil, err
		}
		c.base, c.stateCut = a.k, a.cut
		if !a.cut {
			c.resume, c.skip = st.resume(), a.skip
		}
		segs = segs[c.base:]
		if err := r.resumedStart(reg, st, segs[0].name, l); err != nil {
			return nil, err
		}
	} else if segs[0].log.Offset != 0 {
		// checkTails refuses this first; never replay a tail as a whole log.
		return nil, fail("%s: a tail of the runtime log of %s without a monitor state that verified its head", segs[0].name, reg)
	}
	c.segs, c.st = segs, st
	c.alg0, c.mri0, c.form0 = segs[0].entryForm()
	if c.resume != nil {
		c.alg0, c.mri0, c.form0 = st.entryAlg(), *st.MRIndex, true
	}
	return c, nil
}

// replaySegment replays the i-th segment from the anchor, checks it
// continues the one before, and counts its records.
func (c *chain) replaySegment(i int, sg segment) error {
	if a, m, ok := sg.entryForm(); i > 0 && c.form0 && ok && (a != c.alg0 || m != c.mri0) {
		return &failError{&Failure{Log: sg.name, Record: 0, Register: c.reg,
			Reason: fmt.Sprintf("segment %d uses %v and MR index %d, but segment %d of %s uses %v and MR index %d: a chain is one register's log", c.base+i, a, m, c.base, c.reg, c.alg0, c.mri0)}}
	}
	res, err := c.replay(i, sg)
	if err != nil {
		return err
	}
	if err := c.link(i, sg, res); err != nil {
		return err
	}
	if !res.Init.IsZero() {
		c.h.records-- // the INIT entry is no record
	}
	c.h.records += res.Events
	c.prevFinal, c.prevVirt, c.last = finalValue(res, c.reg, c.resume, i), res.Virtual, res
	c.l.Checked = append(c.l.Checked, fmt.Sprintf("%s: %d records replayed", sg.name, res.Events))
	return nil
}

// replay replays the i-th segment, the first from the monitor state when
// it resumes one, feeding its virtual records to the run. Errors in the
// first segment count bytes from its log's start.
func (c *chain) replay(i int, sg segment) (*aael.Result, error) {
	r := c.r
	opt := aael.ReplayOptions{File: sg.name, Backing: c.reg,
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
	if i == 0 && c.resume != nil {
		opt.Resume = c.resume
		rd = sg.continueReader(sg.log.Open(c.skip), c.st)
	}
	res, err := aael.Replay(rd, opt)
	if err != nil {
		var le *eventlog.Error
		if errors.As(err, &le) && i == 0 {
			le.Offset += c.skip + sg.log.Offset
		}
		var mm *eventlog.Mismatch
		if errors.As(err, &mm) && i == 0 && mm.Offset >= 0 {
			mm.Offset += c.skip + sg.log.Offset
		}
		return nil, failFrom(sg.name, err)
	}
	return res, nil
}

// link checks that the i-th segment's replay res starts where the chain
// so far ended, with a snapshot something proves, and notes the chain's
// start when no monitor state proves it.
func (c *chain) link(i int, sg segment, res *aael.Result) error {
	switch {
	case i > 0:
		if !res.Init.Equal(c.prevFinal) {
			return &failError{&Failure{Log: sg.name, Record: 0, Register: c.reg, Expected: c.prevFinal.String(), Computed: res.Init.String(),
				Reason: fmt.Sprintf("segment %d does not start where segment %d ended: a segment is missing or altered", c.base+i, c.base+i-1)}}
		}
		if err := sameValues(sg.name, res.Snapshot, c.prevVirt); err != nil {
			return err
		}
	case c.stateCut:
		if err := sameValues(sg.name, res.Snapshot, c.st.resume().Virtual); err != nil {
			return err
		}
	case c.resume == nil && res.Snapshot != nil && !c.r.opts.AcceptUnverifiedHistory:
		return &failError{&Failure{Log: sg.name, Record: 1, Register: c.reg,
			Reason: "the segment starts with a snapshot that nothing proves: give the segment before it, or verify with the monitor state that saw the cut (--accept-unverified-history accepts it, weakened)"}}
	case c.resume == nil:
		c.h.start, c.h.snapshot = res.Init, res.Snapshot // judged by judgeStart below
	}
	return nil
}

// judgeEnds checks that the chain ends at the register's trusted value
// and, when no monitor state proves its start, judges the start. It
// returns what a monitor state keeps as the chain's start.
func (c *chain) judgeEnds() (*mr.Digest, error) {
	r, reg, segs := c.r, c.reg, c.segs
	want, ok := r.trusted[regKey{reg, c.prevFinal.Alg}]
	if !ok {
		return nil, fail("%s: backing register %s (%v) is not covered by the evidence", segs[len(segs)-1].name, reg, c.prevFinal.Alg)
	}
	if !want.Equal(c.prevFinal) {
		return nil, &failError{&Failure{Log: segs[len(segs)-1].name, Record: -1, Register: reg, Expected: want.String(), Computed: c.prevFinal.String(),
			Reason: fmt.Sprintf("replay of the runtime log does not give the quoted %s", reg)}}
	}
	var start *mr.Digest // what a monitor state keeps as the chain's start
	if c.st != nil {
		start = c.st.Start
	}
	if c.resume == nil && !c.stateCut {
		if c.h.start.IsZero() {
			c.h.start = r.resetValue(reg, c.prevFinal.Alg) // no INIT: the replay started at the reset value
		}
		if err := r.judgeStart(reg, segs[0], c.h, c.l); err != nil {
			return nil, err
		}
		start = &c.h.start
	}
	return start, nil
}

// takeVirtual records the virtual registers the chain derived, each of
// which must come from this one runtime log.
func (c *chain) takeVirtual() error {
	r, segs := c.r, c.segs
	if len(segs) > 1 {
		c.l.Checked = append(c.l.Checked, fmt.Sprintf("%d segments of %s chain: each starts where the one before ended, each snapshot proven", len(segs), c.reg))
	}
	for _, v := range c.last.Virtual {
		if _, dup := r.virtual[v.Register.Name]; dup {
			return fail("%s: virtual register %s also appears in another runtime log", segs[len(segs)-1].name, v.Register.Name)
		}
		r.virtual[v.Register.Name] = v.Digest
	}
	c.l.Checked = append(c.l.Checked, fmt.Sprintf("the runtime log of %s replays to the quoted value", c.reg))
	return nil
}

// remember sets what a monitor state will remember of the chain, start
// being its start, and archives its segments when a monitor runs.
func (c *chain) remember(start *mr.Digest) error {
	r, segs, st := c.r, c.segs, c.st
	last0 := segs[len(segs)-1].log
	end := last0.Offset + last0.Size()
	counts := map[string]int{}
	for n, cnt := range c.last.Counts {
		counts[n] = cnt
	}
	// The entries' algorithm and MR index: the state's when the resumed
	// segment is the last, else those of the last segment's first entry.
	var alg mr.Alg
	var mri uint32
	if len(segs) == 1 && c.resume != nil {
		alg, mri = st.entryAlg(), *st.MRIndex
	} else if a, m, ok := segs[len(segs)-1].entryForm(); ok {
		alg, mri = a, m
	} else {
		return fail("%s: the runtime log has no entry to take its digest algorithm and MR index from", segs[len(segs)-1].name)
	}
	if !r.unjudged {
		init := initOf(segs[len(segs)-1])
		if len(segs) == 1 && c.resume != nil {
			init = st.SegmentInit // a tail's first bytes are no INIT
		}
		r.next.setRuntime(c.reg, init, end, c.prevFinal, c.last.Virtual, counts, alg, mri, start)
		if r.mon != nil {
			if err := r.archive(c.reg, st, c.stateCut, segs); err != nil {
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
