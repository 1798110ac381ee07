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
	log     *bundle.Log
	off     int64
	h       hash.Hash
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
	return r.logs(ctx, l)
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
	}
	m.carriedAs = map[string]bool{}
	for _, w := range e.Weakened {
		as := fmt.Sprintf("monitor state of %s: %s", stateTime(e), w)
		m.carried = append(m.carried, w)
		m.carriedAs[as] = true
		r.weaken(l, as)
	}
	return r.checkRuntimePrefixes(l)
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

func isRuntimeLog(lg *bundle.Log) bool {
	return lg.Format == string(eventlog.FormatRuntime) || lg.Format == string(eventlog.FormatAAELText)
}

// checkRuntimePrefixes compares, for each runtime log the entry resumes,
// the bundle's copy of the bytes the entry verified with their hash: those
// bytes are not replayed again, so a copy changed after it was judged would
// otherwise pass unseen. It mirrors runtimeChain: the entry resumes the
// first segment of a register when that segment starts as the entry's did.
func (r *run) checkRuntimePrefixes(l *LayerResult) error {
	for _, rs := range r.state.Runtime {
		for i := range r.b.Logs {
			lg := &r.b.Logs[i]
			if !isRuntimeLog(lg) || lg.Register != rs.Register {
				continue
			}
			name := logName(i, lg)
			init := initOf(segment{name: name, log: lg})
			if (init.Equal(rs.SegmentInit) || init.IsZero() && rs.SegmentInit.IsZero()) && lg.Size() >= rs.Offset {
				h := sha256.New()
				if err := lg.CopyRange(h, 0, rs.Offset); err != nil {
					return failFrom(name, err)
				}
				if hex.EncodeToString(h.Sum(nil)) != rs.Prefix {
					return &failError{&Failure{Log: name, Record: -1, Register: rs.Register, Expected: "sha256:" + rs.Prefix, Computed: "sha256:" + hex.EncodeToString(h.Sum(nil)),
						Reason: fmt.Sprintf("the first %d bytes of the runtime log differ from the ones the monitor state of %s verified: history changed after it was judged", rs.Offset, stateTime(r.state))}}
				}
				r.mon.runtime[rs.Register] = &prefixHash{log: lg, off: rs.Offset, h: h, records: rs.Records}
				l.NotChecked = append(l.NotChecked, fmt.Sprintf("%s: %d records (%d bytes) proven by the monitor state of %s, not re-read (their hash is the one verified)", name, rs.Records, rs.Offset, stateTime(r.state)))
			}
			break // only the first segment of a register resumes
		}
	}
	return nil
}

// resumeAppLogs is layer 3 with a monitor state: the IMA entries the state
// proved are not replayed again, so the bundle's copy of them must hash to
// what was judged; then layer 3 runs.
func (r *run) resumeAppLogs(ctx context.Context, l *LayerResult) error {
	if r.state != nil && r.state.IMA != nil && r.imaLog != nil && r.imaLog.Size() >= r.state.IMA.Offset {
		st := r.state.IMA
		h := sha256.New()
		if err := r.imaLog.CopyRange(h, 0, st.Offset); err != nil {
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
		p, err := prefixOf(last, rs.Offset, ph)
		if err != nil {
			return fmt.Errorf("monitor state: runtime log of %s: %w", rs.Register, err)
		}
		rs.Prefix = p
		if rs.Records, err = r.countRecords(last, ph, rs); err != nil {
			return fmt.Errorf("monitor state: runtime log of %s: %w", rs.Register, err)
		}
	}
	if n.IMA != nil {
		p, err := prefixOf(r.imaLog, n.IMA.Offset, m.ima)
		if err != nil {
			return fmt.Errorf("monitor state: IMA list: %w", err)
		}
		n.IMA.Prefix = p
	}
	r.opts.Monitor.Machines[m.machine] = n
	r.rep.Layers[LayerEvidence].Checked = append(r.rep.Layers[LayerEvidence].Checked, "monitor state of "+m.machine+" advanced")
	return nil
}

// prefixOf is the hex SHA-256 of lg's first off bytes, continuing ph when
// it hashed a shorter prefix of the same eventlog.
func prefixOf(lg *bundle.Log, off int64, ph *prefixHash) (string, error) {
	if lg == nil || off < 0 || off > lg.Size() {
		return "", errors.New("the verified offset is outside the log")
	}
	if ph == nil || ph.log != lg || ph.off > off {
		ph = &prefixHash{log: lg, h: sha256.New()}
	}
	if err := lg.CopyRange(ph.h, ph.off, off); err != nil {
		return "", err
	}
	return hex.EncodeToString(ph.h.Sum(nil)), nil
}

// countRecords counts the records of a runtime log up to rs.Offset: the
// ones the state counted before ph's offset, and the ones after it (already
// replayed; this reads only the new part, as the rest of the log).
func (r *run) countRecords(lg *bundle.Log, ph *prefixHash, rs *RuntimeState) (int, error) {
	start, n := int64(0), 0
	if ph != nil {
		start, n = ph.off, ph.records
	}
	sg := segment{name: "runtime log", log: lg}
	rd := sg.reader(io.LimitReader(lg.Open(start), rs.Offset-start))
	if start > 0 {
		rd = sg.continueReader(io.LimitReader(lg.Open(start), rs.Offset-start), rs)
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
