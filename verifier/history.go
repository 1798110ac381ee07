package verifier

import (
	"fmt"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/eventlog/tcg"
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
	// unproven, when set, says why the log's replay of the register does
	// not prove the start of the register's runtime log: the log has
	// events there that the platform's firmware and boot chain never make
	// (firmwareStartProblems). events is how many events it has there.
	unproven string
	events   int
}

// runtimeRegs lists the backing registers (and banks) of the bundle's
// runtime logs: a firmware or dstack log's replay of them is where their
// first segments must start, not a value to compare with the quote.
func (r *run) runtimeRegs() map[regKey]bool {
	regs := map[regKey]bool{}
	for i := range r.b.Logs {
		lg := &r.b.Logs[i]
		if lg.Format != string(eventlog.FormatRuntime) && lg.Format != string(eventlog.FormatAAELText) {
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
	e, err := sg.reader(sg.log.Open(0)).Next()
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
// A log that does not prove the start (cs.unproven) taints the start
// whatever other log agrees with it.
func (r *run) setStart(k regKey, cs chainStart) error {
	prev, ok := r.starts[k]
	if ok && !prev.value.Equal(cs.value) {
		return &failError{&Failure{Log: cs.from, Record: -1, Register: k.name, Expected: prev.value.String(), Computed: cs.value.String(),
			Reason: fmt.Sprintf("%s and %s replay %s to different values", prev.from, cs.from, k.name)}}
	}
	if ok && prev.unproven != "" {
		return nil
	}
	r.starts[k] = cs
	return nil
}

// shimPCR14 are the variables shim logs on PCR 14: rhboot/shim mok.c,
// mok_state_variable_data, the entries with .pcr = 14 and
// MOK_VARIABLE_LOG, each measured once per boot by tpm_log_event as an
// EV_IPL event whose data is the name and a NUL (SbatLevel goes to PCR 7).
var shimPCR14 = map[string]bool{"MokList": true, "MokListX": true, "MokSBState": true, "MokListTrusted": true, "MokPolicy": true}

// firmwareStartProblems says, per backing register of a runtime log, why
// firmware log fl (named name) does not prove where that runtime log
// starts, with its number of events there. A firmware log's replay of a
// register proves the start only when every event it has there is one the
// platform's firmware or boot chain makes there:
//
//   - CCEL (TDX): TDVF and the boot chain map PCR 0 to MRTD, 1 and 7 to
//     RTMR0, 2-6 to RTMR1 and 8-15 to RTMR2 (UEFI CC measurement protocol,
//     TDX guest-hypervisor interface); no CCEL event belongs on RTMR3 or
//     any other register that carries a runtime eventlog.
//   - TCG2 (TPM): only shim's EV_IPL events of shimPCR14 on PCR 14, each
//     name at most once.
//
// Anything else is a record the runtime log would have to read as its own
// (a guest moves the head of its runtime log into a made-up firmware log
// and starts the runtime log with INIT at the value after it).
func firmwareStartProblems(name string, f eventlog.Format, fl *tcg.Log, runtimeRegs map[regKey]bool) map[string]chainStart {
	regs := map[string]bool{}
	for k := range runtimeRegs {
		regs[k.name] = true
	}
	events, foreign := map[string]int{}, map[string]int{}
	seen := map[string]bool{}
	for i := range fl.Events {
		e := &fl.Events[i]
		if (e.Num == 0 && fl.CryptoAgile) || e.Type == tcg.EvNoAction {
			continue
		}
		reg, _ := tcg.RegisterName(fl.Format, e.Index)
		if !regs[reg] {
			continue
		}
		events[reg]++
		if f == eventlog.FormatTCG2 && e.Index == 14 && e.Type == tcg.EvIPL && len(e.Data) > 1 && e.Data[len(e.Data)-1] == 0 {
			if v := string(e.Data[:len(e.Data)-1]); shimPCR14[v] && !seen[v] {
				seen[v] = true
				continue
			}
		}
		foreign[reg]++
	}
	out := map[string]chainStart{}
	for reg, n := range foreign {
		why := fmt.Sprintf("%s has %d events on %s, where TDX firmware and the boot chain measure nothing (they map PCRs to MRTD and RTMR0-2 only)", name, n, reg)
		if f != eventlog.FormatCCEL {
			why = fmt.Sprintf("%s has %d events on %s, %d of them not shim's (EV_IPL MokList, MokListX, MokListTrusted, MokSBState or MokPolicy, each at most once)", name, events[reg], reg, n)
		}
		out[reg] = chainStart{unproven: why, events: events[reg]}
	}
	return out
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
// D-RTM PCRs 17-22 of a TPM (PC Client TPM profile), by name as every
// replay (aael, vmr) starts them, so that a sim device with the TPM layout
// agrees too.
func (r *run) resetValue(reg string, a mr.Alg) mr.Digest {
	return mr.ResetValue(reg, a)
}

// history is what runtimeChain learns about the start of a chain that no
// monitor state proves.
type history struct {
	start    mr.Digest // the first segment's start (its INIT, else zero)
	snapshot []aael.Snapshot
	records  int // entries replayed after the start, over all segments
}

// judgeResettable fails a runtime log on a register the guest can reset
// (TPM PCR 16, 23), unless Options.AcceptUnverifiedHistory makes it a
// weakened pass. The guest can reset such a register at any time and
// extend it again with the records it keeps: a log that drops any of them
// (before or after what a monitor state saw) still replays to the quoted
// value, so nothing proves the log is whole. A weakened run does not
// advance the monitor state.
func (r *run) judgeResettable(reg string, first segment, l *LayerResult) error {
	if !mr.GuestResettable(reg) {
		return nil
	}
	if !r.opts.AcceptUnverifiedHistory {
		return &failError{&Failure{Log: first.name, Record: 0, Register: reg,
			Reason: fmt.Sprintf("the runtime log is on %s, which the guest can reset (TPM PCR 16 and 23): records dropped after a reset leave a log that still replays to the quoted value (--accept-unverified-history accepts it, weakened)", reg)}}
	}
	r.unjudged = true
	r.weaken(l, fmt.Sprintf("%s: resettable by the guest (TPM PCR 16 and 23): records dropped with a reset are never seen; the log is judged only as far as it goes", reg))
	return nil
}

// judgeStart decides whether the first segment of reg's runtime log starts
// at a proven value (see the comment at the top of this file).
func (r *run) judgeStart(reg string, first segment, h history, l *LayerResult) error {
	a := h.start.Alg
	want, proof := r.resetValue(reg, a), "the reset value of "+reg
	fw, ok := r.starts[regKey{reg, a}]
	if ok {
		want, proof = fw.value, fmt.Sprintf("the value %s replays %s to", fw.from, reg)
	}
	if fw.unproven == "" && h.start.Equal(want) && h.snapshot == nil {
		l.Checked = append(l.Checked, fmt.Sprintf("%s: the runtime log of %s starts at %s", first.name, reg, proof))
		return nil
	}
	what := fmt.Sprintf("starts at INIT %v", h.start)
	if h.snapshot != nil {
		what += fmt.Sprintf(" with a snapshot of %d virtual registers", len(h.snapshot))
	}
	if !r.opts.AcceptUnverifiedHistory {
		reason := fmt.Sprintf("the runtime log of %s %s, which nothing proves (want %s): give the segments before it, or the firmware or dstack log of %s, or verify with the monitor state that saw this point (--accept-unverified-history accepts it, weakened)", reg, what, proof, reg)
		if fw.unproven != "" {
			reason = fmt.Sprintf("the runtime log of %s %s, which nothing proves: %s, so its replay of %s proves no runtime log's start, and those events are judged by nothing (--accept-unverified-history accepts it, weakened)", reg, what, fw.unproven, reg)
		}
		return &failError{&Failure{Log: first.name, Record: 0, Register: reg, Expected: want.String(), Computed: h.start.String(), Reason: reason}}
	}
	r.unjudged = true
	fwNote := ""
	if fw.unproven != "" {
		fwNote = fmt.Sprintf(" (%s's %d events on %s never judged)", fw.from, fw.events, reg)
	}
	r.weaken(l, fmt.Sprintf("%s: history before INIT %v never judged%s%s; %d records judged after it", reg, h.start, snapshotNote(h.snapshot), fwNote, h.records))
	return nil
}

func snapshotNote(s []aael.Snapshot) string {
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
