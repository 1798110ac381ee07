package main

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/verifier/tdxverify"
)

// Conformance through the CLI: real evidence made by other tools (public
// corpus, read in place) goes through `ccmr evidence import` and `ccmr
// verify`, and every TPM case is checked by tpm2_checkquote too, which must
// agree. Where the AK must be pinned (GCE, Windows, keylime), the corpus's
// AK file is the trust anchor (--trust-ak): the corpus publishes no CA that
// certifies those AKs offline. Azure CVMs need no pin: the HCL chain
// verifies the AK when asked for (--azure-hcl) and the policy names the
// launch measurement.

func corpusPath(t *testing.T) string {
	t.Helper()
	return corpus.Require(t)
}

// changed writes a copy of file with the byte at off (negative: from the
// end) flipped, and returns its path.
func changed(t *testing.T, file string, off int) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += len(b)
	}
	b[off] ^= 0x01
	p := filepath.Join(t.TempDir(), filepath.Base(file)+".changed")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// tpmSet is one tpm2_quote output set as tpm2_checkquote takes it.
type tpmSet struct{ attest, sig, pcrs string }

func (s tpmSet) args() []string {
	return []string{"--tpm-quote", s.attest, "--tpm-sig", s.sig, "--tpm-pcrs", s.pcrs}
}

