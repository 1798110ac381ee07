package main

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/internal/snpserdetest"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tdxverify"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
)

// Whole evidence files of other tools (issue 18 item 1): each corpus file
// imported with one flag (--gotpm, --trustee) verifies with the same
// verdict, line for line, as its split parts imported with the loose
// flags as before.

// importVerify imports args into a fresh bundle and verifies it; it
// returns verify's output with the bundle's path made "BUNDLE", and its
// exit code.
func importVerify(t *testing.T, imp, verify []string) (string, int) {
	t.Helper()
	b := filepath.Join(t.TempDir(), "b.json")
	out, errs, code := ccmrRun(t, nil, append([]string{"evidence", "import", "-O", b}, imp...)...)
	if code != 0 {
		t.Fatalf("evidence import %s: exit %d\n%s%s", strings.Join(imp, " "), code, out, errs)
	}
	out, errs, code = ccmrRun(t, nil, append([]string{"verify", b}, verify...)...)
	if errs != "" {
		t.Logf("verify stderr: %s", errs)
	}
	return strings.ReplaceAll(out, b, "BUNDLE"), code
}

type foreignCase struct {
	name          string
	whole, split  []string
	verify        []string
	wantCode      int
	wantContains  []string
	wantOutputSay string // a line the verdict must have (weakened and so on)
}

func runForeign(t *testing.T, c foreignCase) {
	t.Helper()
	wout, wcode := importVerify(t, c.whole, c.verify)
	sout, scode := importVerify(t, c.split, c.verify)
	if wcode != scode || wout != sout {
		t.Fatalf("whole file: exit %d, split parts: exit %d\nwhole:\n%s\nsplit:\n%s", wcode, scode, wout, sout)
	}
	if wcode != c.wantCode {
		t.Fatalf("verify: exit %d, want %d\n%s", wcode, c.wantCode, wout)
	}
	for _, s := range c.wantContains {
		if !strings.Contains(wout, s) {
			t.Errorf("verify output lacks %q:\n%s", s, wout)
		}
	}
	if testing.Verbose() {
		t.Log("\n" + wout)
	}
}

func TestForeignGoTPM(t *testing.T) {
	c := corpusPath(t)
	for _, tc := range []struct {
		name, nonce string
		contains    []string
	}{
		{"gce-cos-85-nonce9009", "9009", []string{"TRUSTED (platform tpm)", "nonce matches", "44 events replay to 30 quoted register values"}},
		{"gce-cos-85-no-nonce", "", []string{"TRUSTED (weakened: no expected nonce", "44 events replay to 30 quoted register values"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := filepath.Join(c, "go-tpm-tools/attestations", tc.name)
			split := []string{"--ak", filepath.Join(g, "ak_pub.tpm2b_public"), "--ak-cert", filepath.Join(g, "ak_cert.der"), "--log", "tcg2=" + filepath.Join(g, "eventlog.bin")}
			for _, bank := range []string{"sha1", "sha256", "sha384"} {
				split = append(split, "--tpm-quote", filepath.Join(g, "quote-"+bank+".attest"), "--tpm-sig", filepath.Join(g, "quote-"+bank+".sig"), "--tpm-pcrs", filepath.Join(g, "pcrs-"+bank+".serialized"))
			}
			verify := []string{"--trust-ak", filepath.Join(g, "ak_pub.pem")}
			if tc.nonce != "" {
				verify = append(verify, "--nonce", tc.nonce)
			}
			runForeign(t, foreignCase{whole: []string{"--gotpm", g + ".pb"}, split: split, verify: verify, wantContains: tc.contains})
			// Another pinned AK: not trusted, by both.
			other := []string{"--trust-ak", filepath.Join(c, "keylime/akpub.pem")}
			runForeign(t, foreignCase{whole: []string{"--gotpm", g + ".pb"}, split: split, verify: other, wantCode: 1, wantContains: []string{"AK is not trusted"}})
		})
	}
}

