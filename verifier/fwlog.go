package verifier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

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
		return r.compareReplay(name, res, sv.counts, runtimeRegs, nil, l)
	}
	for _, v := range res.Registers {
		if _, ok := r.trusted[regKey{v.Register.Name, v.Digest.Alg}]; !ok {
			return &failError{&Failure{Log: name, Record: -1, Register: v.Register.Name, Computed: v.Digest.String(),
				Reason: fmt.Sprintf("the CEL log extends %s (%v), which the evidence does not cover: its events are proven by nothing", v.Register.Name, v.Digest.Alg)}}
		}
	}
	if err := r.compareReplay(name, res, nil, nil, nil, l); err != nil {
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
