package verifier

import (
	"fmt"
	"io"
	"maps"
	"sort"
	"strconv"
	"strings"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/eventlog/logfile"
	"github.com/ccmr-dev/ccmr/mr"
)

// Coverage: what the logs of a bundle explain, and what the evidence covers
// of the logs (docs/threat-model.md, "Coverage").
//
//   - An event of a firmware, CC or dstack log on a register the evidence
//     does not cover in any bank the log carries (a TPM quote of PCR 0-7
//     next to a log with grub's events on PCR 8-9) is proven by nothing:
//     it fails the log, unless Options.AllowUnquotedLogRegisters makes it a
//     weakened pass naming those registers. A register the evidence covers
//     in another bank of the log is checked there; the bank the evidence
//     lacks is a note.
//   - A firmware log of the platform's firmware registers (TCG2: PCR 0-7;
//     CCEL: RTMR0-2) that has no event for one of them while the evidence
//     holds it at another value than its reset value is incomplete: layer 1
//     fails (events removed, or another machine's log).
//   - Every other quoted register (pcrN, rtmrN) whose value is not its reset
//     value and that no log of the bundle replays is reported as explained
//     by no eventlog. Launch values (mrtd, mrconfigid, SNP measurement, ...) are
//     not extended by any log; a policy judges them.

// explain records that a log replayed the quoted register k.
func (r *run) explain(k regKey, name string) {
	if r.explained == nil {
		r.explained = map[regKey]string{}
	}
	if _, ok := r.explained[k]; !ok {
		r.explained[k] = name
	}
}

// uncovered judges the registers (and banks) of a log's replay that the
// evidence does not hold. counts are the log's events per register.
func (r *run) uncovered(name string, absent []mr.Value, counts map[string]int, runtimeRegs map[regKey]bool, l *LayerResult) error {
	var regs []string
	seen := map[string]bool{}
	for _, v := range absent {
		reg := v.Register.Name
		if r.coveredInSomeBank(reg, runtimeRegs) {
			l.NotChecked = append(l.NotChecked, fmt.Sprintf("%s: %s %v is not in the evidence: its %d events are checked in the banks the evidence holds", name, reg, v.Digest.Alg, counts[reg]))
			continue
		}
		if !seen[reg] {
			seen[reg] = true
			regs = append(regs, reg)
		}
	}
	if len(regs) == 0 {
		return nil
	}
	sort.Slice(regs, func(i, j int) bool { return regLess(regs[i], regs[j]) })
	n := 0
	for _, reg := range regs {
		n += counts[reg]
	}
	what := fmt.Sprintf("%d events on %s, which the evidence does not cover", n, strings.Join(regs, ", "))
	if !r.opts.AllowUnquotedLogRegisters {
		return &failError{&Failure{Log: name, Record: -1, Register: regs[0],
			Reason: fmt.Sprintf("%s: %s: nothing proves them (quote those registers; --allow-unquoted-log-registers accepts them, weakened)", name, what)}}
	}
	r.weaken(l, fmt.Sprintf("%s: %s, taken on trust", name, what))
	return nil
}

// coveredInSomeBank reports whether the evidence holds reg in some bank, or
// a runtime log starts from it.
func (r *run) coveredInSomeBank(reg string, runtimeRegs map[regKey]bool) bool {
	for k := range r.trusted {
		if k.name == reg {
			return true
		}
	}
	for k := range runtimeRegs {
		if k.name == reg {
			return true
		}
	}
	return false
}

// firmwareRegisters are the registers a platform's firmware log must
// account for: TCG2 logs PCR 0-7 (the pre-OS PCRs of the PC Client
// profile), the CCEL RTMR0-2 (firmware, boot loader and OS).
func firmwareRegisters(f eventlog.Format) []string {
	switch f {
	case eventlog.FormatTCG2:
		return []string{"pcr0", "pcr1", "pcr2", "pcr3", "pcr4", "pcr5", "pcr6", "pcr7"}
	case eventlog.FormatCCEL:
		return []string{"rtmr0", "rtmr1", "rtmr2"}
	}
	return nil
}

