package verifier_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier"
	"github.com/ccmr-dev/ccmr/verifier/tdxverify"
)

// noEmptyFragments fails when the report's text holds a fragment that
// prints nothing: "[]", "()", "(advisories )", "(true)".
func noEmptyFragments(t *testing.T, what string, rep *verifier.Report) {
	t.Helper()
	s := text(rep)
	for _, bad := range []string{"[]", "()", "(advisories )", "(true)", "(false)"} {
		if strings.Contains(s, bad) {
			t.Errorf("%s: the report prints %q:\n%s", what, bad, s)
		}
	}
}

// A trusted TDX quote: no "TCB status UpToDate []"; an SNP report: one
// "reported TCB" line, not two.
func TestMessagesHardwareLines(t *testing.T) {
	q := cfile(t, "dcap-qvl/tdx_quote").Data
	qr, err := tdxverify.ParseQuote(q)
	if err != nil {
		t.Fatal(err)
	}
	nonce := qr.Body.ReportData[:]
	b := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTDX, Nonce: nonce, Evidence: bundle.Evidence{Report: q},
		Collateral: &bundle.Collateral{TDX: cfile(t, "dcap-qvl/tdx_quote_collateral.json").Data}}
	rep := hverify(t, b, verifier.Options{At: time.Date(2025, 7, 10, 0, 0, 0, 0, time.UTC), Nonce: nonce})
	if rep.Layers[0].Status != verifier.Pass {
		t.Fatalf("the corpus TDX quote fails layer 0:\n%s", text(rep))
	}
	if !strings.Contains(text(rep), "TCB status UpToDate is allowed") {
		t.Errorf("no TCB status line:\n%s", text(rep))
	}
	noEmptyFragments(t, "TDX", rep)

	sb, _, at := goSevGuest(t)
	rep = hverify(t, sb, verifier.Options{At: at, Nonce: sb.Nonce, Policy: &verifier.Policy{SNP: &verifier.SNPPolicy{AllowDebug: true}}})
	if rep.Layers[0].Status != verifier.Pass {
		t.Fatalf("the corpus SNP report fails layer 0:\n%s", text(rep))
	}
	if n := strings.Count(text(rep), "ok   reported TCB"); n != 1 {
		t.Errorf("%d lines say reported TCB, want 1:\n%s", n, text(rep))
	}
	noEmptyFragments(t, "SNP", rep)
}

// A certificate not valid at the verification time suggests --at.
func TestMessagesValiditySuggestsAt(t *testing.T) {
	sb, _, _ := goSevGuest(t)
	rep := hverify(t, sb, verifier.Options{At: time.Date(2045, 1, 1, 0, 0, 0, 0, time.UTC), Nonce: sb.Nonce})
	f := rep.Layers[0].Failure
	if f == nil || !strings.Contains(f.Reason, "expired or is not yet valid") {
		t.Fatalf("an expired VCEK is not refused for it:\n%s", text(rep))
	}
	if !strings.Contains(f.Reason, "give --at RFC3339") {
		t.Errorf("no --at hint: %s", f.Reason)
	}
	noEmptyFragments(t, "expired", rep)
	// A failure that is no matter of time gets no such hint.
	sb.Evidence.Report[0x50] ^= 1
	rep = hverify(t, sb, verifier.Options{At: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), Nonce: sb.Nonce})
	if f := rep.Layers[0].Failure; f == nil || strings.Contains(f.Reason, "--at") {
		t.Errorf("a changed report: %+v", f)
	}
}

// A failed layer's text shows the FAIL first and folds the notes on banks
// the evidence does not hold into one.
func TestMessagesFailFirst(t *testing.T) {
	rep := &verifier.Report{Bundle: "b", Platform: "tpm", Verdict: "NOT TRUSTED", Layers: []verifier.LayerResult{{
		Layer: 1, Name: "cc logs", Status: verifier.Fail,
		Checked: []string{"logs[0] (tcg2): the data of 40 events hashes to their digests"},
		NotChecked: []string{
			"logs[0] (tcg2): pcr0 sha1 is not in the evidence: its 9 events are checked in the banks the evidence holds",
			"logs[0] (tcg2): pcr1 sha1 is not in the evidence: its 5 events are checked in the banks the evidence holds",
			"logs[0] (tcg2): pcr2 sha1 is not in the evidence: its 3 events are checked in the banks the evidence holds",
			"logs[0] (tcg2): the data of 2 events is not checked",
		},
		Failure: &verifier.Failure{Log: "logs[0] (tcg2)", Record: -1, Register: "pcr4", Reason: "logs[0] (tcg2) does not replay to the quoted pcr4"},
	}}}
	s := text(rep)
	lines := strings.Split(s, "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[2], "  FAIL logs[0] (tcg2) does not replay") {
		t.Errorf("FAIL is not the layer's first line:\n%s", s)
	}
	if n := strings.Count(s, "not in the evidence"); n != 2 { // the first note and the fold
		t.Errorf("%d notes on banks not in the evidence, want the first and a count:\n%s", n, s)
	}
	if !strings.Contains(s, "and 2 more banks not in the evidence") || !strings.Contains(s, "the data of 2 events is not checked") {
		t.Errorf("fold:\n%s", s)
	}
	// A passing layer keeps each note.
	rep.Layers[0].Status, rep.Layers[0].Failure = verifier.Pass, nil
	if n := strings.Count(text(rep), "is not in the evidence"); n != 3 {
		t.Errorf("a passing layer's notes folded:\n%s", text(rep))
	}
}
