package verifier

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/logfile"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tdxverify"
)

// A dstack log that stays where it is (bundle.Log.Attach, as a member of a
// streamed bundle; Data is nil) is read through its codec like one held in
// memory. It was read from Data, which such a log does not fill: the log
// replayed to nothing and the bundle failed.
func TestDstackLogReadThroughOpen(t *testing.T) {
	quote := corpusFile(t, "dstack/simulator-quote.bin")
	ev := corpusFile(t, "dstack/simulator-eventlog.json")
	qr, err := tdxverify.ParseQuote(quote)
	if err != nil {
		t.Fatal(err)
	}
	nonce := qr.Body.ReportData[:]
	mk := func(l []byte) *bundle.Bundle {
		lg := bundle.Log{Format: "dstack-json"}
		lg.Attach(bytes.NewReader(l), int64(len(l)))
		return &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTDX, Nonce: nonce, Evidence: bundle.Evidence{Report: quote},
			Logs: []bundle.Log{lg}}
	}
	o := Options{At: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), Nonce: nonce, AllowMissingCollateral: true}
	rep, err := Verify(context.Background(), mk(ev), o)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Trusted || !strings.Contains(strings.Join(rep.Layers[1].Checked, "\n"), "replay to 4 quoted register") {
		t.Fatalf("attached dstack log:\n%s", reportText(rep))
	}
	bad := []byte(strings.Replace(string(ev), `"event":"compose-hash"`, `"event":"compose-hasx"`, 1))
	rep, _ = Verify(context.Background(), mk(bad), o)
	if rep.Trusted || rep.FailedLayer() != 1 || !strings.Contains(rep.Layers[1].Failure.Reason, "compose-hasx") {
		t.Fatalf("tampered attached dstack log:\n%s", reportText(rep))
	}
}

// Every format the registry holds is one a bundle may carry and one layer 1
// judges: no format is read by `ccmr log replay` and skipped by verify.
func TestEveryRegisteredFormatIsJudged(t *testing.T) {
	for i, f := range logfile.Formats() {
		lg := &bundle.Log{Format: string(f)}
		c, err := logCodec(i, lg)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		switch c.Role() {
		case logfile.RoleFirmware, logfile.RoleRuntime, logfile.RoleIMA, logfile.RoleWhole, logfile.RoleUserspace:
		default:
			t.Errorf("%s: role %d, which layer 1 does not judge", f, c.Role())
		}
	}
	for _, f := range []eventlog.Format{eventlog.FormatAuto, "CCEL", "", "tcg"} {
		if _, err := logCodec(0, &bundle.Log{Format: string(f)}); err == nil {
			t.Errorf("format %q accepted in a bundle", f)
		}
	}
}

// An empty CEL-TLV or dstack log proves nothing: it fails layer 1.
func TestEmptyWholeLogFails(t *testing.T) {
	quote := corpusFile(t, "dstack/simulator-quote.bin")
	qr, err := tdxverify.ParseQuote(quote)
	if err != nil {
		t.Fatal(err)
	}
	nonce := qr.Body.ReportData[:]
	o := Options{At: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), Nonce: nonce, AllowMissingCollateral: true}
	for _, c := range []struct{ format, data string }{{"dstack-json", "[]"}, {"cel-tlv", ""}, {"cel-json", ""}} {
		b := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTDX, Nonce: nonce, Evidence: bundle.Evidence{Report: quote},
			Logs: []bundle.Log{{Format: c.format, Data: []byte(c.data)}}}
		rep, _ := Verify(context.Background(), b, o)
		if rep == nil || rep.Trusted || rep.FailedLayer() != 1 || !strings.Contains(rep.Layers[1].Failure.Reason, "proves nothing") {
			t.Fatalf("empty %s log:\n%s", c.format, reportText(rep))
		}
	}
}