// checkquoteAll runs tpm2_checkquote on every set; true when all pass.
func checkquoteAll(t *testing.T, akPEM, nonce string, sets []tpmSet) bool {
	t.Helper()
	tool, err := exec.LookPath("tpm2_checkquote")
	if err != nil {
		if os.Getenv("CCMR_REQUIRE_TOOLS") == "1" {
			t.Fatal("tpm2_checkquote not found")
		}
		t.Log("tpm2_checkquote not found: second opinion skipped")
		return true
	}
	for _, s := range sets {
		sig, err := os.ReadFile(s.sig)
		if err != nil || len(sig) < 4 {
			t.Fatalf("%s: %v", s.sig, err)
		}
		g := map[uint16]string{0x0004: "sha1", 0x000b: "sha256", 0x000c: "sha384"}[uint16(sig[2])<<8|uint16(sig[3])]
		args := []string{"-u", akPEM, "-m", s.attest, "-s", s.sig, "-f", s.pcrs, "-g", g}
		if nonce != "" {
			args = append(args, "-q", nonce)
		}
		out, err := exec.Command(tool, args...).CombinedOutput()
		if err != nil {
			t.Logf("tpm2_checkquote %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
			return false
		}
	}
	return true
}

type convCase struct {
	name     string
	imp      []string // evidence import arguments (without -O)
	verify   []string // verify arguments (without the bundle)
	trusted  bool
	contains []string // in verify's output
	// TPM cases: tpm2_checkquote must agree.
	ak    string
	nonce string
	sets  []tpmSet
}

func runConv(t *testing.T, c convCase) {
	t.Helper()
	bundle := filepath.Join(t.TempDir(), "bundle.json")
	out, errs, code := ccmrRun(t, nil, append([]string{"evidence", "import", "-O", bundle}, c.imp...)...)
	if code != 0 {
		t.Fatalf("evidence import: exit %d\n%s%s", code, out, errs)
	}
	out, errs, code = ccmrRun(t, nil, append([]string{"verify", bundle}, c.verify...)...)
	want := 1
	if c.trusted {
		want = 0
	}
	if code != want {
		t.Fatalf("verify: exit %d, want %d\n%s%s", code, want, out, errs)
	}
	for _, s := range c.contains {
		if !strings.Contains(out, s) {
			t.Errorf("verify output lacks %q:\n%s", s, out)
		}
	}
	if c.sets != nil {
		if cq := checkquoteAll(t, c.ak, c.nonce, c.sets); cq != c.trusted {
			t.Errorf("tpm2_checkquote says %v, ccmr says %v", cq, c.trusted)
		}
	}
	if testing.Verbose() {
		t.Log("\n" + out)
	}
}

func TestConformanceTPM(t *testing.T) {
	c := corpusPath(t)
	g := filepath.Join(c, "go-tpm-tools/attestations/gce-cos-85-nonce9009")
	var gce []tpmSet
	var gceArgs []string
	for _, b := range []string{"sha1", "sha256", "sha384"} {
		s := tpmSet{filepath.Join(g, "quote-"+b+".attest"), filepath.Join(g, "quote-"+b+".sig"), filepath.Join(g, "pcrs-"+b+".serialized")}
		gce = append(gce, s)
		gceArgs = append(gceArgs, s.args()...)
	}
	gceAK := filepath.Join(g, "ak_pub.pem")
	gceImp := append([]string{"--ak", filepath.Join(g, "ak_pub.tpm2b_public"), "--ak-cert", filepath.Join(g, "ak_cert.der"), "--log", "tcg2=" + filepath.Join(g, "eventlog.bin")}, gceArgs...)
	gceChanged := append([]tpmSet(nil), gce...)
	gceChanged[1].attest = changed(t, gce[1].attest, -1) // last byte of the sha256 quote's PCR digest
	gceChangedArgs := []string{"--ak", gceAK}
	for _, s := range gceChanged {
		gceChangedArgs = append(gceChangedArgs, s.args()...)
	}
	otherAK := filepath.Join(c, "keylime/akpub.pem")

	w := filepath.Join(c, "go-attestation/windows_gcp_shielded_vm")
	win := []tpmSet{{filepath.Join(w, "quote.attest"), filepath.Join(w, "quote.sig"), filepath.Join(w, "pcrs-sha1.serialized")}}
	k := filepath.Join(c, "keylime")
	kl := []tpmSet{{filepath.Join(k, "quote.out"), filepath.Join(k, "quotesig.out"), filepath.Join(k, "quotepcr.out")}}
	const klNonce = "db1db298db6d60e6385b7231743e9c3056a18003"

	for _, tc := range []convCase{
		{name: "gce-3-banks+eventlog", imp: gceImp, verify: []string{"--nonce", "9009", "--trust-ak", gceAK}, trusted: true,
			contains: []string{"TPM2_Quote of 24 sha1 PCRs", "TPM2_Quote of 24 sha384 PCRs", "44 events replay to 30 quoted register values", "nonce matches"},
			ak:       gceAK, nonce: "9009", sets: gce},
		{name: "gce-wrong-nonce", imp: gceImp, verify: []string{"--nonce", "9008", "--trust-ak", gceAK},
			contains: []string{"nonce differs"}, ak: gceAK, nonce: "9008", sets: gce},
		{name: "gce-changed-quote-byte", imp: gceChangedArgs, verify: []string{"--nonce", "9009", "--trust-ak", gceAK},
			contains: []string{"signature does not verify"}, ak: gceAK, nonce: "9009", sets: gceChanged},
		{name: "gce-other-pinned-ak", imp: gceImp, verify: []string{"--nonce", "9009", "--trust-ak", otherAK},
			contains: []string{"AK is not trusted"}, ak: otherAK, nonce: "9009", sets: gce},
		{name: "windows-shielded-vm-sha1+wbcl",
			imp:    append([]string{"--ak", filepath.Join(w, "ak_pub.tpmt_public"), "--log", "auto=" + filepath.Join(w, "eventlog.bin")}, win[0].args()...),
			verify: []string{"--trust-ak", filepath.Join(w, "ak_pub.pem")}, trusted: true,
			contains: []string{"TPM2_Quote of 24 sha1 PCRs", "21 events replay to 8 quoted register values"},
			ak:       filepath.Join(w, "ak_pub.pem"), sets: win},
		{name: "keylime-tpm2_quote", imp: append([]string{"--ak", filepath.Join(k, "ak.pub")}, kl[0].args()...),
			verify: []string{"--nonce", klNonce, "--trust-ak", filepath.Join(k, "akpub.pem")}, trusted: true,
			contains: []string{"TPM2_Quote of 3 sha256 PCRs"}, ak: filepath.Join(k, "akpub.pem"), nonce: klNonce, sets: kl},
		{name: "keylime-wrong-nonce", imp: append([]string{"--ak", filepath.Join(k, "ak.pub")}, kl[0].args()...),
			verify: []string{"--nonce", "00" + klNonce[2:], "--trust-ak", filepath.Join(k, "akpub.pem")},
			ak:     filepath.Join(k, "akpub.pem"), nonce: "00" + klNonce[2:], sets: kl},
	} {
		t.Run(tc.name, func(t *testing.T) { runConv(t, tc) })
	}
}

func TestConformanceAzure(t *testing.T) {
	c := corpusPath(t)
	a := filepath.Join(c, "trustee/az-snp-vtpm")
	snpSet := []tpmSet{{filepath.Join(a, "tpm-quote.attest"), filepath.Join(a, "tpm-quote.tpmt_signature"), filepath.Join(a, "tpm-quote-pcrs.serialized")}}
	hcl := filepath.Join(a, "hcl-report.bin")
	hb, err := os.ReadFile(hcl)
	if err != nil {
		t.Fatal(err)
	}
	// A byte of the runtime data's "user-data" (HCLAkPub itself unchanged).
	ud := bytes.Index(hb, []byte(`"user-data":"`))
	if ud < 0 {
		t.Fatal("no user-data in the HCL runtime data")
	}
	hclChanged := changed(t, hcl, ud+len(`"user-data":"`)+3)
	const challenge = "6368616c6c656e6765" // "challenge"
	td := filepath.Join(c, "trustee/az-tdx-vtpm")
	// The launch measurements the HCL path needs in the policy: the SNP
	// report's MEASUREMENT, the TD quote's MRTD and RTMRs.
	tq, err := os.ReadFile(filepath.Join(td, "td-quote.bin"))
	if err != nil {
		t.Fatal(err)
	}
	tb, err := tdxverify.ParseQuote(tq)
	if err != nil {
		t.Fatal(err)
	}
	polSNP, polTDX := filepath.Join(t.TempDir(), "snp.json"), filepath.Join(t.TempDir(), "tdx.json")
	snpJSON := fmt.Sprintf(`{"snp": {"measurement": [%q]}}`, hex.EncodeToString(hb[32+0x90:32+0x90+48]))
	tdxJSON := fmt.Sprintf(`{"tdx": {"mrtd": [%q], "rtmr0": [%q], "rtmr1": [%q], "rtmr2": [%q], "rtmr3": [%q]}}`,
		hex.EncodeToString(tb.Body.MRTD[:]), hex.EncodeToString(tb.Body.RTMR[0][:]),
		hex.EncodeToString(tb.Body.RTMR[1][:]), hex.EncodeToString(tb.Body.RTMR[2][:]), hex.EncodeToString(tb.Body.RTMR[3][:]))
	for f, j := range map[string]string{polSNP: snpJSON, polTDX: tdxJSON} {
		if err := os.WriteFile(f, []byte(j), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	at := []string{"--at", "2025-06-01T00:00:00Z", "--nonce", challenge, "--azure-hcl", "--policy", polSNP}
	// The corpus has no Intel collateral for the Azure TD quote.
	atTDX := []string{"--at", "2025-06-01T00:00:00Z", "--nonce", challenge, "--azure-hcl", "--policy", polTDX, "--allow-missing-collateral"}
	tdxSet := []tpmSet{{filepath.Join(td, "tpm-quote.attest"), filepath.Join(td, "tpm-quote.tpmt_signature"), filepath.Join(td, "tpm-quote-pcrs.serialized")}}
	tdHCL := filepath.Join(td, "hcl-report.bin")

	for _, tc := range []convCase{
		{name: "azure-snp-cvm-chain", imp: append([]string{"--azure-hcl-report", hcl, "--vcek", filepath.Join(a, "vcek.pem")}, snpSet[0].args()...),
			verify: at, trusted: true,
			contains: []string{"SNP report in the HCL report: report v2 signed", "report_data[0:32] = sha256(HCL runtime data)", "the TPM quote's AK is HCLAkPub", "TPM2_Quote of 24 sha256 PCRs"},
			ak:       filepath.Join(a, "hcl-akpub.pem"), nonce: challenge, sets: snpSet},
		{name: "azure-snp-runtime-data-changed", imp: append([]string{"--azure-hcl-report", hclChanged, "--vcek", filepath.Join(a, "vcek.pem"), "--ak", filepath.Join(a, "hcl-akpub.pem")}, snpSet[0].args()...),
			verify: at, contains: []string{"HCL runtime data hash does not match report_data"}},
		{name: "azure-snp-snp-report-changed", imp: append([]string{"--azure-hcl-report", changed(t, hcl, 32+0x90), "--vcek", filepath.Join(a, "vcek.pem")}, snpSet[0].args()...),
			verify: at, contains: []string{"Azure HCL hardware report"}},
		{name: "azure-snp-other-ak", imp: append([]string{"--azure-hcl-report", hcl, "--vcek", filepath.Join(a, "vcek.pem"), "--ak", filepath.Join(c, "keylime/akpub.pem")}, snpSet[0].args()...),
			verify: at, contains: []string{"the TPM AK is not the HCL report's HCLAkPub"}},
		{name: "azure-tdx-cvm-chain", imp: append([]string{"--azure-hcl-report", tdHCL, "--tdx-quote", filepath.Join(td, "td-quote.bin")}, tdxSet[0].args()...),
			verify: atTDX, trusted: true,
			contains: []string{"the TD report in the HCL report equals the TD quote's body", "TD quote: TCB: not checked, no collateral", "the TPM quote's AK is HCLAkPub"},
			ak:       filepath.Join(td, "hcl-akpub.pem"), nonce: challenge, sets: tdxSet},
		{name: "azure-tdx-td-report-changed", imp: append([]string{"--azure-hcl-report", changed(t, tdHCL, 32+528), "--tdx-quote", filepath.Join(td, "td-quote.bin")}, tdxSet[0].args()...),
			verify: atTDX, contains: []string{"differs from the TD quote: MRTD"}},
	} {
		t.Run(tc.name, func(t *testing.T) { runConv(t, tc) })
	}
}

func TestConformanceTDXSNP(t *testing.T) {
	c := corpusPath(t)
	d := filepath.Join(c, "dcap-qvl")
	q4 := []string{"--tdx-quote", filepath.Join(d, "tdx_quote"), "--collateral", filepath.Join(d, "tdx_quote_collateral.json")}
	sg := filepath.Join(c, "go-sev-guest")
	ts := filepath.Join(c, "trustee/snp")
	snpAt := []string{"--at", "2025-06-01T00:00:00Z"}
	// go-sev-guest's report is of a guest that allows debugging: trusted
	// only when the policy says so.
	allowDebug := filepath.Join(t.TempDir(), "allow-debug.json")
	if err := os.WriteFile(allowDebug, []byte(`{"snp": {"allow_debug": true}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []convCase{
		{name: "dcap-qvl-v4+collateral", imp: q4, verify: []string{"--at", "2025-07-10T00:00:00Z"}, trusted: true,
			contains: []string{"TCB status UpToDate is allowed", "quote v4 (body type 2) signed"}},
		{name: "dcap-qvl-v4-mrtd-changed", imp: []string{"--tdx-quote", changed(t, filepath.Join(d, "tdx_quote"), 48+136), "--collateral", filepath.Join(d, "tdx_quote_collateral.json")},
			verify: []string{"--at", "2025-07-10T00:00:00Z"}, contains: []string{"FAIL"}},
		{name: "dcap-qvl-v4-after-nextUpdate", imp: q4, verify: []string{"--at", "2025-07-20T00:00:00Z"}, contains: []string{"FAIL"}},
		{name: "dcap-qvl-v5-outdated", imp: []string{"--tdx-quote", filepath.Join(d, "tdx_quote_outdated"), "--collateral", filepath.Join(d, "tdx_quote_outdated_collateral.json")},
			verify: []string{"--at", "2026-03-01T00:00:00Z"}, contains: []string{"quote v5 (body type 3)", "OutOfDate"}},
		{name: "go-tdx-guest-spr-e4", imp: []string{"--tdx-quote", filepath.Join(c, "go-tdx-guest/tdx_prod_quote_SPR_E4.dat"), "--collateral", filepath.Join(c, "go-tdx-guest/collateral.derived.json")},
			verify: []string{"--at", "2023-07-01T00:00:00Z"}, contains: []string{"no matching TCB level"}},
		{name: "snp-milan-vcek", imp: []string{"--snp-report", filepath.Join(sg, "attestation.bin"), "--vcek", filepath.Join(sg, "vcek.testcer"), "--nonce", "0102030405"},
			verify: append([]string{"--nonce", "0102030405", "--policy", allowDebug}, snpAt...), trusted: true,
			contains: []string{"report v2 signed (ECDSA P-384) by the VCEK", "Milan", "CHIP_ID is the VCEK's HWID", "nonce matches"}},
		{name: "snp-milan-report-data-changed", imp: []string{"--snp-report", changed(t, filepath.Join(sg, "attestation.bin"), 0x50), "--vcek", filepath.Join(sg, "vcek.testcer")},
			verify: snpAt, contains: []string{"FAIL SNP report"}},
		{name: "snp-trustee-v2-vcek", imp: []string{"--snp-report", filepath.Join(ts, "test-report.bin"), "--vcek", filepath.Join(ts, "test-vcek.der")},
			verify: snpAt, trusted: true, contains: []string{"report v2 signed"}},
		{name: "snp-v3-vlek", imp: []string{"--snp-report", filepath.Join(ts, "test-vlek-report.bin"), "--vlek", filepath.Join(ts, "test-vlek.der")},
			verify: snpAt, trusted: true, contains: []string{"report v3 signed (ECDSA P-384) by the VLEK"}},
		{name: "snp-v3-vlek-report-data-changed", imp: []string{"--snp-report", changed(t, filepath.Join(ts, "test-vlek-report.bin"), 0x50), "--vlek", filepath.Join(ts, "test-vlek.der")},
			verify: snpAt, contains: []string{"FAIL SNP report"}},
	} {
		t.Run(tc.name, func(t *testing.T) { runConv(t, tc) })
	}
}

// Bad parts exit 2 naming the part, the file and the reason.
func TestEvidenceImportBadParts(t *testing.T) {
	c := corpusPath(t)
	k := filepath.Join(c, "keylime")
	kl := []string{"--tpm-quote", filepath.Join(k, "quote.out"), "--tpm-sig", filepath.Join(k, "quotesig.out"), "--tpm-pcrs", filepath.Join(k, "quotepcr.out")}
	out := filepath.Join(t.TempDir(), "b.json")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"raw-signature", []string{"--ak", filepath.Join(k, "ak.pub"), "--tpm-quote", filepath.Join(k, "quote.out"), "--tpm-sig", filepath.Join(c, "trustee/az-snp-vtpm/tpm-quote.sig"), "--tpm-pcrs", filepath.Join(k, "quotepcr.out")},
			"--tpm-sig " + filepath.Join(c, "trustee/az-snp-vtpm/tpm-quote.sig") + ": not a TPMT_SIGNATURE"},
		{"sig-as-quote", []string{"--ak", filepath.Join(k, "ak.pub"), "--tpm-quote", filepath.Join(k, "quotesig.out"), "--tpm-sig", filepath.Join(k, "quotesig.out"), "--tpm-pcrs", filepath.Join(k, "quotepcr.out")},
			"--tpm-quote " + filepath.Join(k, "quotesig.out") + ": not a TPMS_ATTEST quote"},
		{"no-pcrs", []string{"--ak", filepath.Join(k, "ak.pub"), "--tpm-quote", filepath.Join(k, "quote.out"), "--tpm-sig", filepath.Join(k, "quotesig.out")}, "no --tpm-pcrs for this quote"},
		{"pcrs-of-another-quote", []string{"--ak", filepath.Join(k, "ak.pub"), "--tpm-quote", filepath.Join(k, "quote.out"), "--tpm-sig", filepath.Join(k, "quotesig.out"),
			"--tpm-pcrs", filepath.Join(c, "go-tpm-tools/attestations/gce-cos-85-nonce9009/pcrs-sha256.serialized")}, "--tpm-pcrs"},
		{"no-ak", kl, "--ak: "},
		{"bad-ak", append([]string{"--ak", filepath.Join(k, "quote.out")}, kl...), "--ak " + filepath.Join(k, "quote.out") + ": "},
		{"unpaired", []string{"--tpm-quote", filepath.Join(k, "quote.out")}, "--tpm-sig"},
		{"nonce-disagrees", append([]string{"--ak", filepath.Join(k, "akpub.pem"), "--nonce", "00"}, kl...), "--nonce: "},
		{"hcl-garbage", append([]string{"--ak", filepath.Join(k, "akpub.pem"), "--azure-hcl-report", filepath.Join(k, "quote.out")}, kl...), "--azure-hcl-report " + filepath.Join(k, "quote.out") + ": not an Azure HCL report"},
		{"snp-without-vcek", []string{"--snp-report", filepath.Join(c, "go-sev-guest/attestation.bin")}, "--vcek or --vlek"},
		{"tdx-garbage", []string{"--tdx-quote", filepath.Join(k, "quote.out")}, "--tdx-quote " + filepath.Join(k, "quote.out") + ": not a TDX quote"},
		{"collateral-garbage", []string{"--tdx-quote", filepath.Join(c, "dcap-qvl/tdx_quote"), "--collateral", filepath.Join(k, "quote.out")}, "--collateral " + filepath.Join(k, "quote.out")},
		{"log-garbage", append([]string{"--ak", filepath.Join(k, "akpub.pem"), "--log", "tcg2=" + filepath.Join(k, "quote.out")}, kl...), "--log " + filepath.Join(k, "quote.out") + ": not a tcg2 log"},
		{"runtime-log-without-register", append([]string{"--ak", filepath.Join(k, "akpub.pem"), "--log", "runtime=" + filepath.Join(k, "quote.out")}, kl...), "backing register"},
		{"missing-file", append([]string{"--ak", filepath.Join(k, "nope.pem")}, kl...), "--ak " + filepath.Join(k, "nope.pem")},
		{"nothing", nil, "no hardware evidence"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs, code := ccmrRun(t, nil, append([]string{"evidence", "import", "-O", out}, tc.args...)...)
			if code != 2 || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, errs, tc.want)
			}
		})
	}
}
