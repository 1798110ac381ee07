package ear_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/bundle/importer"
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
	// The same verdict had a TCB status below UpToDate been allowed (the
	// line verifier/hardware.go's tcbStatus adds; no corpus quote has
	// such a status): genuine hardware with known vulnerabilities.
	allowed := *rep
	allowed.Weakened = append(append([]string(nil), rep.Weakened...), "TDX TCB status OutOfDate allowed (--allow-tcb or the policy), advisories INTEL-SA-00837")
	if _, a := appraisal(t, b, &allowed, opts); a.Status != ear.StatusWarning || a.TrustVector.Hardware != ear.UnsafeHardware {
		t.Fatalf("allowed TCB status: %q %+v", a.Status, a.TrustVector)
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

func cfile(t *testing.T, rel string) importer.File {
	t.Helper()
	return importer.File{Name: rel, Data: corpus.Read(t, rel)}
}

func importAndVerify(t *testing.T, p importer.Parts, opts verifier.Options) (*bundle.Bundle, *verifier.Report) {
	t.Helper()
	b, err := importer.Build(p)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := verifier.Verify(context.Background(), b, opts)
	if err != nil {
		t.Fatal(err)
	}
	return b, rep
}

// Trustee's az-snp-vtpm evidence (a TPM quote whose AK an Azure HCL report
// from an SNP guest vouches for): a recognized instance, genuine hardware,
// encrypted memory, an approved configuration (the policy's snp section),
// an approved boot (the policy pins the launch measurement only), and a
// warning (judged at a given time, no AMD CRL). With another measurement
// in the policy: contraindicated executables.
func TestRealAzureSNP(t *testing.T) {
	const a = "trustee/az-snp-vtpm/"
	hcl := cfile(t, a+"hcl-report.bin")
	vcek, pcrs := cfile(t, a+"vcek.pem"), cfile(t, a+"tpm-quote-pcrs.serialized")
	p := importer.Parts{AzureHCLReport: &hcl, VCEK: &vcek,
		TPMQuotes: []importer.TPMQuote{{Attest: cfile(t, a+"tpm-quote.attest"), Signature: cfile(t, a+"tpm-quote.tpmt_signature"), PCRs: &pcrs}}}
	meas := mr.Digest{Alg: mr.SHA384, Bytes: hcl.Data[32+0x90 : 32+0x90+48]}
	snp := &verifier.SNPPolicy{Measurement: []string{hex.EncodeToString(meas.Bytes)}}
	opts := verifier.Options{At: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), AzureHCL: true,
		Policy: &verifier.Policy{SNP: snp, Registers: map[string][]mr.Digest{"measurement": {meas}}}}
	b, rep := importAndVerify(t, p, opts)
	if !rep.Trusted || rep.Platform != "tpm" {
		t.Fatalf("verdict %q platform %s", rep.Verdict, rep.Platform)
	}
	_, ap := appraisal(t, b, rep, opts)
	want := ear.TrustVector{InstanceIdentity: ear.Affirming, Hardware: ear.Affirming, RuntimeOpaque: ear.Affirming,
		Configuration: ear.Affirming, Executables: ear.ApprovedBoot}
	if ap.Status != ear.StatusWarning || ap.TrustVector != want {
		t.Fatalf("status %q vector %+v, want warning %+v", ap.Status, ap.TrustVector, want)
	}

	opts.Policy = &verifier.Policy{SNP: snp, Registers: map[string][]mr.Digest{"measurement": {{Alg: mr.SHA384, Bytes: make([]byte, 48)}}}}
	b, rep = importAndVerify(t, p, opts)
	if rep.Trusted || rep.FailedLayer() != verifier.LayerPolicy {
		t.Fatalf("another measurement: %q, failed layer %d", rep.Verdict, rep.FailedLayer())
	}
	_, ap = appraisal(t, b, rep, opts)
	if ap.Status != ear.StatusContraindicated || ap.TrustVector.Executables != ear.Contraindicated || ap.TrustVector.Hardware != ear.Affirming {
		t.Fatalf("another measurement: status %q vector %+v", ap.Status, ap.TrustVector)
	}
}

// Keylime's TPM quote with its pinned AK: a recognized instance and no
// hardware or memory claim (a TPM alone proves neither).
func TestRealTPMQuote(t *testing.T) {
	pcrs := cfile(t, "keylime/quotepcr.out")
	ak := cfile(t, "keylime/ak.pub")
	p := importer.Parts{AK: &ak, TPMQuotes: []importer.TPMQuote{{Attest: cfile(t, "keylime/quote.out"), Signature: cfile(t, "keylime/quotesig.out"), PCRs: &pcrs}}}
	opts := verifier.Options{TrustedKeys: [][]byte{corpus.Read(t, "keylime/akpub.pem")}}
	b, rep := importAndVerify(t, p, opts)
	if !rep.Trusted {
		t.Fatalf("verdict %q", rep.Verdict)
	}
	_, ap := appraisal(t, b, rep, opts)
	if want := (ear.TrustVector{InstanceIdentity: ear.Affirming}); ap.TrustVector != want {
		t.Fatalf("vector %+v, want %+v", ap.TrustVector, want)
	}
}
