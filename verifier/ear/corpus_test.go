package ear_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier"
	"github.com/ccmr-dev/ccmr/verifier/ear"
)

// The corpus's real TDX quote with its Intel collateral, judged at a time
// inside the collateral's validity: genuine hardware with encrypted
// memory, no instance identity (a TDX key is the platform's), approved
// run time (the policy pins rtmr3), and a warning, since a verdict at a
// given time is weakened. The quote with a body byte changed fails
// layer 0: contraindicated, hardware's cryptographic validation failed.
func TestRealTDXQuote(t *testing.T) {
	quote := corpus.Read(t, "dcap-qvl/tdx_quote")
	coll := corpus.Read(t, "dcap-qvl/tdx_quote_collateral.json")
	var exp map[string]json.RawMessage
	if err := json.Unmarshal(corpus.Read(t, "dcap-qvl/EXPECTED.json"), &exp); err != nil {
		t.Fatal(err)
	}
	var e map[string]any
	if err := json.Unmarshal(exp["tdx_quote"], &e); err != nil {
		t.Fatal(err)
	}
	nonce, err := hex.DecodeString(e["report_data"].(string))
	if err != nil {
		t.Fatal(err)
	}
	rtmr3, err := mr.ParseHex(mr.SHA384, e["rtmr3"].(string))
	if err != nil {
		t.Fatal(err)
	}
	mk := func(q []byte) *bundle.Bundle {
		return &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTDX, Nonce: nonce,
			Evidence: bundle.Evidence{Report: q}, Collateral: &bundle.Collateral{TDX: json.RawMessage(coll)}}
	}
	opts := verifier.Options{At: time.Date(2025, 7, 10, 0, 0, 0, 0, time.UTC), Nonce: nonce,
		Policy: &verifier.Policy{Registers: map[string][]mr.Digest{"rtmr3": {rtmr3}}}}
	b := mk(quote)
	rep, err := verifier.Verify(context.Background(), b, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Trusted || len(rep.Weakened) == 0 {
		t.Fatalf("verdict %q, want a weakened TRUSTED", rep.Verdict)
	}
	res, a := appraisal(t, b, rep, opts)
	want := ear.TrustVector{Hardware: ear.Affirming, RuntimeOpaque: ear.Affirming, Executables: ear.Affirming}
	if a.Status != ear.StatusWarning || a.TrustVector != want {
		t.Fatalf("status %q vector %+v, want warning %+v", a.Status, a.TrustVector, want)
	}
	if res.Nonce != base64.RawURLEncoding.EncodeToString(nonce) || len(nonce) != 64 {
		t.Fatalf("eat_nonce %q", res.Nonce)
	}

	bad := append([]byte(nil), quote...)
	bad[48+200] ^= 1
	b = mk(bad)
	rep, err = verifier.Verify(context.Background(), b, opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Trusted {
		t.Fatal("changed quote trusted")
	}
	res, a = appraisal(t, b, rep, opts)
	if want := (ear.TrustVector{Hardware: ear.CryptoFailed}); a.Status != ear.StatusContraindicated || a.TrustVector != want || res.Nonce != "" {
		t.Fatalf("changed quote: status %q vector %+v nonce %q", a.Status, a.TrustVector, res.Nonce)
	}
}
