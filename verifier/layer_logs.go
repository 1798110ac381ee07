package verifier

import (
	"context"
	"fmt"
	"strings"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/logfile"
	"github.com/ccmr-dev/ccmr/eventlog/tcg"
	"github.com/ccmr-dev/ccmr/mr"
)

// ---- layer 1: firmware and runtime logs --------------------------------

func (r *run) logs(ctx context.Context, l *LayerResult) error {
	runtimeRegs := r.runtimeRegs()
	us, err := r.newUserspaceJoin(ctx, runtimeRegs)
	if err != nil {
		return err
	}
	chains := map[string][]segment{}
	var order []string
	for i := range r.b.Logs {
		lg := &r.b.Logs[i]
		name := logName(i, lg)
		c, err := logCodec(i, lg)
		if err != nil {
			return err // unusable input: a log nothing reads never rides along
		}
		switch c.Role() {
		case logfile.RoleFirmware:
			if err := r.firmwareLog(name, lg, runtimeRegs, us, l); err != nil {
				return err
			}
		case logfile.RoleRuntime:
			if lg.Register == "" {
				return fail("%s: runtime log names no backing register", name)
			}
			if chains[lg.Register] == nil {
				order = append(order, lg.Register)
			}
			chains[lg.Register] = append(chains[lg.Register], segment{name: name, log: lg})
		case logfile.RoleIMA:
			if err := r.addIMALog(lg); err != nil {
				return err
			}
		case logfile.RoleUserspace:
			// replayed after every firmware log (us.replay), from where
			// they leave the registers both extend
		case logfile.RoleWhole:
			if err := r.wholeLog(ctx, name, lg, runtimeRegs, l); err != nil {
				return err
			}
		default:
			return fail("%s: format %s has role %d, which the verifier does not judge", name, lg.Format, c.Role())
		}
	}
	if us != nil {
		if err := us.replay(ctx, r, l); err != nil {
			return err
		}
	}
	for _, reg := range order {
		if err := r.runtimeChain(reg, chains[reg], l); err != nil {
			return err
		}
	}
	if len(l.Checked) == 0 {
		l.NotChecked = append(l.NotChecked, "no firmware or runtime log in the bundle")
	}
	return r.coverage(l)
}

func logName(i int, lg *bundle.Log) string {
	n := fmt.Sprintf("logs[%d] (%s", i, lg.Format)
	if lg.Register != "" {
		n += " on " + lg.Register
	}
	return n + ")"
}

func (r *run) firmwareLog(name string, lg *bundle.Log, runtimeRegs map[regKey]bool, us *userspaceJoin, l *LayerResult) error {
	fl, err := r.firmware(name, lg)
	if err != nil {
		return failFrom(name, err)
	}
	if err := us.finished(name, fl); err != nil {
		return err
	}
	// A record without a digest for a declared bank makes Replay leave the
	// bank out: refuse the log rather than compare what remains. This rule
	// is the verifier's only: `ccmr log replay` reads real logs that lack a
	// bank's digest in some records (tpm2-tools' test vectors) and fails
	// only an --expect in that bank.
	if rec, bank, ok, err := fl.MissingDigest(); err != nil {
		return failFrom(name, err)
	} else if ok {
		return &failError{&Failure{Log: name, Record: rec, Offset: fl.Events[rec].Offset,
			Reason: fmt.Sprintf("record %d carries no %v digest, a bank the log declares: the bank cannot be replayed", rec, bank)}}
	}
	if err := r.firmwareData(name, fl, l); err != nil {
		return err
	}
	// A second EV_SEPARATOR on a register lets firmware measure more
	// after it declared the pre-OS phase over; refuse it unless the
	// policy accepts it. Other problems (event data that does not hash to
	// its digest) do not change the replay, which uses the digests.
	for ev := range fl.Show() {
		for _, p := range ev.Problems {
			if strings.HasPrefix(p, "duplicate EV_SEPARATOR") {
				if r.opts.Policy == nil || !r.opts.Policy.AllowDuplicateSeparator {
					return &failError{&Failure{Log: name, Record: ev.Index, Offset: ev.Offset, Register: ev.Register,
						Reason: p + " (a policy may allow it with allow_duplicate_separator)"}}
				}
				l.NotChecked = append(l.NotChecked, fmt.Sprintf("%s record %d: %s, allowed by the policy", name, ev.Index, p))
			} else {
				l.NotChecked = append(l.NotChecked, fmt.Sprintf("%s record %d: %s", name, ev.Index, p))
			}
		}
	}
	seen := map[string]bool{}
	for i := range fl.Events {
		e := &fl.Events[i]
		reg, _ := tcg.RegisterName(fl.Format, e.Index)
		if e.Type == tcg.EvNoAction || seen[reg] {
			continue
		}
		seen[reg] = true
		if err := r.resettableLog(name, reg, e.Num, e.Offset, l); err != nil {
			return err
		}
	}
	res, err := fl.Replay()
	if err != nil {
		return failFrom(name, err)
	}
	return r.compareReplay(name, res, firmwareCounts(fl), runtimeRegs, firmwareStartProblems(name, eventlog.Format(lg.Format), fl, runtimeRegs), us, l)
}

// compareReplay compares every register a log's replay gives with its
// trusted value. A register with a runtime log of its own (in the bank of
// that log) is where the runtime log must start: runtimeChain compares it.
// counts are the log's events per register, for the report of what is not
// checked. unproven marks the registers whose replay does not prove the
// runtime log's start (firmwareStartProblems). A register systemd's log
// also extends is handed over to it (us: the joint replay compares it). A
// log whose replay checks no quoted register proves nothing and fails.
func (r *run) compareReplay(name string, res *eventlog.Replay, counts map[string]int, runtimeRegs map[regKey]bool, unproven map[string]chainStart, us *userspaceJoin, l *LayerResult) error {
	n, starts := 0, 0
	var absent []mr.Value // registers and banks the evidence does not cover
	handed := 0
	for _, v := range res.Registers {
		k := regKey{v.Register.Name, v.Digest.Alg}
		if us.handsOver(name, v) {
			handed++
			continue
		}
		if runtimeRegs[k] {
			cs := unproven[k.name]
			cs.value, cs.from = v.Digest, name
			if err := r.setStart(k, cs); err != nil {
				return err
			}
			r.explain(k, name)
			starts++
			continue
		}
		want, ok := r.trusted[k]
		if !ok {
			absent = append(absent, v)
			continue
		}
		if !want.Equal(v.Digest) {
			return &failError{&Failure{Log: name, Record: -1, Register: v.Register.Name, Expected: want.String(), Computed: v.Digest.String(),
				Reason: fmt.Sprintf("replay of %s does not give the quoted %s", name, v.Register.Name)}}
		}
		r.explain(k, name)
		n++
	}
	if n+starts+handed == 0 {
		return &failError{&Failure{Log: name, Record: -1,
			Reason: fmt.Sprintf("%s: its %d events replay to no quoted register value: the log proves nothing", name, res.Events)}}
	}
	if err := r.uncovered(name, absent, counts, runtimeRegs, l); err != nil {
		return err
	}
	msg := fmt.Sprintf("%s: %d events replay to %d quoted register values", name, res.Events, n)
	if starts > 0 {
		msg += fmt.Sprintf(" and to the start of %d runtime logs", starts)
	}
	if handed > 0 {
		msg += fmt.Sprintf(" and to where %s starts on %d register values", us.name, handed)
	}
	l.Checked = append(l.Checked, msg)
	return nil
}
