package verifier

import (
	"bytes"
	"fmt"

	"github.com/ccmr-dev/ccmr/log"
	"github.com/ccmr-dev/ccmr/log/runtime"
	"github.com/ccmr-dev/ccmr/log/tcg"
	"github.com/ccmr-dev/ccmr/mr"
)

// A runtime log that starts with an INIT entry (or a segment that starts
// with a snapshot) is replayed from that value. The value is a claim: a
// guest that deletes the first records of its log and writes their result
// into INIT still replays to the quoted register. So the start of the first
// segment counts only when something proves it (docs/threat-model.md,
// Layer 1):
//
//   - the register's reset value (zero; all ones for TPM PCRs 17-22) with
//     no firmware or dstack log extending the register;
//   - the value a firmware or dstack log of the bundle replays the register
//     to, when the register is shared with firmware or dstack;
//   - the monitor state that verified exactly that point (runtimeChain).
//
// Segments after the first must start where the one before ended
// (runtimeChain), so a chain back to a proven start proves them all.
// Anything else fails, unless Options.AcceptUnverifiedHistory makes it a
// weakened pass naming what was never judged.

// chainStart is the value a firmware or dstack log replays a register to.
type chainStart struct {
	value mr.Digest
	from  string // the log's name
}

// runtimeRegs lists the backing registers (and banks) of the bundle's
// runtime logs: a firmware or dstack log's replay of them is where their
// first segments must start, not a value to compare with the quote.
func (r *run) runtimeRegs() map[regKey]bool {
	regs := map[regKey]bool{}
	for i := range r.b.Logs {
		lg := &r.b.Logs[i]
		if lg.Format != string(log.FormatRuntime) && lg.Format != string(log.FormatAAELText) {
			continue
		}
		if a, ok := (segment{name: lg.Register, log: lg}).alg(); ok {
			regs[regKey{lg.Register, a}] = true
		}
	}
	return regs
}

// alg is the algorithm of a segment's backing register, from its first
// entry; ok is false for an empty or unreadable segment.
func (sg segment) alg() (mr.Alg, bool) {
	e, err := sg.reader(sg.log.Data).Next()
	if err != nil {
		return 0, false
	}
	if !e.Init.IsZero() {
		return e.Init.Alg, true
	}
	return e.Digest.Alg, e.Digest.Alg.Valid()
}

// setStart records the value a log replays a runtime log's register to.
// Two logs that disagree on it cannot both be true.
func (r *run) setStart(name string, k regKey, v mr.Digest) error {
	if prev, ok := r.starts[k]; ok && !prev.value.Equal(v) {
		return &failError{&Failure{Log: name, Record: -1, Register: k.name, Expected: prev.value.String(), Computed: v.String(),
			Reason: fmt.Sprintf("%s and %s replay %s to different values", prev.from, name, k.name)}}
	}
	r.starts[k] = chainStart{value: v, from: name}
	return nil
}

// firmwareCounts counts a firmware log's extending events per register.
func firmwareCounts(fl *tcg.Log) map[string]int {
	counts := map[string]int{}
	for i := range fl.Events {
		e := &fl.Events[i]
		if (e.Num == 0 && fl.CryptoAgile) || e.Type == tcg.EvNoAction {
			continue
		}
		name, _ := tcg.RegisterName(fl.Format, e.Index)
		counts[name]++
	}
	return counts
}

// resetValue is a register's value at reset: zero, but all ones for the
// D-RTM PCRs 17-22 of a TPM (PC Client TPM profile).
func (r *run) resetValue(reg string, a mr.Alg) mr.Digest {
	var i int
	if r.b.Platform == mr.PlatformTPM {
		if _, err := fmt.Sscanf(reg, "pcr%d", &i); err == nil && i >= 17 && i <= 22 {
			return mr.Digest{Alg: a, Bytes: bytes.Repeat([]byte{0xFF}, a.Size())}
		}
	}
	return mr.Zero(a)
}

// history is what runtimeChain learns about the start of a chain that no
// monitor state proves.
type history struct {
	start    mr.Digest // the first segment's start (its INIT, else zero)
	snapshot []runtime.Snapshot
	records  int // entries replayed after the start, over all segments
}

// judgeStart decides whether the first segment of reg's runtime log starts
// at a proven value (see the comment at the top of this file).
func (r *run) judgeStart(reg string, first segment, h history, l *LayerResult) error {
	a := h.start.Alg
	want, proof := r.resetValue(reg, a), "the reset value of "+reg
	if fw, ok := r.starts[regKey{reg, a}]; ok {
		want, proof = fw.value, fmt.Sprintf("the value %s replays %s to", fw.from, reg)
	}
	if h.start.Equal(want) && h.snapshot == nil {
		l.Checked = append(l.Checked, fmt.Sprintf("%s: the runtime log of %s starts at %s", first.name, reg, proof))
		return nil
	}
	what := fmt.Sprintf("starts at INIT %v", h.start)
	if h.snapshot != nil {
		what += fmt.Sprintf(" with a snapshot of %d virtual registers", len(h.snapshot))
	}
	if !r.opts.AcceptUnverifiedHistory {
		return &failError{&Failure{Log: first.name, Record: 0, Register: reg, Expected: want.String(), Computed: h.start.String(),
			Reason: fmt.Sprintf("the runtime log of %s %s, which nothing proves (want %s): give the segments before it, or the firmware or dstack log of %s, or verify with the monitor state that saw this point (--accept-unverified-history accepts it, weakened)", reg, what, proof, reg)}}
	}
	r.unjudged = true
	r.weaken(l, fmt.Sprintf("%s: history before INIT %v never judged%s; %d records judged after it", reg, h.start, snapshotNote(h.snapshot), h.records))
	return nil
}

func snapshotNote(s []runtime.Snapshot) string {
	if s == nil {
		return ""
	}
	names := ""
	for i, v := range s {
		if i > 0 {
			names += ", "
		}
		names += v.Name
	}
	return " (snapshot of " + names + " taken on trust)"
}
