package verifier

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/tcg"
	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tdxverify"
)

func corpusFile(t *testing.T, rel string) []byte {
	t.Helper()
	return corpus.Read(t, rel)
}

// The real TDX v4 quote of the corpus (dcap-qvl) verifies offline with its
// Intel collateral at 2025-07-10, and its registers are the published ones;
// the same quote with one byte changed is rejected at layer 0.
func TestRealTDXQuote(t *testing.T) {
	quote := corpusFile(t, "dcap-qvl/tdx_quote")
	coll := corpusFile(t, "dcap-qvl/tdx_quote_collateral.json")
	var exp map[string]json.RawMessage
	if err := json.Unmarshal(corpusFile(t, "dcap-qvl/EXPECTED.json"), &exp); err != nil {
		t.Fatal(err)
	}
	var e map[string]any
	if err := json.Unmarshal(exp["tdx_quote"], &e); err != nil {
		t.Fatal(err)
	}
	nonce, _ := hex.DecodeString(e["report_data"].(string))
	mk := func(q []byte) *bundle.Bundle {
		return &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTDX, Nonce: nonce,
			Evidence: bundle.Evidence{Report: q}, Collateral: &bundle.Collateral{TDX: json.RawMessage(coll)}}
	}
	at := time.Date(2025, 7, 10, 0, 0, 0, 0, time.UTC)
	var want []mr.Value
	for _, r := range []string{"mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3"} {
		d, err := mr.ParseHex(mr.SHA384, e[r].(string))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, mr.Value{Register: mr.Register{Name: r}, Digest: d})
	}
	pol := &Policy{Registers: map[string][]mr.Digest{}}
	for _, w := range want {
		pol.Registers[w.Register.Name] = []mr.Digest{w.Digest}
	}
	rep, err := Verify(context.Background(), mk(quote), Options{At: at, Nonce: nonce, Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Trusted {
		t.Fatalf("real TDX quote not trusted: %+v", rep.Layers[rep.FailedLayer()])
	}
	bad := append([]byte(nil), quote...)
	bad[48+200] ^= 1 // a byte of the TD report body (inside MRTD's neighbourhood)
	rep, err = Verify(context.Background(), mk(bad), Options{At: at, Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Trusted || rep.FailedLayer() != 0 {
		t.Fatalf("changed quote: trusted=%v failed layer %d", rep.Trusted, rep.FailedLayer())
	}
	// After the collateral's nextUpdate: not trusted.
	rep, _ = Verify(context.Background(), mk(quote), Options{At: time.Date(2025, 8, 1, 0, 0, 0, 0, time.UTC), Nonce: nonce})
	if rep.Trusted || rep.FailedLayer() != 0 {
		t.Fatal("quote trusted after its collateral expired")
	}
	// Another nonce: not trusted.
	rep, _ = Verify(context.Background(), mk(quote), Options{At: at, Nonce: []byte("other")})
	if rep.Trusted || !strings.Contains(rep.Layers[0].Failure.Reason, "nonce") {
		t.Fatal("quote trusted with another nonce")
	}
}

// The real SNP report of go-sev-guest with its VCEK: trusted; a changed
// report_data byte: not trusted.
func TestRealSNPReport(t *testing.T) {
	report := corpusFile(t, "go-sev-guest/attestation.bin")
	vcek := corpusFile(t, "go-sev-guest/vcek.testcer")
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	rd := report[0x50 : 0x50+64]
	mk := func(r []byte) *bundle.Bundle {
		return &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformSNP, Nonce: rd, Evidence: bundle.Evidence{Report: r, Certificates: [][]byte{vcek}}}
	}
	// The report's guest policy allows debugging (bit 19): refused by
	// default, trusted when the policy accepts it (issue 15 item 6).
	rep, err := Verify(context.Background(), mk(report), Options{At: at})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Trusted || !strings.Contains(rep.Layers[0].Failure.Reason, "debugging") {
		t.Fatalf("debug SNP guest trusted by default:\n%s", reportText(rep))
	}
	rep, err = Verify(context.Background(), mk(report), Options{At: at, Policy: &Policy{SNP: &SNPPolicy{AllowDebug: true}}})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Trusted {
		t.Fatalf("real SNP report not trusted: %+v", rep.Layers[rep.FailedLayer()])
	}
	bad := append([]byte(nil), report...)
	bad[0x50] ^= 1
	rep, _ = Verify(context.Background(), &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformSNP, Nonce: bad[0x50 : 0x50+64],
		Evidence: bundle.Evidence{Report: bad, Certificates: [][]byte{vcek}}}, Options{At: at, Policy: &Policy{SNP: &SNPPolicy{AllowDebug: true}}})
	if rep.Trusted || rep.FailedLayer() != 0 {
		t.Fatal("SNP report with a changed report_data byte trusted")
	}
}

// A real TDX quote (dcap-qvl's quote-from-tappd) with a CCEL from the same
// dstack deployment: the CCEL's RTMR0 events replay to the quote's RTMR0.
// Its RTMR1 events are from another boot, so they are left out of the CCEL
// given here; the quote's RTMR1 is not zero, so the CCEL is then incomplete
// and fails layer 1 naming rtmr1 (it was TRUSTED before the coverage rule:
// verifier/coverage.go, TestRedteam_CCELOmitsRegisters). The corpus has no
// complete CCEL of this quote. Changing one CCEL event fails layer 1 at
// RTMR0 and names the eventlog.
func TestRealTDXQuoteWithCCEL(t *testing.T) {
	quote := corpusFile(t, "dcap-qvl/quote-from-tappd.bin")
	raw := corpusFile(t, "dstack/ccel.bin")
	l, err := tcg.Parse("ccel.bin", raw, eventlog.FormatCCEL)
	if err != nil {
		t.Fatal(err)
	}
	var ccel []byte
	for i, e := range l.Events {
		end := l.End
		if i+1 < len(l.Events) {
			end = l.Events[i+1].Offset
		}
		if i == 0 || e.Index != 2 { // the header, and every event but RTMR1's
			ccel = append(ccel, raw[e.Offset:end]...)
		}
	}
	qr, err := tdxverify.ParseQuote(quote)
	if err != nil {
		t.Fatal(err)
	}
	nonce := qr.Body.ReportData[:]
	mk := func(c []byte) *bundle.Bundle {
		return &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTDX, Nonce: nonce, Evidence: bundle.Evidence{Report: quote},
			Logs: []bundle.Log{{Format: "ccel", Data: c}}}
	}
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	// The corpus has no collateral for this quote: allowed, weakened.
	rep, err := Verify(context.Background(), mk(ccel), Options{At: at, Nonce: nonce, AllowMissingCollateral: true})
	if err != nil {
		t.Fatal(err)
	}
	mustFailLayer1(t, rep, "has no event for rtmr1 (sha384)")
	if !strings.Contains(strings.Join(rep.Layers[1].Checked, "\n"), "replay to 1 quoted register") {
		t.Fatalf("CCEL not compared with RTMR0:\n%s", reportText(rep))
	}
	// Change a digest byte of the first event after the header (it
	// precedes every left-out event, so its offset is unchanged).
	first := l.Events[1]
	if first.Index == 2 {
		t.Fatal("the first event is RTMR1's")
	}
	bad := append([]byte(nil), ccel...)
	bad[first.Offset+4+4+4+2+10] ^= 1 // index, type, count, alg, then the sha384 digest
	rep, _ = Verify(context.Background(), mk(bad), Options{At: at, Nonce: nonce, AllowMissingCollateral: true})
	if rep.Trusted || rep.FailedLayer() != 1 || !strings.Contains(rep.Layers[1].Failure.Log, "ccel") || rep.Layers[1].Failure.Register != "rtmr0" {
		t.Fatalf("changed CCEL event:\n%s", reportText(rep))
	}
}

