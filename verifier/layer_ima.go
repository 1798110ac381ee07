package verifier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/eventlog/logfile"
	"github.com/ccmr-dev/ccmr/mr"
)

// ---- layer 3: the IMA list -----------------------------------------------

// imaReader reads the IMA list from where the monitor state stopped (its
// start without a state).
func (r *run) imaReader() *ima.Reader {
	data := r.imaLog.Open(pos(r.imaLog, r.imaStart.offset))
	rd, _ := logfile.NewIMAReader(eventlog.Format(r.imaLog.Format), data, ima.Options{File: "ima list"}) // layer 1 took it by its role: an IMA format
	return rd
}

// addIMALog takes an IMA list of the bundle (layer 1). A bundle may carry
// one list per bank (the per-bank lists of Linux 6.10 and later); two of
// one bank are refused. The list layer 3 judges (r.imaLog) is the first
// whose bank has a trusted PCR 10, else the first; every other is replayed
// against its own bank's PCRs (otherIMALists).
func (r *run) addIMALog(lg *bundle.Log) error {
	_, bank, _ := ima.FormatBank(eventlog.Format(lg.Format))
	for _, o := range append(r.otherIMA, r.imaLog) {
		if o == nil {
			continue
		}
		if _, b, _ := ima.FormatBank(eventlog.Format(o.Format)); b == bank {
			return fail("the bundle holds two IMA lists of the %v bank", bank)
		}
	}
	_, quoted := r.trusted[regKey{"pcr10", bank}]
	switch {
	case r.imaLog == nil:
		r.imaLog = lg
	case quoted && !r.imaQuotedBank():
		r.otherIMA = append(r.otherIMA, r.imaLog)
		r.imaLog = lg
	default:
		r.otherIMA = append(r.otherIMA, lg)
	}
	return nil
}

// imaQuotedBank reports whether the judged list's bank has a trusted PCR 10.
func (r *run) imaQuotedBank() bool {
	_, bank, _ := ima.FormatBank(eventlog.Format(r.imaLog.Format))
	_, ok := r.trusted[regKey{"pcr10", bank}]
	return ok
}

// otherIMALists replays each IMA list other than the judged one, whole,
// against the trusted PCRs of its own bank: every PCR it extends must be
// trusted in that bank and equal its replay. A list nothing can prove
// fails: it must not ride along unchecked.
func (r *run) otherIMALists(ctx context.Context, l *LayerResult) error {
	for _, lg := range r.otherIMA {
		_, bank, _ := ima.FormatBank(eventlog.Format(lg.Format))
		name := fmt.Sprintf("ima list (%s)", lg.Format)
		if lg.Offset != 0 {
			return fail("%s: a tail from byte %d: only the whole list replays to its bank's PCRs", name, lg.Offset)
		}
		rd, err := logfile.NewIMAReader(eventlog.Format(lg.Format), lg.Open(0), ima.Options{File: name})
		if err != nil {
			return failFrom(name, err)
		}
		res, err := ima.Replay(ctx, rd, ima.ReplayOptions{File: name, Banks: []mr.Alg{bank}})
		if err != nil {
			return failFrom(name, err)
		}
		if len(res.Registers) == 0 {
			res.Registers = []mr.Value{{Register: mr.Register{Name: "pcr10", Alg: bank}, Digest: mr.Zero(bank)}}
		}
		for _, v := range res.Registers {
			want, ok := r.trusted[regKey{v.Register.Name, bank}]
			if !ok {
				return fail("%s: no trusted %s of the %v bank to replay the list against", name, v.Register.Name, bank)
			}
			if !want.Equal(v.Digest) {
				return &failError{&Failure{Log: name, Record: -1, Register: v.Register.Name, Expected: want.String(), Computed: v.Digest.String(),
					Reason: fmt.Sprintf("replay of %d IMA entries does not give the quoted %s of the %v bank", res.Events, v.Register.Name, bank)}}
			}
		}
		l.Checked = append(l.Checked, fmt.Sprintf("%s: %d IMA entries replay to the quoted %v PCRs", name, res.Events, bank))
	}
	return nil
}

