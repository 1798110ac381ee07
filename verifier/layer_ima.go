package verifier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/mr"
)

// ---- layer 3: the IMA list -----------------------------------------------

// imaReader reads the IMA list from where the monitor state stopped (its
// start without a state).
func (r *run) imaReader() *ima.Reader {
	data := r.imaLog.Open(pos(r.imaLog, r.imaStart.offset))
	if r.imaLog.Format == string(eventlog.FormatIMAASCII) {
		return ima.NewASCIIReader(data, ima.Options{File: "ima list"})
	}
	return ima.NewBinaryReader(data, ima.Options{File: "ima list"})
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
	if recs, ok := r.records[ima.VirtualName]; ok || r.imaResumed() {
		if recs == nil {
			recs = []mr.Digest{} // no new record: every new entry is unproven
		}
		res, err := ima.ReplayVirtual(ctx, r.imaReader(), ima.VirtualOptions{File: name, Records: recs, Expect: r.virtual[ima.VirtualName], Start: r.imaStart.value})
		if err != nil {
			return failFrom(name, r.shiftIMA(err))
		}
		r.proven = res.Events
		l.Checked = append(l.Checked, fmt.Sprintf("%d IMA entries match the %d records of mr_ima", res.Events, len(recs)))
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
			r.next.IMA = &IMAState{Entries: r.imaStart.entries + res.Events, Offset: off, Value: mrIMA}
		}
		return r.bootAggregate(l)
	}
	if err := r.replayPCRs(ctx, l); err != nil {
		return err
	}
	return r.bootAggregate(l)
}

// imaResumed reports whether layer 3 resumes a monitor state's IMA point.
func (r *run) imaResumed() bool { return r.state != nil && r.state.IMA != nil }
