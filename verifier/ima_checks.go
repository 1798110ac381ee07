package verifier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
)

// imaFacts is what layer 3 learns about the IMA list for layer 4.
type imaFacts struct {
	// perPCR counts the entries this run reads, by the PCR they name.
	perPCR map[int]int
	// unprovenPCR counts the entries on PCRs the evidence does not quote
	// (TPM replay): nothing binds them, so no policy may judge them.
	unprovenPCR map[int]int
	// unprovenTail counts the entries after the last mr_ima record.
	unprovenTail int
	// bootAggregate marks the entries named boot_aggregate that match the
	// quoted PCRs.
	bootAggregate map[int]bool
}

// checkIMAEntries reads the whole list (from where the monitor state
// stopped) before anything is proven from it: every entry's template must
// be one whose fields are known, and an ima-buf entry's digest must be the
// hash of its buffer. The template name is covered by neither the template
// hash nor an mr_ima record, so without this an entry relabelled to an
// unknown template (no file digest: skipped by a runtime policy) or from
// ima-sig to ima-buf (a bad signature read as none) would pass.
func (r *run) checkIMAEntries(l *LayerResult) error {
	const name = "ima list"
	r.ima.perPCR = map[int]int{}
	src := r.imaReader()
	for {
		e, err := src.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return failFrom(name, r.shiftIMA(err))
		}
		at := func(reason string) error {
			return &failError{&Failure{Log: name, Record: r.imaStart.entries + e.Index, Offset: r.imaStart.offset + e.Offset, Reason: reason}}
		}
		if !ima.KnownTemplate(e.TemplateName) {
			return at(fmt.Sprintf("IMA entry %d has template %q, which the verifier does not know: its fields cannot be read or judged (the template name is not covered by the template hash)", r.imaStart.entries+e.Index, e.TemplateName))
		}
		if err := ima.CheckBufDigest(name, e); err != nil {
			if errors.Is(err, mr.ErrUnsupported) {
				return at(fmt.Sprintf("IMA entry %d (%s): the buffer's digest cannot be checked: %v", r.imaStart.entries+e.Index, e.TemplateName, err))
			}
			return failFrom(name, r.shiftIMA(err))
		}
		r.ima.perPCR[e.PCR]++
	}
	return nil
}

// pcrIndex is the index of a TPM PCR name ("pcr10" is 10).
func pcrIndex(name string) (int, bool) {
	i, err := tpmverify.ParsePCRName(name)
	return i, err == nil
}

// replayPCRs replays the whole IMA list against the quoted PCRs, each entry
// against the PCR it names (IMA writes to the PCR its policy rule gives,
// pcr=11 for example). Every PCR the list extends and the evidence quotes,
// in every quoted bank, must be what the replay gives; the entries on a PCR
// the evidence does not quote are not proven (imaFacts.unprovenPCR).
func (r *run) replayPCRs(ctx context.Context, l *LayerResult) error {
	const name = "ima list"
	pcrs := r.wholeIMAPCRs()
	if len(pcrs) == 0 {
		pcrs = map[int]int{10: 0} // an empty list: PCR 10 must be zero
	}
	quoted := map[int]int{}
	var expect []mr.Value
	for k, v := range r.trusted {
		i, ok := pcrIndex(k.name)
		if _, used := pcrs[i]; !ok || !used {
			continue
		}
		quoted[i]++
		expect = append(expect, mr.Value{Register: mr.Register{Name: k.name, Alg: k.alg}, Digest: v})
	}
	if len(expect) == 0 {
		return fail("an IMA list is in the bundle but neither mr_ima nor a PCR its entries extend (%s) is trusted to replay it against", pcrList(pcrs))
	}
	sort.Slice(expect, func(i, j int) bool {
		a, b := expect[i].Register, expect[j].Register
		return a.Name < b.Name || a.Name == b.Name && a.Alg < b.Alg
	})
	// A PCR holds the whole list since boot: replay it from its start
	// (also when a monitor state proved a prefix); the entries from where
	// this run starts are proven.
	res, err := ima.Replay(ctx, r.wholeIMAReader(), ima.ReplayOptions{File: name, Expect: expect})
	if err != nil {
		return failFrom(name, err)
	}
	r.proven = res.Events - r.imaStart.entries
	r.ima.unprovenPCR = map[int]int{}
	idx := make([]int, 0, len(pcrs))
	for p := range pcrs {
		idx = append(idx, p)
	}
	sort.Ints(idx)
	for _, p := range idx {
		if quoted[p] > 0 && mr.GuestResettable(fmt.Sprintf("pcr%d", p)) {
			// The guest can reset PCR 16 and 23 and extend again only the
			// entries it keeps: the list replays after it dropped some.
			if !r.opts.AcceptUnverifiedHistory {
				return &failError{&Failure{Log: name, Record: -1, Register: fmt.Sprintf("pcr%d", p),
					Reason: fmt.Sprintf("%d IMA entries are on PCR %d, which the guest can reset (TPM PCR 16 and 23): entries dropped after a reset leave a list that still replays to the quoted value (--accept-unverified-history accepts it, weakened)", pcrs[p], p)}}
			}
			r.unjudged = true
			r.weaken(l, fmt.Sprintf("ima list: PCR %d resettable by the guest (TPM PCR 16 and 23): entries dropped with a reset are never seen; the list is judged only as far as it goes", p))
		}
		if quoted[p] > 0 {
			l.Checked = append(l.Checked, fmt.Sprintf("%d IMA entries replay to the quoted PCR %d (%d banks)", pcrs[p], p, quoted[p]))
			continue
		}
		r.ima.unprovenPCR[p] = pcrs[p]
		l.NotChecked = append(l.NotChecked, fmt.Sprintf("%d IMA entries on PCR %d are not proven: the evidence does not quote PCR %d", pcrs[p], p, p))
	}
	return nil
}

