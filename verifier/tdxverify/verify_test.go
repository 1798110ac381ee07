package tdxverify

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	tdxabi "github.com/google/go-tdx-guest/abi"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"

	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
)

func readCorpus(t testing.TB, rel string) []byte {
	t.Helper()
	return corpus.Read(t, rel)
}

// expected is the per-quote entry of a corpus EXPECTED.json.
type expected struct {
	Version    int    `json:"version"`
	TeeTCBSVN  string `json:"tee_tcb_svn"`
	MRSeam     string `json:"mrseam"`
	MRTD       string `json:"mrtd"`
	MRConfigID string `json:"mrconfigid"`
	RTMR0      string `json:"rtmr0"`
	RTMR1      string `json:"rtmr1"`
	RTMR2      string `json:"rtmr2"`
	RTMR3      string `json:"rtmr3"`
	ReportData string `json:"report_data"`
	TDAttr     string `json:"td_attributes"`
	XFAM       string `json:"xfam"`
}

func expectedFor(t *testing.T, folder, name string) expected {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(readCorpus(t, folder+"/EXPECTED.json"), &m); err != nil {
		t.Fatal(err)
	}
	raw := m[name]
	if folder == "trustee" {
		var tq map[string]json.RawMessage
		if err := json.Unmarshal(m["tdx_quotes"], &tq); err != nil {
			t.Fatal(err)
		}
		raw = tq[name]
	}
	var e expected
	if err := json.Unmarshal(raw, &e); err != nil || e.MRTD == "" {
		t.Fatalf("EXPECTED.json has no entry %s (%v)", name, err)
	}
	return e
}

// checkRegisters compares the Result with the published values.
func checkRegisters(t *testing.T, r *Result, e expected) {
	t.Helper()
	want := map[string]string{"mrtd": e.MRTD, "rtmr0": e.RTMR0, "rtmr1": e.RTMR1, "rtmr2": e.RTMR2, "rtmr3": e.RTMR3, "mrconfigid": e.MRConfigID}
	seen := 0
	for _, v := range r.Registers {
		if v.Digest.Alg != mr.SHA384 || len(v.Digest.Bytes) != 48 {
			t.Errorf("%s: %v", v.Register.Name, v.Digest)
		}
		if w, ok := want[v.Register.Name]; ok && w != "" {
			seen++
			if got := hex.EncodeToString(v.Digest.Bytes); got != w {
				t.Errorf("%s = %s, published %s", v.Register.Name, got, w)
			}
		}
	}
	if seen < 5 {
		t.Errorf("only %d published registers compared", seen)
	}
	if got := hex.EncodeToString(r.ReportData[:]); got != e.ReportData {
		t.Errorf("report_data = %s, published %s", got, e.ReportData)
	}
	if got := hex.EncodeToString(r.Body.TeeTCBSVN[:]); e.TeeTCBSVN != "" && got != e.TeeTCBSVN {
		t.Errorf("tee_tcb_svn = %s, published %s", got, e.TeeTCBSVN)
	}
	if got := hex.EncodeToString(r.Body.TDAttributes[:]); e.TDAttr != "" && got != e.TDAttr {
		t.Errorf("td_attributes = %s, published %s", got, e.TDAttr)
	}
	if r.Version != e.Version {
		t.Errorf("version %d, published %d", r.Version, e.Version)
	}
}

func at(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func wantCheck(t *testing.T, err error, check string, cause error) *CheckError {
	t.Helper()
	var ce *CheckError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v, want a *CheckError (%s)", err, check)
	}
	if ce.Check != check {
		t.Errorf("failed check %q (%v), want %q", ce.Check, ce.Err, check)
	}
	if cause != nil && !errors.Is(err, cause) {
		t.Errorf("error %v does not wrap %v", err, cause)
	}
	return ce
}

