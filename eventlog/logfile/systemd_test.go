package logfile_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/eventlog/cel"
	"github.com/ccmr-dev/ccmr/eventlog/logfile"
	"github.com/ccmr-dev/ccmr/mr"
)

// systemd's log sniffs as systemd; ccmr's own CEL-JSON export (also a JSON
// text sequence) stays cel-json, and so does a systemd-shaped record with a
// member systemd does not write.
func TestSniffSystemd(t *testing.T) {
	real, err := os.ReadFile("../cel/testdata/systemd-257-pcrextend.log")
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := logfile.Sniff(real); !ok || f != eventlog.FormatSystemd {
		t.Errorf("systemd's log sniffed as %q %v", f, ok)
	}
	e := &aael.Entry{MRIndex: 3, Digest: mr.SHA384.Sum([]byte("x")), Type: aael.EvNoAction, Init: mr.Zero(mr.SHA384)}
	var js bytes.Buffer
	rec, err := cel.RuntimeRecord(e)
	if err != nil {
		t.Fatal(err)
	}
	w := cel.NewWriter(&js, cel.Seq)
	w.Write(rec)
	w.Close()
	if f, ok := logfile.Sniff(js.Bytes()); !ok || f != eventlog.FormatCELJSON {
		t.Errorf("a CEL-JSON export sniffed as %q %v", f, ok)
	}
	withRecnum := bytes.Replace(real, []byte(`{"pcr":11,`), []byte(`{"recnum":0,"pcr":11,`), 1)
	if f, _ := logfile.Sniff(withRecnum); f == eventlog.FormatSystemd {
		t.Error("a record with recnum sniffed as systemd's")
	}
}

// Show lists every record and flags one that lacks a bank the first record
// has; Replay refuses that log, naming the record.
func TestSystemdShowFlagsMissingBank(t *testing.T) {
	real, _ := os.ReadFile("../cel/testdata/systemd-257-pcrextend.log")
	first := real[:bytes.IndexByte(real, '\n')+1]
	sha1Only := bytes.Replace(first, first[bytes.Index(first, []byte(`{"hashAlg":"sha256"`)):bytes.Index(first, []byte(`{"hashAlg":"sha1"`))], nil, 1)
	lf := logfile.FromBytes("mixed", append(append([]byte(nil), first...), sha1Only...), eventlog.FormatSystemd)
	var evs []eventlog.Event
	if err := lf.Show(context.Background(), logfile.Options{}, func(e eventlog.Event) error { evs = append(evs, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || len(evs[0].Problems) != 0 || len(evs[1].Problems) != 1 || !strings.Contains(evs[1].Problems[0], "no sha256 digest") {
		t.Fatalf("events %+v", evs)
	}
	_, err := lf.Replay(context.Background(), logfile.Options{})
	var le *eventlog.Error
	if !errors.As(err, &le) || le.Record != 1 || le.Offset != int64(len(first)) {
		t.Fatalf("replay: %v", err)
	}
}
