package verifier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/cel"
	"github.com/ccmr-dev/ccmr/eventlog/logfile"
	"github.com/ccmr-dev/ccmr/eventlog/tcg"
	"github.com/ccmr-dev/ccmr/mr"
)

// A bundle's logs are read through the registry of eventlog/logfile, the
// code `ccmr log show|replay` runs: the formats a bundle may carry
// (docs/bundle.md) are the registry's, and a codec's Role says which layer
// judges a log. Any other name, a misspelling ("CCEL"), "auto" or none, is
// unusable input: a log the verifier does not read must never ride along
// next to a TRUSTED verdict.

// checkLogFormats refuses a bundle holding a log in a format the registry
// does not hold.
func checkLogFormats(b *bundle.Bundle) error {
	for i := range b.Logs {
		if _, err := logCodec(i, &b.Logs[i]); err != nil {
			return err
		}
	}
	return nil
}

// logCodec returns the codec of a bundle's log, or the error of a format
// nothing reads.
func logCodec(i int, lg *bundle.Log) (logfile.Codec, error) {
	if c, ok := logfile.Lookup(eventlog.Format(lg.Format)); ok {
		return c, nil
	}
	return nil, fmt.Errorf("%w: logs[%d]: format %q is not a bundle log format (%s)", mr.ErrMalformed, i, lg.Format, logfile.FormatList())
}

// bundleFile reads a bundle's log through its format's codec, from the
// log's own bytes wherever they are (bundle.Log.Open).
func bundleFile(name string, lg *bundle.Log) *logfile.File {
	return logfile.FromOpener(name, func() io.Reader { return lg.Open(0) }, eventlog.Format(lg.Format))
}

// firmwareData checks a TCG2/CCEL log's event data (tcg.CheckEventData):
// an event whose data does not hash to its digest, though its type defines
// the digest so, and an EV_NO_ACTION record in no TCG-defined form fail
// layer 1. Events whose digest only the data describes are counted as not
// checked.
func (r *run) firmwareData(name string, fl *tcg.Log, l *LayerResult) error {
	dc, err := fl.CheckEventData()
	if err != nil {
		return failFrom(name, err)
	}
	l.Checked = append(l.Checked, fmt.Sprintf("%s: the data of %d events hashes to their digests", name, dc.Checked))
	if len(dc.NoAction) > 0 {
		l.Checked = append(l.Checked, fmt.Sprintf("%s: EV_NO_ACTION records in TCG-defined forms only (%s)", name, dc.NoActionText()))
	}
	n := 0
	for _, c := range dc.NotChecked {
		n += c
	}
	if n > 0 {
		l.NotChecked = append(l.NotChecked, fmt.Sprintf("%s: the data of %d events is not checked: their digest is not the hash of their data (%s)", name, n, dc.NotCheckedText()))
	}
	return nil
}

// wholeLog judges a log the registry replays by itself (RoleWhole:
// dstack-json, cel-json, cel-tlv). It is replayed through its codec, as
// `ccmr log replay` replays it, in every bank its first record carries, and
// every register it extends is compared with the evidence.
//
// Verifier-only rules, which need the evidence or judge trust rather than
// the log's own consistency:
//   - a CEL log must hold the whole history of every register it extends:
//     each must be in the evidence, registers with a runtime log are not
//     skipped, and a CEL-JSON log may not start from an INIT value;
//   - a dstack log's registers with a runtime log of their own are where
//     that log starts (dstack's JSON holds rtmr3's events before ccmr's);
//   - records whose digest is not recomputed from their content
//     (eventlog.Event.DigestOnly) are reported as not checked.
func (r *run) wholeLog(ctx context.Context, name string, lg *bundle.Log, runtimeRegs map[regKey]bool, l *LayerResult) error {
	f := eventlog.Format(lg.Format)
	if f == eventlog.FormatCELJSON {
		if err := celJSONStart(name, lg); err != nil {
			return err
		}
	}
	lf := bundleFile(name, lg)
	opts := logfile.Options{Format: f, TPM: r.b.Platform == mr.PlatformTPM}
	sv, err := surveyLog(ctx, lf, opts)
	if err != nil {
		return failFrom(name, err)
	}
	if len(sv.banks) == 0 {
		return &failError{&Failure{Log: name, Record: -1, Reason: fmt.Sprintf("the %s log holds no record: it proves nothing", f)}}
	}
	res := &eventlog.Replay{}
	for _, a := range sv.banks {
		o := opts
		o.Banks = []mr.Alg{a}
		one, err := lf.Replay(ctx, o)
		if err != nil {
			return failFrom(name, err)
		}
		res.Events = one.Events
		res.Registers = append(res.Registers, one.Registers...)
	}
	if f == eventlog.FormatDstackJSON {
		if sv.digestOnly > 0 {
			// Their digests are replayed; what the JSON says they
			// measured is not bound by them.
			l.NotChecked = append(l.NotChecked, fmt.Sprintf("%s: %d boot events on rtmr0-2 are replayed by digest only: their names and payloads are not checked (the firmware log, not dstack's JSON, holds what they hash)", name, sv.digestOnly))
		}
		return r.compareReplay(name, res, sv.counts, runtimeRegs, nil, nil, l)
	}
	regs := make([]string, 0, len(sv.counts))
	for reg := range sv.counts {
		regs = append(regs, reg)
	}
	sort.Strings(regs)
	for _, reg := range regs {
		if err := r.resettableLog(name, reg, -1, -1, l); err != nil {
			return err
		}
	}
	for _, v := range res.Registers {
		if _, ok := r.trusted[regKey{v.Register.Name, v.Digest.Alg}]; !ok {
			return &failError{&Failure{Log: name, Record: -1, Register: v.Register.Name, Computed: v.Digest.String(),
				Reason: fmt.Sprintf("the CEL log extends %s (%v), which the evidence does not cover: its events are proven by nothing", v.Register.Name, v.Digest.Alg)}}
		}
	}
	if err := r.compareReplay(name, res, nil, nil, nil, nil, l); err != nil {
		return err
	}
	if sv.digestOnly > 0 {
		l.NotChecked = append(l.NotChecked, fmt.Sprintf("%s: the content of %d records is not checked against their digests", name, sv.digestOnly))
	}
	return nil
}