func TestDcapQVLQuoteTrusted(t *testing.T) {
	q := readCorpus(t, "dcap-qvl/tdx_quote")
	c := readCorpus(t, "dcap-qvl/tdx_quote_collateral.json")
	r, err := Verify(q, c, Options{At: at(t, "2025-07-10T00:00:00Z")})
	if err != nil {
		t.Fatalf("not trusted: %v", err)
	}
	checkRegisters(t, r, expectedFor(t, "dcap-qvl", "tdx_quote"))
	if r.TCBStatus != StatusUpToDate || r.FMSPC != "b0c06f000000" {
		t.Errorf("status %q fmspc %q", r.TCBStatus, r.FMSPC)
	}
	if len(r.NotChecked) != 0 {
		t.Errorf("not checked: %v", r.NotChecked)
	}
	joined := strings.Join(r.Checked, "\n")
	for _, w := range []string{"PCK certificate chain", "root CA CRL", "PCK CRL", "TCB info", "QE identity", "TCB status UpToDate"} {
		if !strings.Contains(joined, w) {
			t.Errorf("Checked lacks %q:\n%s", w, joined)
		}
	}
}

// The collateral's validity window: trusted one second before the first
// item of the collateral (here the PCK CRL) expires, not trusted one second
// after, nor after the TCB info's own nextUpdate. (dcap-qvl verifies at the
// TCB info's nextUpdate-1s because it does not check CRL dates; ccmr does.)
func TestDcapQVLCollateralWindow(t *testing.T) {
	q := readCorpus(t, "dcap-qvl/tdx_quote")
	c := readCorpus(t, "dcap-qvl/tdx_quote_collateral.json")
	coll, err := ParseCollateral(c)
	if err != nil {
		t.Fatal(err)
	}
	p, err := coll.parse()
	if err != nil {
		t.Fatal(err)
	}
	first := p.tcbInfo.NextUpdate
	for _, tm := range []time.Time{p.qeID.NextUpdate, p.rootCRL.NextUpdate, p.pckCRL.NextUpdate} {
		if tm.Before(first) {
			first = tm
		}
	}
	if _, err := Verify(q, c, Options{At: first.Add(-time.Second)}); err != nil {
		t.Errorf("at %v-1s: %v", first, err)
	}
	_, err = Verify(q, c, Options{At: first.Add(time.Second)})
	if !errors.Is(err, ErrExpired) {
		t.Errorf("at %v+1s: %v", first, err)
	}
	r, err := Verify(q, c, Options{At: p.tcbInfo.NextUpdate.Add(time.Second)})
	if !errors.Is(err, ErrExpired) {
		t.Errorf("after the TCB info's nextUpdate: %v", err)
	}
	if r == nil || r.TCBStatus != "" {
		t.Errorf("expired collateral still gave a status: %+v", r)
	}
}

func TestDcapQVLChangedMRTD(t *testing.T) {
	q := bytes.Clone(readCorpus(t, "dcap-qvl/tdx_quote"))
	c := readCorpus(t, "dcap-qvl/tdx_quote_collateral.json")
	const mrtdOff = HeaderSize + 16 + 48 + 48 + 8 + 8 + 8
	e := expectedFor(t, "dcap-qvl", "tdx_quote")
	if got := hex.EncodeToString(q[mrtdOff : mrtdOff+48]); got != e.MRTD {
		t.Fatalf("MRTD offset wrong: %s", got)
	}
	q[mrtdOff+7] ^= 0x40
	_, err := Verify(q, c, Options{At: at(t, "2025-07-10T00:00:00Z")})
	wantCheck(t, err, CheckQuoteSig, ErrSignature)
}

func TestV5OutdatedNotTrusted(t *testing.T) {
	q := readCorpus(t, "dcap-qvl/tdx_quote_outdated")
	c := readCorpus(t, "dcap-qvl/tdx_quote_outdated_collateral.json")
	r, err := Verify(q, c, Options{At: at(t, "2026-03-01T00:00:00Z")})
	ce := wantCheck(t, err, CheckTCBLevel, ErrNoTCBLevel)
	// The signature chain and the collateral verified before the TCB
	// judgement; the lowest level the platform misses is OutOfDate.
	joined := strings.Join(r.Checked, "\n")
	for _, w := range []string{"quote v5 (body type 3) signed", "PCK CRL", "TCB info", "QE identity"} {
		if !strings.Contains(joined, w) {
			t.Errorf("Checked lacks %q", w)
		}
	}
	if !strings.Contains(ce.Error(), "OutOfDate") || !strings.Contains(ce.Error(), "SEAMLDR") {
		t.Errorf("error does not name the missed level: %v", ce)
	}
	checkRegisters(t, r, expectedFor(t, "dcap-qvl", "tdx_quote_outdated"))
	if !r.Body.TD15 || r.BodyType != BodyTypeTD15 {
		t.Errorf("not a TD report 1.5: %+v", r.Body)
	}
	if got := hex.EncodeToString(r.Body.TeeTCBSVN2[:]); got != "0d010300000000000000000000000000" {
		t.Errorf("tee_tcb_svn2 %s", got)
	}
	// Without collateral the signature chain alone verifies.
	r, err = Verify(q, nil, Options{At: at(t, "2026-03-01T00:00:00Z")})
	if err != nil {
		t.Fatalf("signature chain: %v", err)
	}
	if !strings.Contains(strings.Join(r.NotChecked, "\n"), "TCB: not checked, no collateral") {
		t.Errorf("NotChecked: %v", r.NotChecked)
	}
}