// dstack's simulator quote with its full RTMR0..3 event log (dstack JSON):
// trusted, every RTMR proven by the log; a changed runtime event fails
// layer 1 naming it.
func TestDstackQuoteAndLog(t *testing.T) {
	quote := corpusFile(t, "dstack/simulator-quote.bin")
	ev := corpusFile(t, "dstack/simulator-eventlog.json")
	qr, err := tdxverify.ParseQuote(quote)
	if err != nil {
		t.Fatal(err)
	}
	nonce := qr.Body.ReportData[:]
	mk := func(l []byte) *bundle.Bundle {
		return &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTDX, Nonce: nonce, Evidence: bundle.Evidence{Report: quote},
			Logs: []bundle.Log{{Format: "dstack-json", Data: l}}}
	}
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	// The corpus has no collateral for this quote: allowed, weakened.
	rep, err := Verify(context.Background(), mk(ev), Options{At: at, Nonce: nonce, AllowMissingCollateral: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Trusted || !strings.Contains(strings.Join(rep.Layers[1].Checked, "\n"), "replay to 4 quoted register") {
		t.Fatalf("dstack quote + log:\n%s", reportText(rep))
	}
	bad := []byte(strings.Replace(string(ev), `"event":"compose-hash"`, `"event":"compose-hasx"`, 1))
	rep, _ = Verify(context.Background(), mk(bad), Options{At: at, Nonce: nonce, AllowMissingCollateral: true})
	if rep.Trusted || rep.FailedLayer() != 1 || !strings.Contains(rep.Layers[1].Failure.Reason, "compose-hasx") {
		t.Fatalf("tampered runtime event:\n%s", reportText(rep))
	}
}

// A CCEL with a duplicated EV_SEPARATOR (go-eventlog's COS 113 sample): the
// sim device is brought to the values the log replays to, so only the rule
// itself can fail it; it fails layer 1 naming the record, unless the policy
// allows it.
func TestDuplicateSeparator(t *testing.T) {
	ctx := context.Background()
	raw := corpusFile(t, "go-eventlog/ccel/cos-113-intel-tdx-dupe-separator.bin")
	l, err := tcg.Parse("ccel", raw, eventlog.FormatCCEL)
	if err != nil {
		t.Fatal(err)
	}
	g := newGuest(t)
	for _, e := range l.Events {
		d, ok := e.Digest(mr.SHA384)
		if !ok || e.Type == 3 || e.Index < 1 || e.Index > 4 { // EV_NO_ACTION is not extended
			continue
		}
		if err := g.dev.Extend(ctx, fmt.Sprintf("rtmr%d", e.Index-1), d); err != nil {
			t.Fatal(err)
		}
	}
	ev, err := g.dev.Attest(ctx, []byte("n"))
	if err != nil {
		t.Fatal(err)
	}
	b := bundle.New(ev, []bundle.Log{{Format: "ccel", Data: raw}}, nil)
	rep := verifyT(t, b, g.opts())
	if rep.Trusted || rep.FailedLayer() != 1 || !strings.Contains(rep.Layers[1].Failure.Reason, "duplicate EV_SEPARATOR") || rep.Layers[1].Failure.Record < 0 {
		t.Fatalf("duplicated separator:\n%s", reportText(rep))
	}
	o := g.opts()
	o.Policy = &Policy{AllowDuplicateSeparator: true}
	if rep := verifyT(t, b, o); !rep.Trusted {
		t.Fatalf("allowed by the policy:\n%s", reportText(rep))
	}
}

// The bundle a real kernel's guest made in `make e2e` (testdata/e2e): TPM
// quotes from swtpm, SeaBIOS's firmware log, the runtime log on pcr14 and the
// kernel's IMA list, whose boot_aggregate must match the quoted PCRs.
func TestRealKernelBundle(t *testing.T) {
	b := readE2EBundle(t)
	ak, nonce := e2eAKAndNonce(t)
	rep, err := Verify(context.Background(), b, Options{TrustedKeys: [][]byte{ak}, Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	text := reportText(rep)
	if !rep.Trusted || !strings.Contains(text, "boot_aggregate matches the quoted PCRs") || !strings.Contains(text, "replay to") {
		t.Fatalf("real kernel bundle:\n%s", text)
	}
}
