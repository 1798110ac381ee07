package verifier_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier"
	"github.com/ccmr-dev/ccmr/verifier/tdxverify"
)

// Issue 16 item 6: the expected nonce n is checked against the signed
// report data (n zero-padded to 64 bytes) whatever nonce the bundle stored.
// go-sev-guest's real report carries 0102030405 zero-padded.
func TestNonceRule_SNPReportDataIsTheNonce(t *testing.T) {
	b, _, at := goSevGuest(t)
	n := []byte{1, 2, 3, 4, 5}
	if !bytes.Equal(b.Nonce, append(n, make([]byte, 59)...)) {
		t.Fatalf("the corpus report's REPORT_DATA changed: %x", b.Nonce)
	}
	pol := &verifier.Policy{SNP: &verifier.SNPPolicy{AllowDebug: true}}
	for name, stored := range map[string][]byte{"whole report data (import without --nonce)": b.Nonce, "no nonce": nil, "the short nonce": n} {
		t.Run(name, func(t *testing.T) {
			c := *b
			c.Nonce = stored
			rep := hverify(t, &c, verifier.Options{At: at, Nonce: n, Policy: pol})
			trusted(t, rep)
			if !bytes.Contains([]byte(text(rep)), []byte("REPORT_DATA is the expected nonce zero-padded to 64 bytes")) {
				t.Fatalf("the report does not say how the nonce was checked:\n%s", text(rep))
			}
			refused(t, hverify(t, &c, verifier.Options{At: at, Nonce: []byte{1, 2, 3, 4, 6}, Policy: pol}), "nonce differs")
			// The 64-byte form is the same nonce.
			trusted(t, hverify(t, &c, verifier.Options{At: at, Nonce: append(n, make([]byte, 59)...), Policy: pol}))
		})
	}
}

// Attack: the bundle's nonce field is rewritten to the expected nonce; the
// signed report data is another one. Refused however the field is set.
func TestNonceRule_BundleNonceRewritten(t *testing.T) {
	r := cfile(t, "trustee/snp/test-report.bin").Data
	v := cfile(t, "trustee/snp/test-vcek.der").Data
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	n := []byte{1, 2, 3, 4, 5}
	b := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformSNP, Nonce: n,
		Evidence: bundle.Evidence{Report: r, Certificates: [][]byte{v}}}
	refused(t, hverify(t, b, verifier.Options{At: at, Nonce: n}), "the bundle's nonce is not what the report's REPORT_DATA binds")
	// Without an expected nonce the lie is refused too: the field misstates the evidence.
	refused(t, hverify(t, b, verifier.Options{At: at}), "the bundle's nonce is not what")
	// Stored nothing, expected n: the report data decides.
	b.Nonce = nil
	refused(t, hverify(t, b, verifier.Options{At: at, Nonce: n}), "nonce differs")
	// The report's own 32 bytes are its nonce.
	trusted(t, hverify(t, b, verifier.Options{At: at, Nonce: r[0x50 : 0x50+32]}))
}

// Attack: the report data starts with n but the padding is not zero (a
// report made for n||x); n alone is not proven fresh.
func TestNonceRule_NonZeroPadding(t *testing.T) {
	r := cfile(t, "trustee/snp/test-report.bin").Data
	v := cfile(t, "trustee/snp/test-vcek.der").Data
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	b := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformSNP, Nonce: r[0x50 : 0x50+64],
		Evidence: bundle.Evidence{Report: r, Certificates: [][]byte{v}}}
	refused(t, hverify(t, b, verifier.Options{At: at, Nonce: r[0x50 : 0x50+16]}), "nonce differs")
	refused(t, hverify(t, b, verifier.Options{At: at, Nonce: r[0x50 : 0x50+31]}), "nonce differs")

	// TDX: the dcap-qvl quote's REPORTDATA has 64 non-zero bytes.
	q := cfile(t, "dcap-qvl/tdx_quote").Data
	qr, err := tdxverify.ParseQuote(q)
	if err != nil {
		t.Fatal(err)
	}
	tb := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTDX, Evidence: bundle.Evidence{Report: q},
		Collateral: &bundle.Collateral{TDX: cfile(t, "dcap-qvl/tdx_quote_collateral.json").Data}}
	tat := time.Date(2025, 7, 10, 0, 0, 0, 0, time.UTC)
	refused(t, hverify(t, tb, verifier.Options{At: tat, Nonce: qr.Body.ReportData[:32]}), "nonce differs")
	trusted(t, hverify(t, tb, verifier.Options{At: tat, Nonce: qr.Body.ReportData[:]}))
}

// TDX: a quote whose REPORTDATA is 32 bytes zero-padded passes with those
// 32 bytes as the nonce, with no nonce stored or the whole 64 stored.
func TestNonceRule_TDXShortNonce(t *testing.T) {
	q := cfile(t, "dcap-qvl/tdx_quote_outdated").Data
	qr, err := tdxverify.ParseQuote(q)
	if err != nil {
		t.Fatal(err)
	}
	n := qr.Body.ReportData[:32]
	if !bytes.Equal(qr.Body.ReportData[32:], make([]byte, 32)) {
		t.Fatal("the corpus quote's REPORTDATA is no longer 32 bytes zero-padded")
	}
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, stored := range [][]byte{nil, qr.Body.ReportData[:], n} {
		b := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTDX, Nonce: stored, Evidence: bundle.Evidence{Report: q}}
		o := verifier.Options{At: at, Nonce: n, AllowMissingCollateral: true}
		trusted(t, hverify(t, b, o))
		o.Nonce = append(append([]byte(nil), n[:31]...), n[31]^1)
		refused(t, hverify(t, b, o), "nonce differs")
	}
	// Stored nonce rewritten to the expected one, report data another.
	b := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTDX, Nonce: []byte("expected"), Evidence: bundle.Evidence{Report: q}}
	refused(t, hverify(t, b, verifier.Options{At: at, Nonce: []byte("expected"), AllowMissingCollateral: true}), "the bundle's nonce is not what the quote's REPORTDATA binds")
}

// TPM: qualifying data = n. A bundle nonce rewritten to the expected one
// while the quote signs another is refused.
func TestNonceRule_TPMQualifyingData(t *testing.T) {
	k := newAK(t)
	pub := pubPEM(t, &k.PublicKey)
	q := swQuote(t, k, mr.SHA256, map[int][]byte{0: pcrVal(mr.SHA256, 1)}, []byte("signed"), 1, 0)
	trusted(t, hverify(t, tpmBundle(pub, []byte("signed"), q), verifier.Options{TrustedKeys: [][]byte{pub}, Nonce: []byte("signed")}))
	refused(t, hverify(t, tpmBundle(pub, []byte("signed"), q), verifier.Options{TrustedKeys: [][]byte{pub}, Nonce: []byte("expected")}), "qualifying data is not the expected nonce")
	refused(t, hverify(t, tpmBundle(pub, []byte("expected"), q), verifier.Options{TrustedKeys: [][]byte{pub}, Nonce: []byte("expected")}), "qualifying data")
	refused(t, hverify(t, tpmBundle(pub, nil, q), verifier.Options{TrustedKeys: [][]byte{pub}, Nonce: []byte("expected")}), "qualifying data")
}