func pcrList(pcrs map[int]int) string {
	idx := make([]string, 0, len(pcrs))
	for p := range pcrs {
		idx = append(idx, "PCR "+strconv.Itoa(p))
	}
	sort.Strings(idx)
	return strings.Join(idx, ", ")
}

// imaJudgeable fails unless every entry a policy member must judge is
// proven: a member that cannot be evaluated fails, never passes by default.
func (r *run) imaJudgeable(what string) error {
	if r.imaLog == nil {
		if n := r.counts[ima.VirtualName]; n > 0 {
			return fail("%s, but the bundle holds no IMA list: the %d entries mr_ima records cannot be judged", what, n)
		}
		return fail("%s, but the bundle holds no IMA list to judge", what)
	}
	if _, ok := r.virtual[ima.VirtualName]; r.imaResumed() && !ok {
		// imaLayer refuses this first; the state's entries count only
		// when this run proves the mr_ima value they continue to.
		return fail("%s, but the IMA entries after the monitor state's point are proven by no value of mr_ima", what)
	}
	if r.proven < 0 || r.imaStart.entries+r.proven == 0 {
		return fail("%s, but no IMA entry is proven", what)
	}
	if n := sumCounts(r.ima.unprovenPCR); n > 0 {
		return fail("%s, but %d IMA entries are on %s, which the evidence does not quote: they can be neither proven nor judged", what, n, pcrList(r.ima.unprovenPCR))
	}
	return nil
}

func sumCounts(m map[int]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// bootAggregate checks the IMA list's boot_aggregate against the quoted
// PCRs (TPM only: the kernel takes it from the TPM's PCR 0-9, or 0-7 before
// Linux 5.8). The kernel writes it as the list's first entry; a list whose
// proven first entry is something else is not bound to the boot and fails,
// and so does a boot_aggregate that cannot be checked. Every other proven
// entry named boot_aggregate is checked the same way.
func (r *run) bootAggregate(l *LayerResult) error {
	const name = "ima list"
	r.ima.bootAggregate = map[int]bool{}
	if r.b.Platform != mr.PlatformTPM {
		l.NotChecked = append(l.NotChecked, fmt.Sprintf("boot_aggregate: not checked: %s evidence holds no TPM PCRs it could be computed from", r.b.Platform))
		return nil
	}
	if r.imaStart.entries > 0 {
		l.NotChecked = append(l.NotChecked, "boot_aggregate: checked when the monitor state's first bundle was verified, not re-read")
		return nil
	}
	if r.proven == 0 {
		if sumCounts(r.ima.perPCR) == 0 {
			l.NotChecked = append(l.NotChecked, "boot_aggregate: the IMA list is empty (IMA was not measuring)")
			return nil
		}
		return fail("boot_aggregate cannot be checked: no IMA entry is proven")
	}
	pcrs := map[mr.Alg]map[int]mr.Digest{}
	for k, v := range r.trusted {
		if i, ok := pcrIndex(k.name); ok {
			if pcrs[k.alg] == nil {
				pcrs[k.alg] = map[int]mr.Digest{}
			}
			pcrs[k.alg][i] = v
		}
	}
	src := r.imaReader()
	for n := 0; n < r.proven; n++ {
		e, err := src.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return failFrom(name, err)
		}
		if r.ima.unprovenPCR[e.PCR] > 0 {
			if e.Index == 0 {
				return &failError{&Failure{Log: name, Record: 0, Offset: e.Offset, Reason: fmt.Sprintf("boot_aggregate cannot be checked: IMA entry 0 is on PCR %d, which the evidence does not quote", e.PCR)}}
			}
			continue
		}
		if e.FileName() != ima.BootAggregateName {
			if e.Index == 0 {
				return &failError{&Failure{Log: name, Record: 0, Offset: e.Offset, Reason: fmt.Sprintf("IMA entry 0 is %q, not the boot_aggregate: the list is not bound to the boot's PCRs", e.FileName())}}
			}
			continue
		}
		rule, err := ima.CheckBootAggregate(name, e, pcrs)
		if errors.Is(err, mr.ErrUnsupported) || errors.Is(err, mr.ErrMalformed) {
			return &failError{&Failure{Log: name, Record: e.Index, Offset: e.Offset, Reason: "boot_aggregate cannot be checked: " + err.Error()}}
		}
		if err != nil {
			return failFrom(name, err)
		}
		r.ima.bootAggregate[e.Index] = true
		at := ""
		if e.Index != 0 {
			at = fmt.Sprintf(" (entry %d)", e.Index)
		}
		l.Checked = append(l.Checked, fmt.Sprintf("boot_aggregate%s matches the quoted PCRs (%v)", at, rule))
	}
	return nil
}