// writeFile writes b to a new file in dir and returns its path.
func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// splitAzure extracts the loose parts of an Azure vTPM evidence file the
// way a user would by hand (the bare RSASSA-SHA256 signature wrapped as a
// TPMT_SIGNATURE, the sha256 values as a serialized PCR file), with
// encoding/json and none of the importer's code, and returns the loose
// import flags, the quote's nonce and the HCL report.
func splitAzure(t *testing.T, file string) (args []string, nonce string, hcl []byte) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	// bytesOf reads a member as serde wrote it: an array of numbers
	// (v0), hex (quote members of v1+) or base64url (v1+).
	bytesOf := func(r json.RawMessage, enc string) []byte {
		var arr []byte
		var s string
		if err := json.Unmarshal(r, &s); err != nil {
			var nums []int
			if err := json.Unmarshal(r, &nums); err != nil {
				t.Fatal(err)
			}
			for _, n := range nums {
				arr = append(arr, byte(n))
			}
			return arr
		}
		switch enc {
		case "hex":
			arr, err = hex.DecodeString(s)
		case "pem":
			arr = []byte(s)
		default:
			arr, err = base64.URLEncoding.DecodeString(s)
		}
		if err != nil {
			t.Fatal(err)
		}
		return arr
	}
	qm := m["tpm_quote"]
	if qm == nil {
		qm = m["quote"]
	}
	var q map[string]json.RawMessage
	if err := json.Unmarshal(qm, &q); err != nil {
		t.Fatal(err)
	}
	msg, sig := bytesOf(q["message"], "hex"), bytesOf(q["signature"], "hex")
	var pcrList []json.RawMessage
	if err := json.Unmarshal(q["pcrs"], &pcrList); err != nil {
		t.Fatal(err)
	}
	info, err := tpmverify.ParseQuoteInfo(msg)
	if err != nil {
		t.Fatal(err)
	}
	vals := map[int][]byte{}
	for i, idx := range info.Selection[0].PCRs {
		vals[idx] = bytesOf(pcrList[i], "hex")
	}
	pf, err := tpmverify.MarshalPCRFile(mr.TPMQuote{Alg: mr.SHA256, Attest: msg, PCRs: vals})
	if err != nil {
		t.Fatal(err)
	}
	tsig := binary.BigEndian.AppendUint16([]byte{0x00, 0x14, 0x00, 0x0b}, uint16(len(sig)))
	d := t.TempDir()
	args = []string{"--tpm-quote", writeFile(t, d, "q.attest", msg), "--tpm-sig", writeFile(t, d, "q.sig", append(tsig, sig...)), "--tpm-pcrs", writeFile(t, d, "q.pcrs", pf)}
	hr := m["hcl_report"]
	if hr == nil {
		hr = m["report"]
	}
	hcl = bytesOf(hr, "b64")
	args = append(args, "--azure-hcl-report", writeFile(t, d, "hcl.bin", hcl))
	if v := m["vcek"]; v != nil {
		enc := "b64"
		if strings.Contains(string(v), "BEGIN CERTIFICATE") {
			enc = "pem"
		}
		args = append(args, "--vcek", writeFile(t, d, "vcek", bytesOf(v, enc)))
	}
	if v := m["td_quote"]; v != nil {
		args = append(args, "--tdx-quote", writeFile(t, d, "td.bin", bytesOf(v, "b64")))
	}
	return args, hex.EncodeToString(info.ExtraData), hcl
}