// logSurvey is what a log's records say before it is replayed.
type logSurvey struct {
	banks      []mr.Alg       // the banks of the first record's digests
	counts     map[string]int // records per register
	digestOnly int            // records whose content does not give their digest
}

// surveyLog reads every record of lf through its codec.
func surveyLog(ctx context.Context, lf *logfile.File, opts logfile.Options) (*logSurvey, error) {
	sv := &logSurvey{counts: map[string]int{}}
	first := true
	err := lf.Show(ctx, opts, func(e eventlog.Event) error {
		if first {
			for _, d := range e.Digests {
				sv.banks = append(sv.banks, d.Alg)
			}
			first = false
		}
		sv.counts[e.Register]++
		if e.DigestOnly {
			sv.digestOnly++
		}
		return nil
	})
	return sv, err
}

// celJSONStart refuses a CEL-JSON log whose first record starts from a
// non-zero INIT value: the history before it is proven by nothing. (A
// runtime log may start so; its segments and the history rule prove the
// start. `ccmr log replay` replays such a log, from its INIT.)
func celJSONStart(name string, lg *bundle.Log) error {
	e, err := cel.NewRuntimeReader(lg.Open(0), name).Next()
	if errors.Is(err, io.EOF) {
		return nil // no record: wholeLog fails it
	}
	if err != nil {
		return failFrom(name, err)
	}
	if e.Index == 0 && !e.Init.IsZero() && len(bytes.Trim(e.Init.Bytes, "\x00")) > 0 {
		return &failError{&Failure{Log: name, Record: 0, Offset: e.Offset, Computed: e.Init.String(),
			Reason: "a CEL-JSON log starting from an INIT value: the history before it is proven by nothing (give the runtime log and its segments as format runtime)"}}
	}
	return nil
}

// ---- systemd's userspace log: the joint replay -------------------------

// userspaceJoin is systemd's userspace measurement log of a bundle (format
// systemd, docs/formats/systemd.md) and what the firmware logs hand it. On a
// TPM machine booted with systemd, PCR 11 gets systemd-stub's events from
// the firmware (in the TCG2 log) and then systemd-pcrphase's from
// userspace (in systemd's log), and PCR 15 gets systemd's machine-id,
// file-system and volume-key measurements. Neither log alone replays to
// the quoted PCR: the firmware log's end value of a PCR the userspace log
// also extends is where the userspace records start (systemd writes after
// boot), and the joint result must equal the quote. PCRs only the
// userspace log extends start at their reset value.
type userspaceJoin struct {
	name  string
	log   *bundle.Log
	regs  map[string]int // records per PCR (pcrN)
	first map[string]int // the first record on each PCR
	offs  map[int]int64  // record offsets, by record
	banks []mr.Alg       // the banks replayed: the first PCR record's
	start []mr.Value     // the firmware logs' end values of regs
	from  map[string]string
}

