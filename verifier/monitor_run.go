package verifier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/bundle/tail"
	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// ErrNoMachine is returned by Verify with a monitor state for evidence that
// names no machine (TDX, SNP) when Options.Machine is empty: every such
// machine would share one entry, and one machine's bundle would fail or
// replace another's.
var ErrNoMachine = errors.New("the evidence carries no per-machine identity: name the machine (--machine) to use a monitor state")

// noNonce is the one weakening that concerns a single bundle (its
// freshness), not the history a monitor state keeps: it is not carried.
const noNonce = "no expected nonce: freshness not proven"

// monitorRun is what one verification does with the monitor state.
type monitorRun struct {
	machine string
	entry   *MachineState // the machine's entry, nil when there is none
	// policy and appLogs are how this run judges (MachineState.Policy,
	// MachineState.AppLogs).
	policy  string
	appLogs []string
	// carried are the entry's weakenings, repeated on this verdict as
	// carriedAs says.
	carried   []string
	carriedAs map[string]bool
	// Hashes of the prefixes the state proved, continued at the end over
	// what this run verified, so that each byte is hashed once per run.
	runtime map[string]*prefixHash
	ima     *prefixHash
}

// prefixHash is a SHA-256 over the first off bytes of one log, and for a
// runtime log the number of records they hold.
type prefixHash struct {
	log *bundle.Log
	off int64 // position in log's bytes hashed so far
	h   hash.Hash
	// start is the position in log's bytes of the state's point, where
	// the state's records (records) end.
	start   int64
	records int
}

// beginMonitor names the machine and how this run judges; whether its entry
// is used is decided after layer 0 (resumeLogs), when the boot is known.
func (r *run) beginMonitor() error {
	m := &monitorRun{machine: r.opts.Machine, policy: "none", runtime: map[string]*prefixHash{}}
	if m.machine == "" {
		m.machine = MachineID(r.b)
	}
	if m.machine == "" {
		return fmt.Errorf("%s evidence: %w", r.b.Platform, ErrNoMachine)
	}
	if p := r.opts.Policy; p != nil {
		if p.Digest.IsZero() {
			return errors.New("monitor state: the policy has no digest to bind the state to (make it with ParsePolicy or LoadPolicy)")
		}
		m.policy = p.Digest.String()
	}
	for n := range r.opts.AppLogs {
		m.appLogs = append(m.appLogs, n)
	}
	sort.Strings(m.appLogs)
	m.entry = r.opts.Monitor.Machines[m.machine]
	r.mon = m
	r.next = &MachineState{}
	return nil
}

// stateTime names an entry in the report: when it was verified.
func stateTime(ms *MachineState) string { return ms.Verified.UTC().Format(time.RFC3339) }

// resumeLogs is layer 1 with a monitor state: it decides whether the
// machine's entry is used, checks that the bundle's copy of what the entry
// proved is the one verified, and runs layer 1.
func (r *run) resumeLogs(ctx context.Context, l *LayerResult) error {
	if r.mon != nil {
		if err := r.useEntry(l); err != nil {
			return err
		}
	}
	if err := r.checkTails(); err != nil {
		return err
	}
	return r.logs(ctx, l)
}

