package verifier

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/logfile"
	"github.com/ccmr-dev/ccmr/eventlog/tcg"
	"github.com/ccmr-dev/ccmr/mr"
)

// Measured-boot reference: the policy section "measured_boot" lists, per
// register, the firmware events (TCG2 or CCEL log) a known-good boot
// measured, in order — the role of Keylime's measured-boot reference state
// and of systemd-pcrlock. Layer 4 judges the events of the bundle's
// firmware log that layer 1 proved (replayed to a quoted value): each
// register the section names must hold exactly those events in that order,
// so a firmware update that changes one event fails naming that record, and
// the same events in another order are told apart from a changed event.
// The registers may interleave differently in the log than in the
// reference (the firmware measured them in another order): the values are
// the same, the policy passes and the report says so.

// MeasuredBootPolicy is the policy section "measured_boot".
type MeasuredBootPolicy struct {
	// Registers maps a register (pcr0…pcr23, mrtd, rtmr0…rtmr3) to its
	// allowed events, in measurement order.
	Registers map[string][]BootEvent `json:"registers"`
}

// BootEvent is one allowed firmware event.
type BootEvent struct {
	// Record is the event's record number in the reference log. It only
	// explains a different interleaving of registers; it is not judged.
	Record int `json:"record,omitempty"`
	// Type is the event type's name (EV_SEPARATOR, EV_0x… when unnamed).
	Type string `json:"type"`
	// Digests are the event's digests ("ALG:HEX"), one per bank: those
	// in the banks the evidence proves are judged. An EV_NO_ACTION event
	// (never extended) has none and is judged by its Data.
	Digests []mr.Digest `json:"digests,omitempty"`
	// Data is an EV_NO_ACTION event's data (hex): a StartupLocality record
	// sets PCR 0's start value.
	Data string `json:"data,omitempty"`
}

const evNoAction = "EV_NO_ACTION"

// check refuses a section that cannot be judged: a judge of nothing
// would pass.
func (p *MeasuredBootPolicy) check() error {
	if len(p.Registers) == 0 {
		return fmt.Errorf("%w: policy measured_boot names no register", mr.ErrMalformed)
	}
	for name, evs := range p.Registers {
		if !bootRegisterName(name) {
			return fmt.Errorf("%w: policy measured_boot: %q is not a firmware log register (pcr0..pcr23, mrtd, rtmr0..rtmr3)", mr.ErrMalformed, name)
		}
		if len(evs) == 0 {
			return fmt.Errorf("%w: policy measured_boot.registers.%s lists no event", mr.ErrMalformed, name)
		}
		for i, e := range evs {
			where := fmt.Sprintf("policy measured_boot.registers.%s[%d]", name, i)
			if e.Type == "" {
				return fmt.Errorf("%w: %s: no type", mr.ErrMalformed, where)
			}
			if e.Type == evNoAction {
				if len(e.Digests) > 0 {
					return fmt.Errorf("%w: %s: an EV_NO_ACTION event is never extended: give its data, not digests", mr.ErrMalformed, where)
				}
				if _, err := hex.DecodeString(e.Data); err != nil {
					return fmt.Errorf("%w: %s: data is not hex", mr.ErrMalformed, where)
				}
				continue
			}
			if len(e.Digests) == 0 || e.Data != "" {
				return fmt.Errorf("%w: %s: want digests (and no data)", mr.ErrMalformed, where)
			}
			seen := map[mr.Alg]bool{}
			for _, d := range e.Digests {
				if seen[d.Alg] {
					return fmt.Errorf("%w: %s: two %v digests", mr.ErrMalformed, where, d.Alg)
				}
				seen[d.Alg] = true
			}
		}
	}
	return nil
}