// newUserspaceJoin reads the bundle's systemd log, if any, before the
// firmware logs are replayed (they hand its PCRs over instead of comparing
// them with the quote). Two such logs, a tail of one, a log on a platform
// other than a TPM and a log extending a runtime log's backing register
// fail.
func (r *run) newUserspaceJoin(ctx context.Context, runtimeRegs map[regKey]bool) (*userspaceJoin, error) {
	var us *userspaceJoin
	for i := range r.b.Logs {
		lg := &r.b.Logs[i]
		if c, ok := logfile.Lookup(eventlog.Format(lg.Format)); !ok || c.Role() != logfile.RoleUserspace {
			continue
		}
		name := logName(i, lg)
		if us != nil {
			return nil, fail("the bundle holds two systemd logs (%s and %s)", us.name, name)
		}
		if r.b.Platform != mr.PlatformTPM {
			return nil, &failError{&Failure{Log: name, Record: -1, Reason: fmt.Sprintf("%s: systemd's log records TPM PCR extends, but the evidence is %s", name, r.b.Platform)}}
		}
		if lg.Offset != 0 {
			return nil, &failError{&Failure{Log: name, Record: -1, Offset: lg.Offset,
				Reason: fmt.Sprintf("%s is a tail (from byte %d): systemd's log is replayed whole from boot", name, lg.Offset)}}
		}
		us = &userspaceJoin{name: name, log: lg, regs: map[string]int{}, first: map[string]int{}, offs: map[int]int64{}, from: map[string]string{}}
		rd := cel.NewSystemdReader(lg.Open(0), name)
		for {
			rec, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, failFrom(name, err)
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			us.offs[rec.Index] = rec.Offset
			if rec.IsNV {
				continue
			}
			if us.banks == nil {
				for _, d := range rec.Digests {
					us.banks = append(us.banks, d.Alg)
				}
			}
			reg := rec.Register()
			if us.regs[reg] == 0 {
				us.first[reg] = rec.Index
			}
			us.regs[reg]++
		}
		for k := range runtimeRegs {
			if n := us.regs[k.name]; n > 0 {
				return nil, &failError{&Failure{Log: name, Record: us.first[k.name], Offset: us.offs[us.first[k.name]], Register: k.name,
					Reason: fmt.Sprintf("%s extends %s, the backing register of a runtime log: one register cannot carry both logs", name, k.name)}}
			}
		}
	}
	return us, nil
}

// handsOver reports whether the firmware log's value v of a register is
// the start of the userspace log's records there (a register and bank the
// userspace log replays); it records it if so. In a bank systemd did not
// extend, the firmware log's value is the register's, compared as usual.
func (us *userspaceJoin) handsOver(from string, v mr.Value) bool {
	if us == nil || us.regs[v.Register.Name] == 0 || !slices.Contains(us.banks, v.Digest.Alg) {
		return false
	}
	us.start = append(us.start, v)
	us.from[v.Register.Name] = from
	return true
}

// finished fails a userspace record on a PCR the firmware log closed with
// an EV_SEPARATOR (PCR 0-7: the pre-OS phase is over; what follows there
// is the boot loader's, in the firmware log, never systemd's): such a
// record is a firmware event moved out of the log that checks its data, or
// one made up to match a quote.
func (us *userspaceJoin) finished(name string, fl *tcg.Log) error {
	if us == nil {
		return nil
	}
	for i := range fl.Events {
		e := &fl.Events[i]
		if e.Type != tcg.EvSeparator {
			continue
		}
		reg, _ := tcg.RegisterName(fl.Format, e.Index)
		if us.regs[reg] > 0 {
			rec := us.first[reg]
			return &failError{&Failure{Log: us.name, Record: rec, Offset: us.offs[rec], Register: reg,
				Reason: fmt.Sprintf("%s has a record on %s, which %s closed with an EV_SEPARATOR (record %d): userspace does not measure there", us.name, reg, name, e.Num)}}
		}
	}
	return nil
}