func TestSPRE4NoMatchingTCBLevel(t *testing.T) {
	q := readCorpus(t, "go-tdx-guest/tdx_prod_quote_SPR_E4.dat")
	c := readCorpus(t, "go-tdx-guest/collateral.derived.json")
	r, err := Verify(q, c, Options{At: at(t, "2023-07-01T00:00:00Z")})
	wantCheck(t, err, CheckTCBLevel, ErrNoTCBLevel)
	checkRegisters(t, r, expectedFor(t, "go-tdx-guest", "tdx_prod_quote_SPR_E4.dat"))
	if r.FMSPC != "50806f000000" {
		t.Errorf("fmspc %s", r.FMSPC)
	}
	// After 2023-07-18 the TCB info has expired (the QE identity even
	// earlier, 2023-07-08: the first expired item is reported).
	_, err = Verify(q, c, Options{At: at(t, "2023-07-19T00:00:00Z")})
	if !errors.Is(err, ErrExpired) {
		t.Errorf("2023-07-19: %v", err)
	}
}

// The quote's trailing bytes: the SPR E4 file carries a text after the
// signature data; it is refused, but only after every other check, so a
// quote that fails a check names that check.
func TestSPRE4TrailingText(t *testing.T) {
	q := readCorpus(t, "go-tdx-guest/tdx_prod_quote_SPR_E4.dat")
	_, err := Verify(q, nil, Options{At: at(t, "2023-07-01T00:00:00Z")})
	wantCheck(t, err, CheckStructure, mr.ErrMalformed)
	p, err := ParseQuote(q)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(q[:p.End], nil, Options{At: at(t, "2023-07-01T00:00:00Z")}); err != nil {
		t.Errorf("signed part: %v", err)
	}
}

func TestAllowedTCB(t *testing.T) {
	q := readCorpus(t, "dcap-qvl/tdx_quote")
	c := readCorpus(t, "dcap-qvl/tdx_quote_collateral.json")
	// Allowed statuses add to UpToDate: allowing SWHardeningNeeded does
	// not refuse an UpToDate platform (issue 15 item 8).
	r, err := Verify(q, c, Options{At: at(t, "2025-07-10T00:00:00Z"), AllowedTCB: []string{StatusSWHardeningNeeded}})
	if err != nil || r.TCBStatus != StatusUpToDate {
		t.Fatalf("UpToDate with SWHardeningNeeded also allowed: %v", err)
	}
	// A name that is no TCB status is an error, not an allowance.
	if _, err := Verify(q, c, Options{At: at(t, "2025-07-10T00:00:00Z"), AllowedTCB: []string{"Bogus"}}); !errors.Is(err, mr.ErrMalformed) {
		t.Fatalf("unknown status: %v", err)
	}
}