// coverage runs after the logs of layer 1 replayed: it fails an incomplete
// firmware log and reports the quoted registers no log explains.
func (r *run) coverage(l *LayerResult) error {
	for i := range r.b.Logs {
		lg := &r.b.Logs[i]
		c, ok := logfile.Lookup(eventlog.Format(lg.Format))
		if !ok || c.Role() != logfile.RoleFirmware {
			continue
		}
		regs := firmwareRegisters(c.Format())
		name := logName(i, lg)
		fl, err := r.firmware(name, lg)
		if err != nil {
			return failFrom(name, err)
		}
		counts := firmwareCounts(fl)
		var missing []string
		for _, reg := range regs {
			if counts[reg] > 0 {
				continue
			}
			if banks := r.nonReset(reg); len(banks) > 0 {
				missing = append(missing, fmt.Sprintf("%s (%s)", reg, strings.Join(banks, ", ")))
			}
		}
		if len(missing) > 0 {
			return &failError{&Failure{Log: name, Record: -1, Register: strings.Fields(missing[0])[0],
				Reason: fmt.Sprintf("%s has no event for %s, which the evidence holds at a value other than the reset value: the log is incomplete (events removed, or another machine's log)", name, strings.Join(missing, ", "))}}
		}
	}
	for k := range r.runtimeRegs() {
		r.explain(k, "runtime log")
	}
	imaPCRs := r.imaListPCRs()
	byReg := map[string][]string{}
	for k, v := range r.trusted {
		if !extendedByLogs(k.name) || imaPCRs[k.name] {
			continue
		}
		if _, ok := r.explained[k]; ok || v.Equal(r.resetValue(k.name, k.alg)) {
			continue
		}
		byReg[k.name] = append(byReg[k.name], k.alg.String())
	}
	regs := make([]string, 0, len(byReg))
	for reg := range byReg {
		regs = append(regs, reg)
	}
	sort.Slice(regs, func(i, j int) bool { return regLess(regs[i], regs[j]) })
	for _, reg := range regs {
		sort.Strings(byReg[reg])
		l.NotChecked = append(l.NotChecked, fmt.Sprintf("%s (%s) is quoted but explained by no log", reg, strings.Join(byReg[reg], ", ")))
	}
	return nil
}

// nonReset lists the banks in which the evidence holds reg at a value other
// than its reset value.
func (r *run) nonReset(reg string) []string {
	var banks []string
	for k, v := range r.trusted {
		if k.name == reg && !v.Equal(r.resetValue(reg, k.alg)) {
			banks = append(banks, k.alg.String())
		}
	}
	sort.Strings(banks)
	return banks
}

// extendedByLogs reports whether a register is one that logs explain (TPM
// PCRs, TDX RTMRs), not a launch value.
func extendedByLogs(name string) bool {
	for _, p := range []string{"pcr", "rtmr"} {
		if s, ok := strings.CutPrefix(name, p); ok {
			if _, err := strconv.Atoi(s); err == nil {
				return true
			}
		}
	}
	return false
}

// regLess orders register names by prefix, then number (pcr8 < pcr10).
func regLess(a, b string) bool {
	split := func(s string) (string, int) {
		i := len(s)
		for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
			i--
		}
		n, _ := strconv.Atoi(s[i:])
		return s[:i], n
	}
	pa, na := split(a)
	pb, nb := split(b)
	if pa != pb {
		return pa < pb
	}
	return na < nb
}

// ---- the IMA list and the quoted PCRs --------------------------------------

// wholeIMAReader reads the IMA list from its first entry, whatever a
// monitor state proved: a PCR holds the whole list since boot.
func (r *run) wholeIMAReader() *ima.Reader {
	rd, _ := logfile.NewIMAReader(eventlog.Format(r.imaLog.Format), r.imaLog.Open(0), ima.Options{File: "ima list"}) // layer 1 took it by its role: an IMA format
	return rd
}