// checkTails refuses every tail (bundle.Log.Offset > 0) the monitor state
// does not hold the head of. A tail proves nothing alone: its first record
// extends a value nothing in the bundle proves. It is accepted only as the
// first log of a runtime log's register or as the IMA list, with an entry
// of the state in use that verified the log at least as far as the tail's
// start, and no further than its end (the bytes between the state's point
// and the tail's start were never judged), and that kept the hash state
// there (PrefixState).
func (r *run) checkTails() error {
	first := map[string]bool{}
	for i := range r.b.Logs {
		lg := &r.b.Logs[i]
		name := logName(i, lg)
		isFirst := isRuntimeLog(lg) && !first[lg.Register]
		if isRuntimeLog(lg) {
			first[lg.Register] = true
		}
		if lg.Offset == 0 {
			continue
		}
		tailFail := func(why string) error {
			return &failError{&Failure{Log: name, Record: -1, Offset: lg.Offset, Register: lg.Register,
				Reason: fmt.Sprintf("the log is a tail from byte %d: %s", lg.Offset, why), tail: true}}
		}
		if lg.Offset < 0 {
			return tailFail("a negative offset")
		}
		var off int64
		var hashState string
		switch {
		case isRuntimeLog(lg) && !isFirst:
			return tailFail("only the first log of a register may be a tail (a later segment is whole)")
		case isRuntimeLog(lg):
			st := r.state.runtimeFor(lg.Register)
			if st == nil {
				return tailFail(r.noHead("the runtime log of " + lg.Register))
			}
			off, hashState = st.Offset, st.PrefixState
		case lg.Format == string(eventlog.FormatIMABinary) || lg.Format == string(eventlog.FormatIMAASCII):
			if r.state == nil || r.state.IMA == nil {
				return tailFail(r.noHead("the IMA list"))
			}
			off, hashState = r.state.IMA.Offset, r.state.IMA.PrefixState
		default:
			return tailFail("only runtime logs and the IMA list may be sent as tails; a " + lg.Format + " log is replayed whole")
		}
		switch {
		case lg.Offset > off:
			return tailFail(fmt.Sprintf("the monitor state of %s verified only %d bytes: the bytes between were never judged", stateTime(r.state), off))
		case end(lg) < off:
			return tailFail(fmt.Sprintf("it ends at byte %d, before the %d the monitor state of %s verified: rewritten, or a new boot", end(lg), off, stateTime(r.state)))
		case hashState == "":
			return tailFail(fmt.Sprintf("the monitor state of %s keeps no hash state at its point (written before tails were accepted): send the whole log once", stateTime(r.state)))
		}
	}
	return nil
}

// noHead says why no state entry holds the head of a tail.
func (r *run) noHead(what string) string {
	switch {
	case r.mon == nil:
		return "a tail proves nothing without a monitor state that verified " + what + " up to it (verify with --state, or send the whole log)"
	case r.state == nil:
		return fmt.Sprintf("the monitor state of %s is not used for this bundle (see layer 0 and 1), so nothing verified %s up to it: send the whole log", r.mon.machine, what)
	}
	return fmt.Sprintf("the monitor state of %s never verified %s: send the whole log", stateTime(r.state), what)
}

// useEntry uses the machine's entry when it was judged as this run judges
// and in this boot; otherwise the bundle is verified in full and, when
// trusted, replaces it.
func (r *run) useEntry(l *LayerResult) error {
	m, e := r.mon, r.mon.entry
	name := fmt.Sprintf("monitor state of %s", m.machine)
	if e == nil {
		l.Checked = append(l.Checked, name+": no entry yet, the bundle is verified in full")
		return nil
	}
	why := ""
	switch {
	case e.Policy != m.policy:
		why = fmt.Sprintf("it was judged under policy %s, this run under %s", e.Policy, m.policy)
	case !slices.Equal(e.AppLogs, m.appLogs):
		why = fmt.Sprintf("it was judged with the application logs of [%s], this run with [%s]", strings.Join(e.AppLogs, " "), strings.Join(m.appLogs, " "))
	default:
		why = r.otherBoot(e)
	}
	if why != "" {
		l.Checked = append(l.Checked, fmt.Sprintf("%s (%s) not used: %s; the bundle is verified in full", name, stateTime(e), why))
		return nil
	}
	r.state = e
	if e.IMA != nil {
		r.imaStart = imaPoint{entries: e.IMA.Entries, offset: e.IMA.Offset, value: e.IMA.Value}
		if validPCRCounts(e.IMA.PCRs, e.IMA.Entries) {
			// Counts that do not add up are not used: the whole list
			// is read for them, as for a state that kept none.
			r.imaStart.pcrs = e.IMA.PCRs
		}
	}
	m.carriedAs = map[string]bool{}
	for _, w := range e.Weakened {
		as := fmt.Sprintf("monitor state of %s: %s", stateTime(e), w)
		m.carried = append(m.carried, w)
		m.carriedAs[as] = true
		r.weaken(l, as)
	}
	return nil
}