func TestForeignTrusteeAzure(t *testing.T) {
	c := corpusPath(t)
	// The TD quote of the Azure TDX evidence (all its versions hold the
	// same attestation): the policy pins its MRTD and RTMRs.
	tq, err := os.ReadFile(filepath.Join(c, "trustee/az-tdx-vtpm/td-quote.bin"))
	if err != nil {
		t.Fatal(err)
	}
	tb, err := tdxverify.ParseQuote(tq)
	if err != nil {
		t.Fatal(err)
	}
	polTDX := writeFile(t, t.TempDir(), "tdx.json", fmt.Appendf(nil, `{"tdx": {"mrtd": [%q], "rtmr0": [%q], "rtmr1": [%q], "rtmr2": [%q], "rtmr3": [%q]}}`,
		hex.EncodeToString(tb.Body.MRTD[:]), hex.EncodeToString(tb.Body.RTMR[0][:]),
		hex.EncodeToString(tb.Body.RTMR[1][:]), hex.EncodeToString(tb.Body.RTMR[2][:]), hex.EncodeToString(tb.Body.RTMR[3][:])))
	for _, tc := range []struct {
		file     string
		code     int
		contains []string
	}{
		{"az-snp-vtpm/evidence-v0.json", 0, []string{"TRUSTED (weakened: no AMD CRL", "report_data[0:32] = sha256(HCL runtime data)", "the TPM quote's AK is HCLAkPub"}},
		{"az-snp-vtpm/evidence-v1.json", 0, []string{"TRUSTED (weakened: no AMD CRL", "the TPM quote's AK is HCLAkPub"}},
		{"az-snp-vtpm/evidence-v2.json", 0, []string{"TRUSTED (weakened: no AMD CRL", "the TPM quote's AK is HCLAkPub"}},
		{"az-snp-vtpm/evidence-genoa.json", 0, []string{"TRUSTED (weakened: no AMD CRL", "the TPM quote's AK is HCLAkPub"}},
		{"az-tdx-vtpm/evidence-v0.json", 0, []string{"the TD report in the HCL report equals the TD quote's body", "the TPM quote's AK is HCLAkPub"}},
		{"az-tdx-vtpm/evidence-v1.json", 0, []string{"the TD report in the HCL report equals the TD quote's body", "the TPM quote's AK is HCLAkPub"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			file := filepath.Join(c, "trustee", tc.file)
			split, nonce, hcl := splitAzure(t, file)
			verify := []string{"--at", "2025-06-01T00:00:00Z", "--nonce", nonce, "--azure-hcl"}
			if strings.HasPrefix(tc.file, "az-tdx") {
				// The corpus has no Intel collateral for the Azure TD quote.
				verify = append(verify, "--policy", polTDX, "--allow-missing-collateral")
			} else {
				pol := writeFile(t, t.TempDir(), "snp.json", fmt.Appendf(nil, `{"snp": {"measurement": [%q]}}`, hex.EncodeToString(hcl[32+0x90:32+0x90+48])))
				verify = append(verify, "--policy", pol)
			}
			runForeign(t, foreignCase{whole: []string{"--trustee", file}, split: split, verify: verify, wantCode: tc.code, wantContains: tc.contains})
			// Another nonce: not trusted, by both.
			other := append([]string{}, verify...)
			other[3] = "00" + nonce[2:]
			runForeign(t, foreignCase{whole: []string{"--trustee", file}, split: split, verify: other, wantCode: 1, wantContains: []string{"nonce differs"}})
		})
	}
}

// Trustee TDX evidence (no corpus file has one: it is made here from the
// corpus's TDX quote with collateral and a CCEL, as the attestation agent
// sends them) verifies as its parts do.
func TestForeignTrusteeTDX(t *testing.T) {
	c := corpusPath(t)
	d := filepath.Join(c, "dcap-qvl")
	q, err := os.ReadFile(filepath.Join(d, "tdx_quote"))
	if err != nil {
		t.Fatal(err)
	}
	ccelPath := filepath.Join(c, "trustee/eventlog/CCEL_data")
	ccel, err := os.ReadFile(ccelPath)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(map[string]any{"cc_eventlog": base64.StdEncoding.EncodeToString(ccel), "quote": base64.StdEncoding.EncodeToString(q)})
	file := writeFile(t, t.TempDir(), "tdx-evidence.json", js)
	coll := filepath.Join(d, "tdx_quote_collateral.json")
	// The CCEL is not this quote's (none in the corpus is): both say so.
	runForeign(t, foreignCase{
		whole:  []string{"--trustee", file, "--collateral", coll},
		split:  []string{"--tdx-quote", filepath.Join(d, "tdx_quote"), "--collateral", coll, "--log", "ccel=" + ccelPath},
		verify: []string{"--at", "2025-07-10T00:00:00Z"}, wantCode: 1,
		wantContains: []string{"quote v4 (body type 2) signed", "TCB status UpToDate is allowed"},
	})
	js, _ = json.Marshal(map[string]any{"quote": base64.StdEncoding.EncodeToString(q)})
	file = writeFile(t, t.TempDir(), "tdx-evidence.json", js)
	runForeign(t, foreignCase{
		whole:  []string{"--trustee", file, "--collateral", coll},
		split:  []string{"--tdx-quote", filepath.Join(d, "tdx_quote"), "--collateral", coll},
		verify: []string{"--at", "2025-07-10T00:00:00Z"}, wantCode: 0,
		wantContains: []string{"quote v4 (body type 2) signed", "TCB status UpToDate is allowed"},
	})
}