// newIMAPCRs counts the entries from where this run starts (a monitor
// state's point, else the list's first entry) by the PCR they name: what
// checkIMAEntries counted, or before it ran (layer 1's coverage, the tail
// check of layer 3) a read of those entries alone. A bad entry ends the
// count: the replay that follows fails on it.
func (r *run) newIMAPCRs() map[int]int {
	if r.ima.perPCR != nil {
		return r.ima.perPCR
	}
	src := r.wholeIMAReader()
	if pos(r.imaLog, r.imaStart.offset) >= 0 {
		src = r.imaReader()
	}
	return countPCRs(src, -1)
}

// countPCRs counts up to n entries of src (all when n < 0) by PCR; it
// stops at the first that does not read.
func countPCRs(src *ima.Reader, n int) map[int]int {
	pcrs := map[int]int{}
	for ; n != 0; n-- {
		e, err := src.Next()
		if err != nil {
			return pcrs // io.EOF; a bad entry fails the replay that follows
		}
		pcrs[e.PCR]++
	}
	return pcrs
}

// wholeIMAPCRs counts the entries of the whole list by the PCR they name.
// A PCR holds the whole list since boot, so the entries a monitor state
// proved count too: from the state's counts (IMAState.PCRs, bound to the
// bytes by the prefix hash the run checks) and the new entries alone, else
// from a read of the whole list.
func (r *run) wholeIMAPCRs() map[int]int {
	if r.imaStart.entries == 0 {
		return r.newIMAPCRs()
	}
	if r.imaStart.pcrs != nil {
		all := maps.Clone(r.imaStart.pcrs)
		for p, n := range r.newIMAPCRs() {
			all[p] += n
		}
		return all
	}
	if r.imaLog.Offset != 0 {
		return r.tailIMAPCRs()
	}
	return countPCRs(r.wholeIMAReader(), -1)
}

// nextIMAPCRs counts the first imaStart.entries+events entries of the list
// by PCR, for the next state's IMA point. nil when the entries before this
// run's start cannot be counted (a tail under a state that kept no counts):
// the next run under it reads the whole list for them.
func (r *run) nextIMAPCRs(events int) map[int]int {
	var all map[int]int
	switch {
	case r.imaStart.entries == 0:
		all = map[int]int{}
	case r.imaStart.pcrs != nil:
		all = maps.Clone(r.imaStart.pcrs)
	case r.imaLog.Offset == 0:
		// A state written before the counts were kept: counted once.
		all = countPCRs(r.wholeIMAReader(), r.imaStart.entries)
	default:
		return nil
	}
	counted := r.ima.perPCR
	if sumCounts(counted) != events || counted == nil {
		counted = countPCRs(r.imaReader(), events)
	}
	for p, n := range counted {
		all[p] += n
	}
	if sumCounts(all) != r.imaStart.entries+events {
		return nil // an entry did not read: keep no counts
	}
	return all
}

// validPCRCounts reports whether a state's per-PCR counts (absent, or
// positive counts of PCRs as IMA entries name them) add up to its entries.
func validPCRCounts(pcrs map[int]int, entries int) bool {
	if pcrs == nil {
		return true
	}
	sum := 0
	for p, n := range pcrs {
		if p < 0 || n <= 0 || n > entries {
			return false
		}
		sum += n
	}
	return sum == entries
}

// quotesPCRs reports whether the evidence holds a TPM PCR.
func (r *run) quotesPCRs() bool {
	for k := range r.trusted {
		if _, ok := pcrIndex(k.name); ok {
			return true
		}
	}
	return false
}