// bootRegister reports whether a register is fixed for a boot: TDX's MRTD,
// RTMR0-2 and the launch-time owner registers, SNP's launch measurement and
// host data, TPM PCRs 0-9 (firmware, boot loader, kernel).
func bootRegister(name string) bool {
	switch name {
	case "mrtd", "rtmr0", "rtmr1", "rtmr2", "mrconfigid", "mrowner", "mrownerconfig", "measurement", "host_data":
		return true
	}
	i, ok := pcrIndex(name)
	return ok && i <= 9
}

// otherBoot compares the boot registers the entry recorded with the ones
// layer 0 proved; it names the first that differs ("" when all agree).
func (r *run) otherBoot(e *MachineState) string {
	was := map[regKey]mr.Digest{}
	for _, reg := range e.Registers {
		if bootRegister(reg.Name) {
			was[regKey{reg.Name, reg.Digest.Alg}] = reg.Digest
		}
	}
	var now []regKey
	for k := range r.trusted {
		if bootRegister(k.name) {
			now = append(now, k)
		}
	}
	sort.Slice(now, func(i, j int) bool {
		return now[i].name < now[j].name || now[i].name == now[j].name && now[i].alg < now[j].alg
	})
	for _, k := range now {
		d, ok := was[k]
		if !ok || !d.Equal(r.trusted[k]) {
			return fmt.Sprintf("it was recorded in another boot (%s %v differs)", k.name, k.alg)
		}
		delete(was, k)
	}
	for k := range was {
		return fmt.Sprintf("it was recorded in another boot (%s %v is no longer proven)", k.name, k.alg)
	}
	return ""
}

func isRuntimeLog(lg *bundle.Log) bool { return tail.IsRuntime(lg) }

