package verifier

import (
	"context"
	"fmt"
	"io"
	"sort"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/eventlog/logfile"
	"github.com/ccmr-dev/ccmr/mr"
)

// ---- layer 4: policy -----------------------------------------------------

func (r *run) policy(ctx context.Context, l *LayerResult) error {
	p := r.opts.Policy
	if p == nil {
		l.NotChecked = append(l.NotChecked, "no policy given: register values and files not judged")
		return nil
	}
	names := make([]string, 0, len(p.Registers))
	for n := range p.Registers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := r.judgeRegister(n, p.Registers[n]); err != nil {
			return err
		}
		l.Checked = append(l.Checked, fmt.Sprintf("%s is a reference value", n))
	}
	if p.MeasuredBoot != nil {
		if err := r.judgeMeasuredBoot(p.MeasuredBoot, l); err != nil {
			return err
		}
	}
	if p.Runtime != nil {
		if err := r.judgeFiles(ctx, p.Runtime, l); err != nil {
			return err
		}
	}
	if len(p.IMAKeys) > 0 {
		if err := r.imaJudgeable("the policy gives IMA signature keys"); err != nil {
			return err
		}
		rep, err := ima.CheckSignatures(r.imaReader(), "ima list", p.IMAKeys, r.proven, p.RequireSignatures)
		if err != nil {
			return failFrom("ima list", r.shiftIMA(err))
		}
		l.Checked = append(l.Checked, fmt.Sprintf("IMA signatures: %d verified with the policy's keys, %d entries unsigned", rep.Verified, rep.Unsigned))
	}
	if !p.Aggregate.IsZero() {
		if err := r.imaJudgeable("the policy names an IMA aggregate"); err != nil {
			return err
		}
		if r.imaLog.Offset != 0 {
			// The aggregate is over the distinct measurements of the
			// whole list: a tail cannot give it.
			return fail("the policy names an IMA aggregate, but the bundle's IMA list is a tail from byte %d: the aggregate needs the whole list", r.imaLog.Offset)
		}
		src, _ := logfile.NewIMAReader(eventlog.Format(r.imaLog.Format), r.imaLog.Open(0), ima.Options{File: "ima list"}) // layer 1 took it by its role
		got, n, err := ima.Aggregate(ctx, src, r.imaStart.entries+r.proven)
		if err != nil {
			return failFrom("ima list", err)
		}
		if !got.Equal(p.Aggregate) {
			return &failError{&Failure{Log: "ima list", Record: -1, Expected: p.Aggregate.String(), Computed: got.String(),
				Reason: fmt.Sprintf("the aggregate of the %d distinct measurements is not the policy's", n)}}
		}
		l.Checked = append(l.Checked, fmt.Sprintf("IMA aggregate of %d distinct measurements is the policy's", n))
	}
	return nil
}

func (r *run) judgeRegister(name string, allowed []mr.Digest) error {
	byAlg := map[mr.Alg][]mr.Digest{}
	for _, d := range allowed {
		byAlg[d.Alg] = append(byAlg[d.Alg], d)
	}
	for alg, ds := range byAlg {
		var got mr.Digest
		var ok bool
		if mr.IsVirtualName(name) {
			got, ok = r.virtual[name]
			ok = ok && got.Alg == alg
		} else {
			got, ok = r.trusted[regKey{name, alg}]
		}
		if !ok {
			return &failError{&Failure{Record: -1, Register: name, Expected: ds[0].String(), Reason: fmt.Sprintf("policy names %s (%v) but no trusted value exists", name, alg)}}
		}
		match := false
		for _, d := range ds {
			match = match || d.Equal(got)
		}
		if !match {
			return &failError{&Failure{Record: -1, Register: name, Expected: ds[0].String(), Computed: got.String(), Reason: fmt.Sprintf("%s is not a reference value of the policy", name)}}
		}
	}
	return nil
}

func (r *run) judgeFiles(ctx context.Context, rp *RuntimePolicy, l *LayerResult) error {
	if err := r.imaJudgeable("the policy gives a runtime policy"); err != nil {
		return err
	}
	src := r.imaReader()
	count := map[string]int{}
	kj := newKeylimeJudge(rp)
	var stopped []string
	for n := 0; n < r.proven; n++ {
		e, err := src.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return failFrom("ima list", err)
		}
		what, err := r.judgeEntry(kj, e)
		rec, off := r.imaStart.entries+e.Index, r.imaStart.offset+e.Offset
		if kj.stopped != "" {
			// Judged, not excluded: stricter than Keylime, whose match
			// runs to its end; the report names the entry either way.
			stop := fmt.Sprintf("the runtime policy's exclude match on %q %s, so it was judged, not excluded (stricter than Keylime)", e.FileName(), kj.stopped)
			kj.stopped = ""
			if err != nil {
				err = fmt.Errorf("%w; %s", err, stop)
			} else {
				stopped = append(stopped, fmt.Sprintf("runtime policy: IMA entry %d (byte %d): %s", rec, off, stop))
			}
		}
		if err != nil {
			return &failError{&Failure{Log: "ima list", Record: rec, Offset: off, Reason: err.Error()}}
		}
		count[what]++
	}
	l.Checked = append(l.Checked, stopped...)
	l.Checked = append(l.Checked, fmt.Sprintf("runtime policy: %d entries match reference digests, %d excluded, %d keys of ignored keyrings", count["judged"], count["excluded"], count["ignored"]))
	if count["signed"]+count["violation"] > 0 {
		l.Checked = append(l.Checked, fmt.Sprintf("runtime policy: %d files accepted by a valid signature of a verification key or of a key an accepted keyring entry loaded; %d violations allowed by ima.allow_violations", count["signed"], count["violation"]))
	}
	if r.ima.unprovenTail > 0 {
		l.NotChecked = append(l.NotChecked, fmt.Sprintf("runtime policy: %d IMA entries after the last mr_ima record are not proven, not judged", r.ima.unprovenTail))
	}
	return nil
}