func TestCollateralTampered(t *testing.T) {
	q := readCorpus(t, "dcap-qvl/tdx_quote")
	c := readCorpus(t, "dcap-qvl/tdx_quote_collateral.json")
	var coll map[string]string
	if err := json.Unmarshal(c, &coll); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		field, from, to string
		check           string
		cause           error
	}{
		{"tcb_info", `"tcbEvaluationDataNumber":17`, `"tcbEvaluationDataNumber":16`, CheckTCBInfo, ErrSignature},
		{"qe_identity", `"isvprodid":2`, `"isvprodid":3`, CheckQEIdentity, ErrSignature},
		{"tcb_info_signature", "0", "1", CheckTCBInfo, ErrSignature},
	}
	for _, tc := range cases {
		m := map[string]string{}
		for k, v := range coll {
			m[k] = v
		}
		if !strings.Contains(m[tc.field], tc.from) {
			t.Fatalf("%s lacks %q", tc.field, tc.from)
		}
		m[tc.field] = strings.Replace(m[tc.field], tc.from, tc.to, 1)
		b, _ := json.Marshal(m)
		_, err := Verify(q, b, Options{At: at(t, "2025-07-10T00:00:00Z")})
		wantCheck(t, err, tc.check, tc.cause)
	}
	// Collateral of another platform (the v5 quote's FMSPC).
	other := readCorpus(t, "dcap-qvl/tdx_quote_outdated_collateral.json")
	_, err := Verify(q, other, Options{At: at(t, "2026-03-01T00:00:00Z")})
	if err == nil {
		t.Error("collateral of another platform accepted")
	}
	// Collateral that does not parse is malformed input, not a verdict.
	if _, err := Verify(q, []byte(`{"tcb_info":1}`), Options{}); !errors.Is(err, mr.ErrMalformed) {
		t.Errorf("bad collateral: %v", err)
	}
}

func TestDebugTD(t *testing.T) {
	q := readCorpus(t, "trustee/tdx/tdx_quote_4.dat")
	_, err := Verify(q, nil, Options{At: at(t, "2024-06-01T00:00:00Z")})
	wantCheck(t, err, CheckDebug, ErrDebugTD)
	r, err := Verify(q, nil, Options{At: at(t, "2024-06-01T00:00:00Z"), AllowDebug: true})
	if err != nil {
		t.Fatal(err)
	}
	checkRegisters(t, r, expectedFor(t, "trustee", "tdx/tdx_quote_4.dat"))
}

// Every quote in the corpus whose signature chain is known to verify.
func TestCorpusSignatureChains(t *testing.T) {
	for _, tc := range []struct{ file, at string }{
		{"dcap-qvl/tdx_quote", "2025-06-01T00:00:00Z"},
		{"dcap-qvl/quote-from-tappd.bin", "2025-06-01T00:00:00Z"},
		{"dcap-qvl/tdx-quote-hex.bin", "2025-06-01T00:00:00Z"},
		{"dstack/simulator-quote.bin", "2025-06-01T00:00:00Z"},
		{"dstack/ra-tls-tdx_quote.bin", "2025-06-01T00:00:00Z"},
		{"trustee/tdx/tdx_quote_5.dat", "2025-06-01T00:00:00Z"},
		{"trustee/tdx/tdx_quote_6.dat", "2025-06-01T00:00:00Z"},
		{"trustee/az-tdx-vtpm/td-quote.bin", "2024-06-01T00:00:00Z"},
	} {
		q := readCorpus(t, tc.file)
		if _, err := Verify(q, nil, Options{At: at(t, tc.at)}); err != nil {
			t.Errorf("%s: %v", tc.file, err)
		}
	}
}