// Trustee TPM evidence (a swtpm quote, all PCRs zero) verifies as the
// parts the corpus extracted from it do.
func TestForeignTrusteeTPM(t *testing.T) {
	d := filepath.Join(corpusPath(t), "trustee/tpm")
	attest, err := os.ReadFile(filepath.Join(d, "quote.attest"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := tpmverify.ParseQuoteInfo(attest)
	if err != nil {
		t.Fatal(err)
	}
	nonce := hex.EncodeToString(info.ExtraData)
	split := []string{"--ak", filepath.Join(d, "ak_pub.pem"), "--tpm-quote", filepath.Join(d, "quote.attest"),
		"--tpm-sig", filepath.Join(d, "quote.tpmt_signature"), "--tpm-pcrs", filepath.Join(d, "pcrs.serialized")}
	whole := []string{"--trustee", filepath.Join(d, "tpm_evidence.json")}
	runForeign(t, foreignCase{whole: whole, split: split, verify: []string{"--trust-ak", filepath.Join(d, "ak_pub.pem"), "--nonce", nonce},
		wantContains: []string{"TRUSTED (platform tpm)", "TPM2_Quote of 24 sha256 PCRs"}})
	runForeign(t, foreignCase{whole: whole, split: split, verify: []string{"--trust-ak", filepath.Join(d, "ak_pub.pem"), "--nonce", "00" + nonce[2:]},
		wantCode: 1, wantContains: []string{"nonce differs"}})
}

// Trustee snp evidence (the sev crate's serde forms; no corpus file has
// one with its key: internal/snpserdetest's test encoder writes them here
// from the corpus's real reports) verifies as the raw report and key do,
// in every form; a member changed against the signature fails verify in
// both.
func TestForeignTrusteeSNP(t *testing.T) {
	c := corpusPath(t)
	ts, sg := filepath.Join(c, "trustee/snp"), filepath.Join(c, "go-sev-guest")
	td := filepath.Join("..", "..", "bundle", "importer", "testdata", "trustee-snp")
	gen := t.TempDir()
	snpAt := []string{"--at", "2025-06-01T00:00:00Z"}
	allowDebug := writeFile(t, t.TempDir(), "allow-debug.json", []byte(`{"snp": {"allow_debug": true}}`))
	for _, tc := range []struct {
		name, report, keyFlag, key string
		verify, contains           []string
	}{
		{"trustee-v2-vcek", filepath.Join(ts, "test-report.bin"), "--vcek", filepath.Join(ts, "test-vcek.der"), snpAt, []string{"TRUSTED (weakened", "(platform snp)", "report v2 signed"}},
		{"trustee-v3-vlek", filepath.Join(ts, "test-vlek-report.bin"), "--vlek", filepath.Join(ts, "test-vlek.der"), snpAt, []string{"report v3 signed (ECDSA P-384) by the VLEK"}},
		{"go-sev-guest-milan", filepath.Join(sg, "attestation.bin"), "--vcek", filepath.Join(sg, "vcek.testcer"), append([]string{"--policy", allowDebug}, snpAt...), []string{"report v2 signed (ECDSA P-384) by the VCEK", "Milan"}},
	} {
		files := snpserdetest.Named(t, tc.name).Write(t, gen)
		for _, form := range snpserdetest.Forms {
			t.Run(tc.name+"/"+form, func(t *testing.T) {
				file := files[form]
				split := []string{"--snp-report", tc.report, tc.keyFlag, tc.key}
				runForeign(t, foreignCase{whole: []string{"--trustee", file}, split: split, verify: tc.verify, wantContains: tc.contains})
				// MEASUREMENT (report offset 0x90) changed in the JSON and in
				// the raw report: the signature no longer holds, for both.
				var m map[string]any
				raw, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal(raw, &m); err != nil {
					t.Fatal(err)
				}
				meas := m["attestation_report"].(map[string]any)["measurement"].([]any)
				meas[0] = float64(int(meas[0].(float64)) ^ 1)
				edited, err := json.Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				hostile := writeFile(t, t.TempDir(), "measurement-changed.json", edited)
				runForeign(t, foreignCase{whole: []string{"--trustee", hostile}, split: []string{"--snp-report", changed(t, tc.report, 0x90), tc.keyFlag, tc.key},
					verify: tc.verify, wantCode: 1, wantContains: []string{"FAIL SNP report"}})
			})
		}
	}
	// The producer's sample has no cert_chain: its key is given beside it
	// (Trustee would fetch it from AMD's KDS); without one, exit 2.
	out, errs, code := ccmrRun(t, nil, "evidence", "import", "-O", filepath.Join(t.TempDir(), "b.json"), "--trustee", filepath.Join(td, "aa-evidence-openshift.json"))
	if code != 2 || !strings.Contains(errs, "--vcek or --vlek") {
		t.Errorf("no key: exit %d\n%s%s", code, out, errs)
	}
	// With another chip's VCEK it imports and fails verify.
	wout, wcode := importVerify(t, []string{"--trustee", filepath.Join(td, "aa-evidence-openshift.json"), "--vcek", filepath.Join(ts, "test-vcek.der")}, snpAt)
	if wcode != 1 || !strings.Contains(wout, "FAIL") {
		t.Errorf("another chip's VCEK: exit %d\n%s", wcode, wout)
	}
}

// The producer-written snp evidence of Trustee's own end-to-end test (a
// 2024 file in the sev 1.2-5.x form, a 2025 Genoa file in the sev 6.1
// form, each with its VCEK in cert_chain) verifies: the report ccmr
// rebuilds from the JSON is the one the firmware signed. The 2024 report
// is the corpus's test-report.bin: same verdict as its split parts. A
// changed MEASUREMENT fails.
func TestForeignTrusteeSNPProducer(t *testing.T) {
	c := corpusPath(t)
	td := filepath.Join("..", "..", "bundle", "importer", "testdata", "trustee-snp")
	snpAt := []string{"--at", "2025-06-01T00:00:00Z"}
	f2024, f2025 := filepath.Join(td, "trustee-e2e-evidence-2024.json"), filepath.Join(td, "trustee-e2e-evidence-2025.json")
	runForeign(t, foreignCase{whole: []string{"--trustee", f2024}, split: []string{"--snp-report", filepath.Join(c, "trustee/snp/test-report.bin"), "--vcek", filepath.Join(c, "trustee/snp/test-vcek.der")},
		verify: snpAt, wantContains: []string{"(platform snp)", "report v2 signed (ECDSA P-384) by the VCEK", "CHIP_ID is the VCEK's HWID"}})
	out, code := importVerify(t, []string{"--trustee", f2025}, snpAt)
	for _, s := range []string{"(platform snp)", "product line Genoa", "report v3 signed (ECDSA P-384) by the VCEK", "CHIP_ID is the VCEK's HWID"} {
		if code != 0 || !strings.Contains(out, s) {
			t.Errorf("2025 file: exit %d, want 0 and %q:\n%s", code, s, out)
		}
	}
	for _, f := range []string{f2024, f2025} {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		meas := m["attestation_report"].(map[string]any)["measurement"].([]any)
		meas[47] = float64(int(meas[47].(float64)) ^ 0x80)
		edited, _ := json.Marshal(m)
		out, code := importVerify(t, []string{"--trustee", writeFile(t, t.TempDir(), "changed.json", edited)}, snpAt)
		if code != 1 || !strings.Contains(out, "FAIL SNP report") {
			t.Errorf("%s, measurement changed: exit %d\n%s", f, code, out)
		}
	}
}