func bootRegisterName(name string) bool {
	if name == "mrtd" {
		return true
	}
	for _, p := range []struct {
		prefix string
		max    int
	}{{"pcr", 23}, {"rtmr", 3}} {
		if rest, ok := strings.CutPrefix(name, p.prefix); ok {
			var n int
			if _, err := fmt.Sscanf(rest, "%d", &n); err == nil && fmt.Sprint(n) == rest && n <= p.max {
				return true
			}
		}
	}
	return false
}

// MeasuredBootFrom builds a measured_boot section from a known-good TCG2
// or CCEL log: the events of every register (or of the registers named),
// with their digests in every bank of the log. The header record is left
// out (it is not an event of a register).
func MeasuredBootFrom(fl *tcg.Log, registers []string) (*MeasuredBootPolicy, error) {
	p := &MeasuredBootPolicy{Registers: map[string][]BootEvent{}}
	for _, e := range fl.Events {
		if fl.CryptoAgile && e.Num == 0 {
			continue
		}
		name, ok := tcg.RegisterName(fl.Format, e.Index)
		if !ok {
			return nil, fmt.Errorf("%s record %d (byte %d): register index %d: %w", fl.File, e.Num, e.Offset, e.Index, mr.ErrMalformed)
		}
		p.Registers[name] = append(p.Registers[name], bootEvent(e))
	}
	if len(registers) > 0 {
		all := p.Registers
		p.Registers = map[string][]BootEvent{}
		for _, n := range registers {
			evs, ok := all[n]
			if !ok {
				return nil, fmt.Errorf("%s: no event on %s", fl.File, n)
			}
			p.Registers[n] = evs
		}
	}
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", fl.File, err)
	}
	return p, nil
}

func bootEvent(e tcg.Event) BootEvent {
	b := BootEvent{Record: e.Num, Type: e.Type.String()}
	if b.Type == evNoAction {
		b.Data = hex.EncodeToString(e.Data)
		return b
	}
	for _, d := range e.Digests {
		b.Digests = append(b.Digests, mr.Digest{Alg: d.Alg, Bytes: append([]byte(nil), d.Bytes...)})
	}
	return b
}

// bootRecord is one event of the bundle's firmware log on a judged
// register.
type bootRecord struct {
	ev   tcg.Event
	boot BootEvent
}

// judgeMeasuredBoot judges the bundle's firmware log by the policy's
// measured_boot section (layer 4). Fail closed: a register the section
// names whose events no firmware log proved (replayed to a quoted value in
// at least one bank the section gives) fails.
func (r *run) judgeMeasuredBoot(p *MeasuredBootPolicy, l *LayerResult) error {
	logs := map[string]*tcg.Log{} // by log name, as r.explained names it
	for i := range r.b.Logs {
		lg := &r.b.Logs[i]
		c, ok := logfile.Lookup(eventlog.Format(lg.Format))
		if !ok || c.Role() != logfile.RoleFirmware {
			continue
		}
		name := logName(i, lg)
		fl, err := r.firmware(name, lg)
		if err != nil {
			return failFrom(name, err)
		}
		logs[name] = fl
	}
	names := make([]string, 0, len(p.Registers))
	for n := range p.Registers {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return compareNames(names[i], names[j]) < 0 })
	var matched [][2]int // reference record, log record, of every judged event
	var judged []string
	for _, reg := range names {
		refs := p.Registers[reg]
		logName, banks := r.bootBanks(reg)
		fl := logs[logName]
		if fl == nil || len(banks) == 0 {
			return &failError{&Failure{Record: -1, Register: reg, Reason: fmt.Sprintf("the policy's measured_boot names %s, but no firmware log of the bundle replays to a quoted value of it: its events are proven by nothing", reg)}}
		}
		var got []tcg.Event
		for _, e := range fl.Events {
			if n, _ := tcg.RegisterName(fl.Format, e.Index); n == reg && !(fl.CryptoAgile && e.Num == 0) {
				got = append(got, e)
			}
		}
		if err := judgeBootRegister(logName, reg, banks, refs, got); err != nil {
			return err
		}
		for i, e := range got {
			matched = append(matched, [2]int{refs[i].Record, e.Num})
		}
		judged = append(judged, fmt.Sprintf("%s (%d events, %s)", reg, len(got), algList(banks)))
	}
	l.Checked = append(l.Checked, "measured_boot: the firmware events of "+strings.Join(judged, ", ")+" are the reference's, in its order")
	if why := interleaving(matched); why != "" {
		l.Checked = append(l.Checked, why)
	}
	for _, fl := range logs {
		var other []string
		seen := map[string]bool{}
		for _, e := range fl.Events {
			n, _ := tcg.RegisterName(fl.Format, e.Index)
			if _, ok := p.Registers[n]; !ok && !seen[n] && !(fl.CryptoAgile && e.Num == 0) {
				seen[n] = true
				other = append(other, n)
			}
		}
		if len(other) > 0 {
			sort.Slice(other, func(i, j int) bool { return compareNames(other[i], other[j]) < 0 })
			l.NotChecked = append(l.NotChecked, fmt.Sprintf("measured_boot: the events of %s in %s are not named by the policy, not judged", strings.Join(other, ", "), fl.File))
		}
	}
	return nil
}