// ParseQuote against go-tdx-guest's parser on every v4 quote: two
// independent readings of the same bytes.
func TestParseAgreesWithGoTDXGuest(t *testing.T) {
	for _, f := range []string{"dcap-qvl/tdx_quote", "dcap-qvl/quote-from-tappd.bin", "go-tdx-guest/tdx_prod_quote_SPR_E4.dat",
		"dstack/simulator-quote.bin", "trustee/tdx/tdx_quote_4.dat", "trustee/tdx/tdx_quote_6.dat"} {
		raw := readCorpus(t, f)
		q, err := ParseQuote(raw)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		pq, err := tdxabi.QuoteToProto(raw)
		if err != nil {
			t.Fatalf("%s: go-tdx-guest: %v", f, err)
		}
		g := pq.(*tdxpb.QuoteV4)
		b := g.GetTdQuoteBody()
		qc := g.GetSignedData().GetCertificationData().GetQeReportCertificationData()
		pairs := []struct {
			name      string
			mine, its []byte
		}{
			{"tee_tcb_svn", q.Body.TeeTCBSVN[:], b.GetTeeTcbSvn()},
			{"mrseam", q.Body.MRSeam[:], b.GetMrSeam()},
			{"mrsignerseam", q.Body.MRSignerSeam[:], b.GetMrSignerSeam()},
			{"td_attributes", q.Body.TDAttributes[:], b.GetTdAttributes()},
			{"xfam", q.Body.XFAM[:], b.GetXfam()},
			{"mrtd", q.Body.MRTD[:], b.GetMrTd()},
			{"mrconfigid", q.Body.MRConfigID[:], b.GetMrConfigId()},
			{"mrowner", q.Body.MROwner[:], b.GetMrOwner()},
			{"mrownerconfig", q.Body.MROwnerConfig[:], b.GetMrOwnerConfig()},
			{"rtmr0", q.Body.RTMR[0][:], b.GetRtmrs()[0]},
			{"rtmr3", q.Body.RTMR[3][:], b.GetRtmrs()[3]},
			{"report_data", q.Body.ReportData[:], b.GetReportData()},
			{"signature", q.Signature, g.GetSignedData().GetSignature()},
			{"attest key", q.AttestKey, g.GetSignedData().GetEcdsaAttestationKey()},
			{"qe report sig", q.QEReportSig, qc.GetQeReportSignature()},
			{"qe auth data", q.QEAuthData, qc.GetQeAuthData().GetData()},
			{"pck chain", q.PCKChain, qc.GetPckCertificateChainData().GetPckCertChain()},
		}
		for _, p := range pairs {
			if !bytes.Equal(p.mine, p.its) {
				t.Errorf("%s %s: %x, go-tdx-guest %x", f, p.name, p.mine, p.its)
			}
		}
		rep, err := tdxabi.EnclaveReportToAbiBytes(qc.GetQeReport())
		if err != nil || !bytes.Equal(rep, q.QEReport) {
			t.Errorf("%s QE report differs (%v)", f, err)
		}
	}
}

// One byte changed anywhere in a quote must never leave it trusted.
func TestEveryByteMatters(t *testing.T) {
	for _, tc := range []struct{ file, at string }{
		{"dcap-qvl/tdx_quote", "2025-07-10T00:00:00Z"},
		{"dcap-qvl/tdx_quote_outdated", "2026-03-01T00:00:00Z"},
	} {
		orig := readCorpus(t, tc.file)
		when := at(t, tc.at)
		if _, err := Verify(orig, nil, Options{At: when}); err != nil {
			t.Fatalf("%s: untouched quote: %v", tc.file, err)
		}
		step := 1
		if testing.Short() {
			step = 13
		}
		q := bytes.Clone(orig)
		for i := 0; i < len(q); i += step {
			for _, x := range []byte{0x01, 0x80} {
				q[i] ^= x
				if _, err := Verify(q, nil, Options{At: when}); err == nil {
					t.Errorf("%s: byte %d ^ %#x still verifies", tc.file, i, x)
				}
				q[i] ^= x
			}
		}
	}
}

func TestMalformed(t *testing.T) {
	q := readCorpus(t, "dcap-qvl/tdx_quote")
	p, err := ParseQuote(q)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 47, 48, 631, 636, 700, p.End - 1} {
		if _, err := Verify(q[:n], nil, Options{}); !errors.Is(err, mr.ErrMalformed) {
			t.Errorf("truncated to %d: %v", n, err)
		}
	}
	v3 := bytes.Clone(q)
	v3[0] = 3
	if _, err := Verify(v3, nil, Options{}); !errors.Is(err, mr.ErrUnsupported) {
		t.Errorf("version 3: %v", err)
	}
}

func BenchmarkVerifyV4WithCollateral(b *testing.B) {
	q := readCorpus(b, "dcap-qvl/tdx_quote")
	c := readCorpus(b, "dcap-qvl/tdx_quote_collateral.json")
	when := time.Date(2025, 7, 10, 0, 0, 0, 0, time.UTC)
	for b.Loop() {
		if _, err := Verify(q, c, Options{At: when}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyV5(b *testing.B) {
	q := readCorpus(b, "dcap-qvl/tdx_quote_outdated")
	when := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for b.Loop() {
		if _, err := Verify(q, nil, Options{At: when}); err != nil {
			b.Fatal(err)
		}
	}
}
