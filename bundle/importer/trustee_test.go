package importer

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/mr"
)

// Every Trustee evidence file of the corpus imports, as the kind its
// members say.
func TestTrusteeCorpus(t *testing.T) {
	const challenge = "6368616c6c656e6765" // "challenge"
	for _, c := range []struct{ file, kind, nonce string }{
		{"trustee/az-snp-vtpm/evidence-v0.json", TrusteeAzSNPv0, challenge},
		{"trustee/az-snp-vtpm/evidence-genoa.json", TrusteeAzSNPv0, "0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f"},
		{"trustee/az-snp-vtpm/evidence-v1.json", TrusteeAzSNPv1, challenge},
		{"trustee/az-snp-vtpm/evidence-v2.json", TrusteeAzSNPv2, "982f5c6e45df0ed3f10b6f60b02f0c8390e281300f3805e2279c16168cd6ae9aa398f647caa2338748cd0fd9f5f819ef"},
		{"trustee/az-tdx-vtpm/evidence-v0.json", TrusteeAzTDXv0, challenge},
		{"trustee/az-tdx-vtpm/evidence-v1.json", TrusteeAzTDXv1, challenge},
	} {
		p, kind, err := Trustee(corpusFile(t, c.file))
		if err != nil {
			t.Errorf("%s: %v", c.file, err)
			continue
		}
		if kind != c.kind {
			t.Errorf("%s: kind %s, want %s", c.file, kind, c.kind)
		}
		b, err := Build(p)
		if err != nil {
			t.Errorf("%s: %v", c.file, err)
			continue
		}
		if b.Platform != mr.PlatformTPM || len(b.Evidence.AzureHCLReport) == 0 || hex.EncodeToString(b.Nonce) != c.nonce {
			t.Errorf("%s: platform %s, nonce %q, HCL report %d bytes", c.file, b.Platform, b.Nonce, len(b.Evidence.AzureHCLReport))
		}
	}
}