// bootBanks returns the firmware log that layer 1 replayed to a quoted
// value of reg, and the banks it did so in.
func (r *run) bootBanks(reg string) (string, []mr.Alg) {
	var name string
	var banks []mr.Alg
	for k, n := range r.explained {
		if k.name != reg || !strings.HasPrefix(n, "logs[") {
			continue
		}
		if name != "" && n != name {
			// Two logs explain one register: judge neither as "the"
			// firmware log.
			return "", nil
		}
		name = n
		banks = append(banks, k.alg)
	}
	sort.Slice(banks, func(i, j int) bool { return banks[i] < banks[j] })
	return name, banks
}

func algList(algs []mr.Alg) string {
	s := make([]string, len(algs))
	for i, a := range algs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// sameEvent reports whether a log event is the reference event, in every
// proven bank the reference gives (at least one).
func sameEvent(e tcg.Event, ref BootEvent, banks []mr.Alg) bool {
	if e.Type.String() != ref.Type {
		return false
	}
	if ref.Type == evNoAction {
		return hex.EncodeToString(e.Data) == ref.Data
	}
	n := 0
	for _, d := range ref.Digests {
		if !containsAlg(banks, d.Alg) {
			continue
		}
		got, ok := e.Digest(d.Alg)
		if !ok || !bytes.Equal(got.Bytes, d.Bytes) {
			return false
		}
		n++
	}
	return n > 0
}

func containsAlg(algs []mr.Alg, a mr.Alg) bool {
	for _, b := range algs {
		if a == b {
			return true
		}
	}
	return false
}

// describe names an event for a report: its type and its digest in the
// first proven bank (its data for EV_NO_ACTION).
func describeLog(e tcg.Event, banks []mr.Alg) string {
	return describe(bootEvent(e), banks)
}

func describe(b BootEvent, banks []mr.Alg) string {
	if b.Type == evNoAction {
		return fmt.Sprintf("%s data %s", b.Type, b.Data)
	}
	for _, d := range b.Digests {
		if containsAlg(banks, d.Alg) {
			return fmt.Sprintf("%s %v", b.Type, d)
		}
	}
	return b.Type + " (no digest in a proven bank)"
}

// judgeBootRegister compares one register's events with its reference.
func judgeBootRegister(logName, reg string, banks []mr.Alg, refs []BootEvent, got []tcg.Event) error {
	for i, ref := range refs {
		if ref.Type == evNoAction {
			continue
		}
		ok := false
		for _, d := range ref.Digests {
			ok = ok || containsAlg(banks, d.Alg)
		}
		if !ok {
			return &failError{&Failure{Log: logName, Record: -1, Register: reg,
				Reason: fmt.Sprintf("the policy's measured_boot event %d of %s has no digest in a bank the evidence proves (%s): it cannot be judged", i, reg, algList(banks))}}
		}
	}
	at := func(e tcg.Event, reason string, exp string) error {
		return &failError{&Failure{Log: logName, Record: e.Num, Offset: e.Offset, Register: reg, Expected: exp, Computed: describeLog(e, banks), Reason: reason}}
	}
	first := -1
	for i := 0; i < len(refs) && i < len(got); i++ {
		if !sameEvent(got[i], refs[i], banks) {
			first = i
			break
		}
	}
	if first < 0 {
		switch {
		case len(got) > len(refs):
			e := got[len(refs)]
			return at(e, fmt.Sprintf("%s record %d on %s (%s) is not an allowed event: the policy allows %d events on %s", logName, e.Num, reg, describeLog(e, banks), len(refs), reg), "")
		case len(got) < len(refs):
			return &failError{&Failure{Log: logName, Record: -1, Register: reg, Expected: describe(refs[len(got)], banks),
				Reason: fmt.Sprintf("%s holds %d events on %s, the policy %d: its event %d (%s, reference record %d) is missing", logName, len(got), reg, len(refs), len(got), describe(refs[len(got)], banks), refs[len(got)].Record)}}
		}
		return nil
	}
	// Tell a changed event from the allowed events in another order: name
	// the first event that is none of the allowed ones.
	used := make([]bool, len(refs))
	for _, e := range got {
		k := -1
		for j, ref := range refs {
			if !used[j] && sameEvent(e, ref, banks) {
				k = j
				break
			}
		}
		if k < 0 {
			exp := ""
			if i := indexOf(got, e); i < len(refs) {
				exp = describe(refs[i], banks)
			}
			return at(e, fmt.Sprintf("%s record %d on %s (%s) is not an event the policy allows there (a changed or added firmware event)", logName, e.Num, reg, describeLog(e, banks)), exp)
		}
		used[k] = true
	}
	if len(got) != len(refs) {
		return &failError{&Failure{Log: logName, Record: -1, Register: reg,
			Reason: fmt.Sprintf("%s holds %d events on %s, all allowed, the policy %d", logName, len(got), reg, len(refs))}}
	}
	e, ref := got[first], refs[first]
	k := -1
	for j := range refs {
		if j != first && sameEvent(e, refs[j], banks) {
			k = j
			break
		}
	}
	return at(e, fmt.Sprintf("%s: the log holds the allowed events in another order: record %d (%s) is the policy's event %d (reference record %d), where the policy has its event %d (%s, reference record %d); the events of a register are extended in order, so its value is not the reference's",
		reg, e.Num, describeLog(e, banks), k, refs[max(k, 0)].Record, first, describe(ref, banks), ref.Record), describe(ref, banks))
}

func indexOf(evs []tcg.Event, e tcg.Event) int {
	for i := range evs {
		if evs[i].Num == e.Num {
			return i
		}
	}
	return -1
}

// interleaving explains a log whose registers' events are each in the
// reference's order but interleave differently: each value is the
// reference's. It returns "" when the order is the reference's (or the
// reference gives no record numbers).
func interleaving(m [][2]int) string {
	sort.Slice(m, func(i, j int) bool { return m[i][1] < m[j][1] })
	var moved []string
	last := -1
	for _, p := range m {
		if p[0] == 0 {
			return ""
		}
		if p[0] < last {
			moved = append(moved, fmt.Sprintf("record %d is the reference's record %d", p[1], p[0]))
		}
		last = max(last, p[0])
	}
	if len(moved) == 0 {
		return ""
	}
	if len(moved) > 5 {
		moved = append(moved[:5], fmt.Sprintf("%d more", len(moved)-5))
	}
	return "measured_boot: the log interleaves the registers' events in another order than the reference (" + strings.Join(moved, "; ") +
		", measured after events of other registers that the reference has after it): each register's events are the allowed ones in the reference's order, so every value is the reference's"
}
