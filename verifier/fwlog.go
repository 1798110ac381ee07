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

// bundleLogFormats are the log formats a bundle may carry (docs/bundle.md):
// each is replayed by the verifier. Any other name, a misspelling ("CCEL"),
// "auto" or none, is unusable input: a log the verifier does not read must
// never ride along next to a TRUSTED verdict.
var bundleLogFormats = map[eventlog.Format]bool{
	eventlog.FormatTCG2: true, eventlog.FormatCCEL: true,
	eventlog.FormatRuntime: true, eventlog.FormatAAELText: true,
	eventlog.FormatIMABinary: true, eventlog.FormatIMAASCII: true,
	eventlog.FormatDstackJSON: true,
	eventlog.FormatCELJSON:    true, eventlog.FormatCELTLV: true,
}

// checkLogFormats refuses a bundle holding a log in a format the bundle
// specification does not define.
func checkLogFormats(b *bundle.Bundle) error {
	for i := range b.Logs {
		if err := logFormatError(i, &b.Logs[i]); err != nil {
			return err
		}
	}
	return nil
}

func logFormatError(i int, lg *bundle.Log) error {
	if bundleLogFormats[eventlog.Format(lg.Format)] {
		return nil
	}
	return fmt.Errorf("%w: logs[%d]: format %q is not a bundle log format (tcg2, ccel, runtime, aael-text, ima-binary, ima-ascii, dstack-json, cel-json, cel-tlv)",
		mr.ErrMalformed, i, lg.Format)
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

// celLog replays a CEL-JSON or CEL-TLV log through eventlog/logfile (as `ccmr
// log replay` does) and requires every register it extends to be in the
// evidence and equal to the replay. Registers with a runtime log are not
// skipped: a CEL log must hold a register's whole history.
func (r *run) celLog(ctx context.Context, name string, lg *bundle.Log, l *LayerResult) error {
	f := eventlog.Format(lg.Format)
	var banks []mr.Alg
	unchecked := 0
	switch f {
	case eventlog.FormatCELJSON:
		rd := cel.NewRuntimeReader(lg.Open(0), name)
		for {
			e, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return failFrom(name, err)
			}
			if e.Index == 0 && !e.Init.IsZero() && len(bytes.Trim(e.Init.Bytes, "\x00")) > 0 {
				return &failError{&Failure{Log: name, Record: 0, Offset: e.Offset, Computed: e.Init.String(),
					Reason: "a CEL-JSON log starting from an INIT value: the history before it is proven by nothing (give the runtime log and its segments as format runtime)"}}
			}
			if e.Foreign {
				unchecked++
			}
			if len(banks) == 0 {
				banks = []mr.Alg{e.Digest.Alg}
			}
		}
	case eventlog.FormatCELTLV:
		rd := cel.NewTLVReader(lg.Open(0), name)
		for {
			rec, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return failFrom(name, err)
			}
			if rec.Index == 0 {
				for _, d := range rec.Digests {
					banks = append(banks, d.Alg)
				}
			}
			if rec.ContentType != cel.TLVCOSEvent {
				unchecked++
			}
		}
	default:
		return fmt.Errorf("%s: %w: format %q is not a CEL log", name, mr.ErrMalformed, lg.Format)
	}
	if len(banks) == 0 {
		return &failError{&Failure{Log: name, Record: -1, Reason: "the CEL log holds no record: it proves nothing"}}
	}
	data, err := lg.Bytes()
	if err != nil {
		return failFrom(name, err)
	}
	res := &eventlog.Replay{}
	for _, a := range banks {
		one, err := logfile.FromBytes(name, data, f).Replay(ctx, logfile.Options{Format: f, Banks: []mr.Alg{a}, TPM: r.b.Platform == mr.PlatformTPM})
		if err != nil {
			return failFrom(name, err)
		}
		res.Events = one.Events
		res.Registers = append(res.Registers, one.Registers...)
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
	if unchecked > 0 {
		l.NotChecked = append(l.NotChecked, fmt.Sprintf("%s: the content of %d records is not checked against their digests", name, unchecked))
	}
	return nil
}