// resumeAppLogs is layer 3 with a monitor state: the IMA entries the state
// proved are not replayed again, so the bundle's copy of them must hash to
// what was judged; then layer 3 runs.
func (r *run) resumeAppLogs(ctx context.Context, l *LayerResult) error {
	if r.state != nil && r.state.IMA != nil && r.imaLog != nil && r.imaLog.Offset > 0 {
		// A tail (checkTails proved it reaches the state's point): the
		// state's hash continues over the new bytes.
		st := r.state.IMA
		h, err := resumeHash(st.PrefixState)
		if err != nil {
			return fail("ima list: monitor state: %v", err)
		}
		r.mon.ima = &prefixHash{log: r.imaLog, off: pos(r.imaLog, st.Offset), h: h}
		l.NotChecked = append(l.NotChecked, fmt.Sprintf("ima list: a tail from byte %d: %d IMA entries (%d bytes) proven by the monitor state of %s, not sent", r.imaLog.Offset, st.Entries, st.Offset, stateTime(r.state)))
		if st.Offset > r.imaLog.Offset {
			l.NotChecked = append(l.NotChecked, fmt.Sprintf("ima list: bytes %d-%d were proven before (the state's point is later than the tail's start): not compared, as the state keeps no hash of them alone, and not used", r.imaLog.Offset, st.Offset))
		}
	} else if r.state != nil && r.state.IMA != nil && r.imaLog != nil && r.imaLog.Size() >= r.state.IMA.Offset {
		st := r.state.IMA
		h := sha256.New()
		if err := hashRange(h, r.imaLog, 0, st.Offset); err != nil {
			return failFrom("ima list", err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != st.Prefix {
			return &failError{&Failure{Log: "ima list", Record: -1, Expected: "sha256:" + st.Prefix, Computed: "sha256:" + got,
				Reason: fmt.Sprintf("the first %d IMA entries differ from the ones the monitor state of %s proved: an entry was changed after it was judged", st.Entries, stateTime(r.state))}}
		}
		r.mon.ima = &prefixHash{log: r.imaLog, off: st.Offset, h: h}
		l.NotChecked = append(l.NotChecked, fmt.Sprintf("%d IMA entries proven by the monitor state of %s, not re-read (their hash is the one judged)", st.Entries, stateTime(r.state)))
	}
	return r.appLogs(ctx, l)
}

// advanceMonitor replaces the machine's entry after a trusted verification:
// what this run proved, how it judged, the weakenings it carries, and the
// hash of every prefix it verified.
func (r *run) advanceMonitor() error {
	m, n := r.mon, r.next
	// The verifier's clock: the bundle's time is signed by nothing on
	// TPM, TDX and SNP, and the report quotes this time.
	n.Time = r.opts.At.UTC()
	n.Verified = n.Time
	n.Policy, n.AppLogs = m.policy, m.appLogs
	n.Weakened = append([]string(nil), m.carried...)
	for _, w := range r.rep.Weakened {
		if m.carriedAs[w] || w == noNonce || slices.Contains(n.Weakened, w) {
			continue
		}
		n.Weakened = append(n.Weakened, w)
	}
	for k, v := range r.trusted {
		n.Registers = append(n.Registers, bundle.Register{Name: k.name, Digest: v})
	}
	sort.Slice(n.Registers, func(i, j int) bool {
		a, c := n.Registers[i], n.Registers[j]
		return a.Name < c.Name || a.Name == c.Name && a.Digest.Alg < c.Digest.Alg
	})
	for _, rs := range n.Runtime {
		var last *bundle.Log
		for i := range r.b.Logs {
			if lg := &r.b.Logs[i]; isRuntimeLog(lg) && lg.Register == rs.Register {
				last = lg
			}
		}
		ph := m.runtime[rs.Register]
		if ph == nil || ph.log != last {
			ph = nil // another segment: hashed and counted from its start
		}
		p, hs, err := prefixOf(last, rs.Offset, ph)
		if err != nil {
			return fmt.Errorf("monitor state: runtime log of %s: %w", rs.Register, err)
		}
		rs.Prefix, rs.PrefixState = p, hs
		if rs.Records, err = r.countRecords(last, ph, rs); err != nil {
			return fmt.Errorf("monitor state: runtime log of %s: %w", rs.Register, err)
		}
	}
	if n.IMA != nil {
		p, hs, err := prefixOf(r.imaLog, n.IMA.Offset, m.ima)
		if err != nil {
			return fmt.Errorf("monitor state: IMA list: %w", err)
		}
		n.IMA.Prefix, n.IMA.PrefixState = p, hs
	}
	r.opts.Monitor.Machines[m.machine] = n
	r.rep.Layers[LayerEvidence].Checked = append(r.rep.Layers[LayerEvidence].Checked, "monitor state of "+m.machine+" advanced")
	return nil
}

// prefixOf is the hex SHA-256 of the whole log's first off bytes, and the
// hash state after them, continuing ph when it hashed a shorter prefix of
// the same log (ph.off is a position in lg's bytes). A tail always comes
// with ph: the bytes before it are hashed in the state's hash state.
func prefixOf(lg *bundle.Log, off int64, ph *prefixHash) (string, string, error) {
	if lg == nil || off < lg.Offset || off > end(lg) {
		return "", "", errors.New("the verified offset is outside the log")
	}
	p := pos(lg, off)
	if ph == nil || ph.log != lg || ph.off > p {
		if lg.Offset != 0 {
			return "", "", errors.New("a tail without the hash of the bytes before it")
		}
		ph = &prefixHash{log: lg, h: sha256.New()}
	}
	if err := hashRange(ph.h, lg, ph.off, p); err != nil {
		return "", "", err
	}
	ph.off = p
	hs, err := hashState(ph.h)
	if err != nil {
		return "", "", err
	}
	return hex.EncodeToString(ph.h.Sum(nil)), hs, nil
}

// countRecords counts the records of a runtime log up to rs.Offset: the
// ones the state counted before ph's start, and the ones after it (already
// replayed; this reads only the new part, as the rest of the log).
func (r *run) countRecords(lg *bundle.Log, ph *prefixHash, rs *RuntimeState) (int, error) {
	start, n := int64(0), 0
	if ph != nil {
		start, n = ph.start, ph.records
	}
	stop := pos(lg, rs.Offset)
	sg := segment{name: "runtime log", log: lg}
	rd := sg.reader(io.LimitReader(lg.Open(start), stop-start))
	if lg.Offset > 0 || start > 0 {
		rd = sg.continueReader(io.LimitReader(lg.Open(start), stop-start), rs)
	}
	for {
		_, err := rd.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return 0, err
		}
		n++
	}
}