// The Azure TDX evidence files hold the attestation the corpus extracted
// into loose parts: both versions import into the very bundle those parts
// make (the bare signature becomes the extracted TPMT_SIGNATURE).
func TestTrusteeAzTDXEqualsSplitParts(t *testing.T) {
	d := "trustee/az-tdx-vtpm/"
	pcrs := corpusFile(t, d+"tpm-quote-pcrs.serialized")
	hcl, td := corpusFile(t, d+"hcl-report.bin"), corpusFile(t, d+"td-quote.bin")
	split, err := Build(Parts{AzureHCLReport: &hcl, TDXQuote: &td, TPMQuotes: []TPMQuote{{
		Attest: corpusFile(t, d+"tpm-quote.attest"), Signature: corpusFile(t, d+"tpm-quote.tpmt_signature"), PCRs: &pcrs}}})
	if err != nil {
		t.Fatal(err)
	}
	want := bundleJSON(t, split)
	for _, v := range []string{"evidence-v0.json", "evidence-v1.json"} {
		p, _, err := Trustee(corpusFile(t, d+v))
		if err != nil {
			t.Fatal(err)
		}
		b, err := Build(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(bundleJSON(t, b), want) {
			t.Errorf("%s: the whole file's bundle differs from the split parts' bundle", v)
		}
	}
}

// editJSON decodes the corpus file rel, lets edit change it and encodes it.
func editJSON(t *testing.T, rel string, edit func(map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(corpusFile(t, rel).Data, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantTrusteeErr(t *testing.T, what string, data []byte, want string, sentinel error) {
	t.Helper()
	_, _, err := Trustee(File{Name: "hostile.json", Data: data})
	var pe *PartError
	if !errors.As(err, &pe) || pe.Part != PartTrustee || pe.File != "hostile.json" || !strings.Contains(err.Error(), want) || !errors.Is(err, sentinel) {
		t.Errorf("%s: %v, want a --trustee hostile.json error with %q (%v)", what, err, want, sentinel)
	}
}

// Hostile Trustee files are refused naming the file and the member.
func TestTrusteeHostile(t *testing.T) {
	v1 := corpusFile(t, "trustee/az-snp-vtpm/evidence-v1.json").Data
	// A member given twice: at the top, and inside tpm_quote.
	dupTop := append([]byte(`{"vcek":"AAAA",`), bytes.TrimPrefix(bytes.TrimSpace(v1), []byte("{"))...)
	wantTrusteeErr(t, "duplicate vcek", dupTop, "duplicate member", mr.ErrMalformed)
	dupIn := bytes.Replace(v1, []byte(`"tpm_quote": {`), []byte(`"tpm_quote": {"message": "00",`), 1)
	if bytes.Equal(dupIn, v1) {
		dupIn = bytes.Replace(v1, []byte(`"tpm_quote":{`), []byte(`"tpm_quote":{"message":"00",`), 1)
	}
	if bytes.Equal(dupIn, v1) {
		t.Fatal("no tpm_quote object to edit")
	}
	wantTrusteeErr(t, "duplicate tpm_quote.message", dupIn, "duplicate member", mr.ErrMalformed)
	// Unknown members, top and nested.
	wantTrusteeErr(t, "unknown top member", editJSON(t, "trustee/az-snp-vtpm/evidence-v1.json", func(m map[string]any) { m["user_data"] = "x" }),
		"unknown member", mr.ErrMalformed)
	wantTrusteeErr(t, "unknown nested member", editJSON(t, "trustee/az-tdx-vtpm/evidence-v1.json", func(m map[string]any) {
		m["tpm_quote"].(map[string]any)["pcrs_sha1"] = []string{}
	}), "unknown member", mr.ErrMalformed)
	wantTrusteeErr(t, "unknown v0 member", editJSON(t, "trustee/az-tdx-vtpm/evidence-v0.json", func(m map[string]any) { m["vcek"] = "x" }),
		"unknown member", mr.ErrMalformed)
	// Trailing data, a version nobody wrote, bad encodings.
	wantTrusteeErr(t, "trailing", append(bytes.Clone(v1), []byte(`{}`)...), "data after", mr.ErrMalformed)
	wantTrusteeErr(t, "version 3", editJSON(t, "trustee/az-snp-vtpm/evidence-v1.json", func(m map[string]any) { m["version"] = 3 }),
		"member version: ", mr.ErrUnsupported)
	wantTrusteeErr(t, "hcl_report not base64url", editJSON(t, "trustee/az-snp-vtpm/evidence-v1.json", func(m map[string]any) { m["hcl_report"] = "SENM+QQ==" }),
		"member hcl_report: ", mr.ErrMalformed)
	wantTrusteeErr(t, "pcr not hex", editJSON(t, "trustee/az-snp-vtpm/evidence-v2.json", func(m map[string]any) {
		m["tpm_quote"].(map[string]any)["pcrs"].([]any)[3] = "zz"
	}), "member tpm_quote.pcrs[3]: ", mr.ErrMalformed)
	wantTrusteeErr(t, "a PCR value missing", editJSON(t, "trustee/az-snp-vtpm/evidence-v2.json", func(m map[string]any) {
		q := m["tpm_quote"].(map[string]any)
		q["pcrs"] = q["pcrs"].([]any)[1:]
	}), "member tpm_quote.pcrs: malformed input: 23 values for the 24 PCRs", mr.ErrMalformed)
	wantTrusteeErr(t, "a v0 byte out of range", editJSON(t, "trustee/az-snp-vtpm/evidence-v0.json", func(m map[string]any) {
		m["report"].([]any)[0] = 256
	}), "az-snp-vtpm/v0 evidence", mr.ErrMalformed)
	wantTrusteeErr(t, "a v0 short PCR", editJSON(t, "trustee/az-snp-vtpm/evidence-v0.json", func(m map[string]any) {
		q := m["quote"].(map[string]any)
		q["pcrs"].([]any)[5] = []int{1, 2}
	}), "member quote.pcrs[5]: ", mr.ErrMalformed)
	wantTrusteeErr(t, "not JSON", []byte("\x00"), "not Trustee evidence JSON", mr.ErrMalformed)
	wantTrusteeErr(t, "unknown kind", []byte(`{"foo": 1}`), "none of Trustee's", mr.ErrUnsupported)
	wantTrusteeErr(t, "snp", []byte(`{"attestation_report": {}, "cert_chain": null}`), "member attestation_report: ", mr.ErrUnsupported)
}

// TDX evidence: the quote, the CCEL and the AA event log (text form and
// base64 of the binary form) become the TDX quote, a ccel log and a
// runtime log on RTMR3.
func TestTrusteeTDX(t *testing.T) {
	q := corpusFile(t, "trustee/tdx/tdx_quote_4.dat").Data
	ccel := corpusFile(t, "trustee/eventlog/CCEL_data").Data
	std := base64.StdEncoding.EncodeToString
	rec := aael.Record{Domain: "coco.com", Operation: "op", Content: "x"}
	text, err := aael.AppendTextInit(nil, mr.Zero(mr.SHA384))
	if err != nil {
		t.Fatal(err)
	}
	if text, err = aael.AppendTextLine(text, rec); err != nil {
		t.Fatal(err)
	}
	bin, _, err := aael.AppendEntry(nil, 4, mr.SHA384, rec)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		aa, format string
	}{{string(text), "aael-text"}, {std(bin), "runtime"}} {
		js, _ := json.Marshal(map[string]any{"quote": std(q), "cc_eventlog": std(ccel), "aa_eventlog": c.aa})
		p, kind, err := Trustee(File{Name: "tdx.json", Data: js})
		if err != nil {
			t.Fatalf("%s: %v", c.format, err)
		}
		if kind != TrusteeTDX || p.TDXQuote == nil || !bytes.Equal(p.TDXQuote.Data, q) || len(p.Logs) != 2 {
			t.Fatalf("%s: %s %+v", c.format, kind, p)
		}
		b, err := Build(p)
		if err != nil {
			t.Fatalf("%s: %v", c.format, err)
		}
		if b.Platform != mr.PlatformTDX || b.Logs[0].Format != "ccel" || b.Logs[1].Format != c.format || b.Logs[1].Register != "rtmr3" {
			t.Fatalf("%s: %s %+v", c.format, b.Platform, b.Logs)
		}
	}
	// Without logs, and with a null or empty cc_eventlog (Trustee: none).
	for _, js := range []string{`{"quote":"` + std(q) + `"}`, `{"quote":"` + std(q) + `","cc_eventlog":null}`, `{"quote":"` + std(q) + `","cc_eventlog":""}`} {
		p, _, err := Trustee(File{Name: "tdx.json", Data: []byte(js)})
		if err != nil || len(p.Logs) != 0 {
			t.Fatalf("%.60s: %v %+v", js, err, p.Logs)
		}
	}
	wantTrusteeErr(t, "quote url-base64", []byte(`{"quote":"`+base64.URLEncoding.EncodeToString(q)+`"}`), "member quote: malformed input: not base64", mr.ErrMalformed)
	wantTrusteeErr(t, "aa_eventlog neither", []byte(`{"quote":"`+std(q)+`","aa_eventlog":"domain op x"}`), "member aa_eventlog: ", mr.ErrMalformed)
	wantTrusteeErr(t, "duplicate quote", []byte(`{"quote":"`+std(q)+`","quote":"`+std(q)+`"}`), "duplicate member", mr.ErrMalformed)
	wantTrusteeErr(t, "quote a number", []byte(`{"quote":5}`), "tdx evidence", mr.ErrMalformed)
}

// Trustee TPM evidence (guest-components' TPM attester) imports into the
// bundle of the parts the corpus extracted from it.
func TestTrusteeTPMEqualsSplitParts(t *testing.T) {
	d := "trustee/tpm/"
	pcrs, ak := corpusFile(t, d+"pcrs.serialized"), corpusFile(t, d+"ak_pub.pem")
	split, err := Build(Parts{AK: &ak, TPMQuotes: []TPMQuote{{Attest: corpusFile(t, d+"quote.attest"), Signature: corpusFile(t, d+"quote.tpmt_signature"), PCRs: &pcrs}}})
	if err != nil {
		t.Fatal(err)
	}
	p, kind, err := Trustee(corpusFile(t, d+"tpm_evidence.json"))
	if err != nil || kind != TrusteeTPM {
		t.Fatalf("%s %v", kind, err)
	}
	b, err := Build(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bundleJSON(t, b), bundleJSON(t, split)) {
		t.Error("the whole file's bundle differs from the split parts' bundle")
	}
	// Hostile: a key that is not one, a bare signature, a PCR too few.
	wantTrusteeErr(t, "bad ak_public", editJSON(t, d+"tpm_evidence.json", func(m map[string]any) { m["ak_public"] = "AAAA" }),
		"member ak_public: ", mr.ErrMalformed)
	wantTrusteeErr(t, "bare signature", editJSON(t, d+"tpm_evidence.json", func(m map[string]any) {
		q := m["tpm_quote"].(map[string]any)
		sig, _ := base64.StdEncoding.DecodeString(q["signature"].(string))
		q["signature"] = base64.StdEncoding.EncodeToString(sig[6:])
	}), "member tpm_quote.signature: not a TPMT_SIGNATURE", mr.ErrUnsupported)
	wantTrusteeErr(t, "23 PCRs", editJSON(t, d+"tpm_evidence.json", func(m map[string]any) {
		q := m["tpm_quote"].(map[string]any)
		q["pcrs"] = q["pcrs"].([]any)[1:]
	}), "member tpm_quote.pcrs: ", mr.ErrMalformed)
	wantTrusteeErr(t, "unknown member", editJSON(t, d+"tpm_evidence.json", func(m map[string]any) { m["eventlog"] = "" }),
		"unknown member", mr.ErrMalformed)
}