// shiftIMA turns a failure in the resumed IMA list into whole-list terms.
func (r *run) shiftIMA(err error) error {
	var mm *eventlog.Mismatch
	var le *eventlog.Error
	if errors.As(err, &mm) && mm.Record >= 0 {
		mm.Record += r.imaStart.entries
		if mm.Offset >= 0 {
			mm.Offset += r.imaStart.offset
		}
	} else if errors.As(err, &le) {
		le.Record += r.imaStart.entries
		le.Offset += r.imaStart.offset
	}
	return err
}

func (r *run) appLogs(ctx context.Context, l *LayerResult) error {
	names := make([]string, 0, len(r.opts.AppLogs))
	for n := range r.opts.AppLogs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := r.appLog(n, r.opts.AppLogs[n], l); err != nil {
			return err
		}
	}
	return r.imaLayer(ctx, l)
}

// appLog checks one application log against its virtual register's records.
func (r *run) appLog(reg string, data []byte, l *LayerResult) error {
	name := "application log of " + reg
	recs := r.records[reg]
	if _, ok := r.virtual[reg]; !ok {
		return &failError{&Failure{Log: name, Record: -1, Register: reg, Reason: reg + " has no records in any trusted runtime log"}}
	}
	if r.state != nil {
		l.NotChecked = append(l.NotChecked, name+": checked against the records since the monitor state only")
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	if n := len(lines); n > 0 && len(lines[n-1]) == 0 {
		lines = lines[:n-1]
	}
	var off int64
	for i, ln := range lines {
		d := mr.SHA384.Sum(ln)
		if i >= len(recs) {
			return &failError{&Failure{Log: name, Record: i, Offset: off, Register: reg, Computed: d.String(),
				Reason: fmt.Sprintf("event %d has no record in %s (%d records)", i, reg, len(recs))}}
		}
		if !d.Equal(recs[i]) {
			return &failError{&Failure{Log: name, Record: i, Offset: off, Register: reg, Expected: recs[i].String(), Computed: d.String(),
				Reason: fmt.Sprintf("event %d does not match record %d of %s", i, i, reg)}}
		}
		off += int64(len(ln))
	}
	if len(lines) < len(recs) {
		return &failError{&Failure{Log: name, Record: len(lines), Register: reg, Expected: recs[len(lines)].String(),
			Reason: fmt.Sprintf("record %d of %s has no event in the application log", len(lines), reg)}}
	}
	l.Checked = append(l.Checked, fmt.Sprintf("%s: %d events match the records of %s", name, len(lines), reg))
	return nil
}

func (r *run) imaLayer(ctx context.Context, l *LayerResult) error {
	if r.imaLog == nil {
		if _, ok := r.virtual[ima.VirtualName]; ok {
			l.NotChecked = append(l.NotChecked, "mr_ima has records but the bundle holds no IMA list")
		} else {
			l.NotChecked = append(l.NotChecked, "no IMA list in the bundle")
		}
		return nil
	}
	const name = "ima list"
	if err := r.otherIMALists(ctx, l); err != nil {
		return err
	}
	if r.imaStart.offset > end(r.imaLog) {
		return &failError{&Failure{Log: name, Record: -1, Reason: fmt.Sprintf("the IMA list is %d bytes, shorter than the %d the monitor state proved: rewritten, or a new boot", end(r.imaLog), r.imaStart.offset)}}
	}
	if r.imaLog.Offset != 0 && r.imaPCRsQuoted() {
		// The PCRs hold the whole list since boot; a tail cannot be
		// replayed to them, and the entries it lacks would be judged by
		// nothing.
		return &failError{&Failure{Log: name, Record: -1, Offset: r.imaLog.Offset,
			Reason: fmt.Sprintf("the IMA list is a tail from byte %d, but the evidence quotes the PCRs the list extends, which only the whole list replays to: send the whole list", r.imaLog.Offset)}}
	}
	if err := r.checkIMAEntries(l); err != nil {
		return err
	}
	// A monitor state's IMA point is a value of mr_ima: the entries after
	// it are proven only against mr_ima's value this run proves (a trusted
	// runtime log carries it). Without one they are proven by nothing, and
	// a policy would judge none of them: fail, as the same bundle fails
	// without the state.
	mrIMA, haveMRIMA := r.virtual[ima.VirtualName]
	if r.imaResumed() && !haveMRIMA {
		return &failError{&Failure{Log: name, Record: -1, Register: ima.VirtualName, Expected: r.imaStart.value.String(),
			Reason: fmt.Sprintf("the monitor state of %s proved %d IMA entries up to an mr_ima value, but this bundle proves no value of mr_ima (no trusted runtime log carries it): the entries after them can be neither proven nor judged", stateTime(r.state), r.imaStart.entries)}}
	}
	if nrec, ok := r.counts[ima.VirtualName]; ok || r.imaResumed() {
		// No new record: every new entry is unproven.
		res, err := r.mrIMAReplay(r.virtual[ima.VirtualName])
		if err != nil {
			return failFrom(name, r.shiftIMA(err))
		}
		r.proven = res.Events
		l.Checked = append(l.Checked, fmt.Sprintf("%d IMA entries match the %d records of mr_ima", res.Events, nrec))
		if r.imaStart.entries > 0 {
			l.Checked = append(l.Checked, fmt.Sprintf("entries 0..%d were proven by the monitor state", r.imaStart.entries-1))
		}
		if r.imaPCRsQuoted() {
			// The quoted PCRs cover every entry, forwarded or not: the
			// whole list must replay to them, and all of it is judged.
			if err := r.replayPCRs(ctx, l); err != nil {
				return err
			}
			if err := r.mrIMAProves(res.Events, l); err != nil {
				return err
			}
			if res.Unproven > 0 {
				l.Checked = append(l.Checked, fmt.Sprintf("%d IMA entries after the last mr_ima record are proven by the quoted PCRs (judged by policy)", res.Unproven))
			}
		} else if res.Unproven > 0 {
			r.ima.unprovenTail = res.Unproven
			l.NotChecked = append(l.NotChecked, fmt.Sprintf("%d IMA entries after the last mr_ima record are not proven (not judged by policy)", res.Unproven))
		}
		if r.next != nil && haveMRIMA && mrIMA.Alg.Valid() && len(mrIMA.Bytes) == mrIMA.Alg.Size() {
			// Never an IMA point without a value of mr_ima.
			off := end(r.imaLog)
			if res.Unproven > 0 {
				rd := r.imaReader()
				for i := 0; i < res.Events; i++ {
					if _, err := rd.Next(); err != nil {
						return failFrom(name, err)
					}
				}
				off = r.imaStart.offset + rd.Offset()
			}
			r.next.IMA = &IMAState{Entries: r.imaStart.entries + res.Events, Offset: off, Value: mrIMA, PCRs: r.nextIMAPCRs(res.Events)}
		}
		return r.bootAggregate(l)
	}
	if err := r.replayPCRs(ctx, l); err != nil {
		return err
	}
	return r.bootAggregate(l)
}

// sortedPCRs are the PCRs of a count per PCR, ascending (IMAState.PCRs):
// every PCR the entries read name, those after the point too, so that a
// later tail is refused rather than let through.
func sortedPCRs(m map[int]int) []int {
	out := make([]int, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	sort.Ints(out)
	return out
}

// imaResumed reports whether layer 3 resumes a monitor state's IMA point.
func (r *run) imaResumed() bool { return r.state != nil && r.state.IMA != nil }

// recordChunk is how many mr_ima records a chunk of the feed holds.
const recordChunk = 4096

// imaFeed replays the IMA list against mr_ima's records while layer 1
// replays the runtime log that holds them: the records flow in chunks
// through a channel of a few chunks, so that neither the records nor the
// list are held whole; layer 3 takes the result (mrIMAReplay). Entry i must
// give record i; the entries after the last record are unproven.
type imaFeed struct {
	ch     chan []mr.Digest
	buf    []mr.Digest
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
	res    *ima.VirtualReplay
	err    error
	cur    mr.Digest // mr_ima after the records replayed so far
}

// feedIMA passes one record of mr_ima to the feed, starting it with the
// first; without an IMA list the records are only counted.
func (r *run) feedIMA(d mr.Digest) {
	if r.imaLog == nil {
		return
	}
	if r.feed == nil {
		r.startFeed()
	}
	f := r.feed
	f.buf = append(f.buf, d)
	if len(f.buf) == recordChunk {
		f.ch <- f.buf
		f.buf = make([]mr.Digest, 0, recordChunk)
	}
}

// startFeed starts the IMA list's replay from this run's start.
func (r *run) startFeed() {
	ctx, cancel := context.WithCancel(r.ctx)
	f := &imaFeed{ch: make(chan []mr.Digest, 2), buf: make([]mr.Digest, 0, recordChunk), cancel: cancel, done: make(chan struct{}), cur: r.imaStart.value}
	if f.cur.IsZero() {
		f.cur = mr.Zero(mr.SHA384) // mr_ima's value at boot
	}
	r.feed = f
	src := r.imaReader()
	go func() {
		defer close(f.done)
		const name = "ima list"
		events := 0
		for chunk := range f.ch {
			if f.err != nil {
				continue // drain: the first failure is the verdict
			}
			res, err := ima.ReplayVirtual(ctx, &limitSource{src: src, n: len(chunk)}, ima.VirtualOptions{File: name, Records: chunk, Start: f.cur})
			if err != nil {
				f.err = renumberRecords(err, events)
				continue
			}
			events += res.Events
			f.cur = res.Virtual[0].Digest
		}
		if f.err != nil {
			return
		}
		// The entries after the last record: none is proven.
		res, err := ima.ReplayVirtual(ctx, src, ima.VirtualOptions{File: name, Records: []mr.Digest{}, Start: f.cur})
		if err != nil {
			f.err = renumberRecords(err, events)
			return
		}
		res.Events = events
		f.res = res
	}()
}

// finish ends the feed and waits for its replay.
func (f *imaFeed) finish() {
	f.once.Do(func() {
		if len(f.buf) > 0 {
			f.ch <- f.buf
		}
		close(f.ch)
	})
	<-f.done
}

// stopFeed ends a feed whose result no layer will take.
func (r *run) stopFeed() {
	if r.feed != nil {
		r.feed.cancel()
		r.feed.finish()
	}
}

// mrIMAReplay is the outcome of the feed (started here when layer 1 met no
// record of mr_ima): the IMA list from this run's start replayed against
// mr_ima's records; the value after the last record must be expect.
func (r *run) mrIMAReplay(expect mr.Digest) (*ima.VirtualReplay, error) {
	if r.feed == nil {
		r.startFeed()
	}
	f := r.feed
	f.finish()
	if f.err != nil {
		return nil, f.err
	}
	if !expect.IsZero() && !f.cur.Equal(expect) {
		return nil, &eventlog.Mismatch{File: "ima list", Register: ima.VirtualName, Record: -1, Expected: expect,
			Computed: f.cur, Reason: fmt.Sprintf("replay of %d IMA entries does not give the expected value", f.res.Events)}
	}
	return f.res, nil
}

// renumberRecords turns a failure of one chunk of mrIMAReplay, whose
// records start at base, into the terms of the whole run.
func renumberRecords(err error, base int) error {
	var mm *eventlog.Mismatch
	if base == 0 || !errors.As(err, &mm) || mm.Record < 0 {
		return err
	}
	if mm.Offset >= 0 {
		// An entry that does not match its record: Record is the entry's
		// index, counted over the whole run; the reason names the record
		// counted in the chunk.
		rel := fmt.Sprintf(" record %d", mm.Record-base)
		if strings.HasSuffix(mm.Reason, rel) {
			mm.Reason = strings.TrimSuffix(mm.Reason, rel) + fmt.Sprintf(" record %d", mm.Record)
		}
		return err
	}
	// A record without an entry: Record counts in the chunk.
	mm.Record += base
	mm.Reason = fmt.Sprintf("%s record %d has no IMA entry (the list has %d entries)", mm.Register, mm.Record, mm.Record)
	return err
}

// limitSource yields at most n entries of src.
type limitSource struct {
	src ima.Source
	n   int
}

func (l *limitSource) Next() (*ima.Entry, error) {
	if l.n <= 0 {
		return nil, io.EOF
	}
	l.n--
	return l.src.Next()
}