// replay replays the userspace log from the firmware logs' end values (or
// the reset values) and compares every PCR it extends with the quote. A PCR
// the evidence does not hold in any bank fails (its records are proven by
// nothing); NV index records are reported as not checked.
func (us *userspaceJoin) replay(ctx context.Context, r *run, l *LayerResult) error {
	if err := us.judgeResettable(r, l); err != nil {
		return err
	}
	lf := bundleFile(us.name, us.log)
	res, err := logfile.ReplaySystemd(ctx, lf, logfile.Options{Banks: us.banks}, us.start)
	if err != nil {
		return failFrom(us.name, err)
	}
	if len(res.Registers) == 0 {
		return &failError{&Failure{Log: us.name, Record: -1,
			Reason: fmt.Sprintf("%s: its %d records extend no PCR: the log proves nothing", us.name, res.Events)}}
	}
	checked := map[string]bool{}
	var notInBank []string
	for _, v := range res.Registers {
		k := regKey{v.Register.Name, v.Digest.Alg}
		want, ok := r.trusted[k]
		if !ok {
			notInBank = append(notInBank, fmt.Sprintf("%s %v", k.name, k.alg))
			continue
		}
		what := fmt.Sprintf("replay of %s from the reset value", us.name)
		if fw := us.from[k.name]; fw != "" {
			what = fmt.Sprintf("replay of %s after %s", us.name, fw)
		}
		if !want.Equal(v.Digest) {
			return &failError{&Failure{Log: us.name, Record: -1, Register: k.name, Expected: want.String(), Computed: v.Digest.String(),
				Reason: fmt.Sprintf("%s does not give the quoted %s", what, k.name)}}
		}
		checked[k.name] = true
		r.explain(k, us.name)
	}
	for reg, n := range us.regs {
		if !checked[reg] {
			rec := us.first[reg]
			return &failError{&Failure{Log: us.name, Record: rec, Offset: us.offs[rec], Register: reg,
				Reason: fmt.Sprintf("%s has %d records on %s, which the evidence does not cover in any bank they carry: they are proven by nothing", us.name, n, reg)}}
		}
	}
	regs := make([]string, 0, len(checked))
	for reg := range checked {
		regs = append(regs, reg)
	}
	sort.Strings(regs)
	msg := fmt.Sprintf("%s: %d records replay to the quoted %s", us.name, res.Events-res.NV, strings.Join(regs, ", "))
	if len(us.from) > 0 {
		var from []string
		for _, reg := range regs {
			if fw := us.from[reg]; fw != "" {
				from = append(from, reg+" after "+fw)
			}
		}
		msg += " (" + strings.Join(from, "; ") + ")"
	}
	l.Checked = append(l.Checked, msg)
	if len(notInBank) > 0 {
		sort.Strings(notInBank)
		l.NotChecked = append(l.NotChecked, fmt.Sprintf("%s: %s not in the evidence: checked in the banks the evidence holds", us.name, strings.Join(notInBank, ", ")))
	}
	if res.NV > 0 {
		l.NotChecked = append(l.NotChecked, fmt.Sprintf("%s: %d records of NV indexes are not checked (a quote of PCRs does not cover NV indexes)", us.name, res.NV))
	}
	digestOnly := 0
	if err := lf.Show(ctx, logfile.Options{}, func(e eventlog.Event) error {
		if e.DigestOnly && !strings.HasPrefix(e.Register, "nv:") {
			digestOnly++
		}
		return nil
	}); err != nil {
		return failFrom(us.name, err)
	}
	if digestOnly > 0 {
		l.NotChecked = append(l.NotChecked, fmt.Sprintf("%s: the content of %d records is not checked against their digests (not the hash of their string: an HMAC, or no string)", us.name, digestOnly))
	}
	return nil
}

// judgeResettable applies the runtime logs' rule (history.go) to systemd's
// records on PCR 16 or 23 (resettableLog).
func (us *userspaceJoin) judgeResettable(r *run, l *LayerResult) error {
	regs := make([]string, 0, len(us.regs))
	for reg := range us.regs {
		regs = append(regs, reg)
	}
	sort.Strings(regs)
	for _, reg := range regs {
		rec := us.first[reg]
		if err := r.resettableLog(us.name, reg, rec, us.offs[rec], l); err != nil {
			return err
		}
	}
	return nil
}

// resettableLog applies the runtime logs' rule (history.go,
// judgeResettable) to a whole log (systemd's, CEL) with records on reg:
// when reg is PCR 16 or 23, which the guest can reset at locality 0 and
// extend again with only the records it keeps, a log that dropped records
// still replays to the quoted value, so it proves no history. Refused, or
// a weakened pass with Options.AcceptUnverifiedHistory.
func (r *run) resettableLog(name, reg string, rec int, off int64, l *LayerResult) error {
	if !mr.GuestResettable(reg) {
		return nil
	}
	if !r.opts.AcceptUnverifiedHistory {
		return &failError{&Failure{Log: name, Record: rec, Offset: off, Register: reg,
			Reason: fmt.Sprintf("%s has records on %s, which the guest can reset (TPM PCR 16 and 23): records dropped after a reset leave a log that still replays to the quoted value (--accept-unverified-history accepts it, weakened)", name, reg)}}
	}
	r.unjudged = true
	r.weaken(l, fmt.Sprintf("%s: %s resettable by the guest (TPM PCR 16 and 23): records dropped with a reset are never seen; the log is judged only as far as it goes", name, reg))
	return nil
}

// firmware parses a firmware log (TCG2, CCEL) once per verification: layer
// 1, the coverage check and the measured_boot policy each read it.
func (r *run) firmware(name string, lg *bundle.Log) (*tcg.Log, error) {
	if fl, ok := r.fwLogs[lg]; ok {
		return fl, nil
	}
	fl, err := logfile.ParseFirmware(bundleFile(name, lg))
	if err != nil {
		return nil, err
	}
	if r.fwLogs == nil {
		r.fwLogs = map[*bundle.Log]*tcg.Log{}
	}
	r.fwLogs[lg] = fl
	return fl, nil
}