// tailIMAPCRs are the PCRs of an IMA list sent as a tail under a monitor
// state that kept no per-PCR counts (written before it kept them): the
// tail's bytes before the state's point are compared with nothing, so they
// never say which PCRs hold the list. The entries the tail lacks may be on
// PCR 10 or, when the state proved entries on evidence with PCRs, on any
// quoted PCR; with those, the PCRs of the entries after the point, the
// only ones read (send the whole list once to get counts).
func (r *run) tailIMAPCRs() map[int]int {
	pcrs := map[int]int{10: 0}
	if r.imaStart.entries > 0 {
		for k := range r.trusted {
			if i, ok := pcrIndex(k.name); ok {
				pcrs[i] = 0
			}
		}
	}
	for p, n := range countPCRs(r.imaReader(), -1) {
		pcrs[p] += n
	}
	return pcrs
}

// imaPCRsQuoted reports whether the evidence quotes a PCR the IMA list
// extends (PCR 10 for an empty list): then the PCRs prove the whole list,
// not only what mr_ima records. Evidence without PCRs is answered without
// reading the list.
func (r *run) imaPCRsQuoted() bool {
	if !r.quotesPCRs() {
		return false
	}
	pcrs := r.wholeIMAPCRs()
	if len(pcrs) == 0 {
		pcrs = map[int]int{10: 0}
	}
	for k := range r.trusted {
		if i, ok := pcrIndex(k.name); ok {
			if _, used := pcrs[i]; used {
				return true
			}
		}
	}
	return false
}

// imaListPCRs names the PCRs the bundle's IMA list extends (on evidence
// with PCRs): layer 3 replays them, so layer 1 does not report them as
// explained by no eventlog. Only PCR names are looked up in it, so evidence
// without PCRs reads nothing, and a resumed run reads only the new entries
// (wholeIMAPCRs).
func (r *run) imaListPCRs() map[string]bool {
	out := map[string]bool{}
	if r.imaLog == nil || !r.quotesPCRs() {
		return out
	}
	for p := range r.wholeIMAPCRs() {
		out["pcr"+strconv.Itoa(p)] = true
	}
	if len(out) == 0 {
		out["pcr10"] = true // an empty list: layer 3 compares PCR 10 with zero
	}
	return out
}

// mrIMAProves runs after replayPCRs on a list that also has mr_ima records:
// the first byRecords entries (from where this run starts) are proven by
// their records whatever PCR they name, so only the entries after them on
// a PCR the evidence does not quote remain unproven (imaFacts.unprovenPCR).
func (r *run) mrIMAProves(byRecords int, l *LayerResult) error {
	unquoted := r.ima.unprovenPCR
	if len(unquoted) == 0 {
		return nil
	}
	left := map[int]int{}
	proven := map[int]int{}
	src := r.imaReader()
	for n := 0; ; n++ {
		e, err := src.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return failFrom("ima list", r.shiftIMA(err))
		}
		if _, ok := unquoted[e.PCR]; !ok {
			continue
		}
		if n < byRecords {
			proven[e.PCR]++
		} else {
			left[e.PCR]++
		}
	}
	r.ima.unprovenPCR = left
	// replayPCRs reported every entry on those PCRs as not proven.
	all := r.wholeIMAPCRs()
	drop := map[string]bool{}
	for p := range unquoted {
		drop[fmt.Sprintf("%d IMA entries on PCR %d are not proven: the evidence does not quote PCR %d", all[p], p, p)] = true
	}
	kept := l.NotChecked[:0]
	for _, n := range l.NotChecked {
		if !drop[n] {
			kept = append(kept, n)
		}
	}
	l.NotChecked = kept
	for _, p := range sortedKeys(left) {
		l.NotChecked = append(l.NotChecked, fmt.Sprintf("%d IMA entries on PCR %d after the last mr_ima record are not proven: the evidence does not quote PCR %d", left[p], p, p))
	}
	for _, p := range sortedKeys(proven) {
		l.Checked = append(l.Checked, fmt.Sprintf("%d IMA entries on PCR %d (not quoted) are proven by their mr_ima records", proven[p], p))
	}
	return nil
}

func sortedKeys(m map[int]int) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}
