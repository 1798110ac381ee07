package tdxverify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	tdxabi "github.com/google/go-tdx-guest/abi"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"
	gotdxverify "github.com/google/go-tdx-guest/verify"
)

// Verify no longer runs go-tdx-guest's verify.TdxQuote after its own
// checks (that repeated every signature and chain check); this test keeps
// the two independent readings side by side: on every v4 corpus quote both
// accept, and with one byte changed in each part both refuse.
func TestAgreesWithGoTDXGuest(t *testing.T) {
	when := at(t, "2025-06-01T00:00:00Z")
	for _, f := range []string{"dcap-qvl/tdx_quote", "dcap-qvl/quote-from-tappd.bin", "dstack/simulator-quote.bin",
		"trustee/tdx/tdx_quote_6.dat"} {
		raw := readCorpus(t, f)
		q, err := ParseQuote(raw)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		// Offsets in the body (mrtd), the signature, the QE report and the
		// PCK leaf certificate's signature value.
		for _, off := range []int{-1, 48 + 136, len(q.Signed) + 4 + 10, len(q.Signed) + 4 + 128 + 6 + 100, q.End - 200} {
			b := append([]byte(nil), raw...)
			if off >= 0 {
				b[off] ^= 1
			}
			_, mine := Verify(b, nil, Options{At: when})
			pq, perr := tdxabi.QuoteToProto(b)
			var its error = perr
			if perr == nil {
				roots, _ := DefaultRoots()
				its = gotdxverify.TdxQuote(pq.(*tdxpb.QuoteV4), &gotdxverify.Options{Now: when, TrustedRoots: roots})
			}
			if (mine == nil) != (its == nil) {
				t.Errorf("%s byte %d: ccmr %v, go-tdx-guest %v", f, off, mine, its)
			}
			if off < 0 && mine != nil {
				t.Errorf("%s: untouched quote: %v", f, mine)
			}
		}
	}
}

func testCert(t *testing.T, cn string, curve elliptic.Curve, alg x509.SignatureAlgorithm) *x509.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), SignatureAlgorithm: alg}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Intel's PCK certificate profile, which go-tdx-guest enforced on v4 and
// ccmr now enforces itself on v4 and v5: a certificate off the profile is
// refused even when its signature would verify.
func TestPCKProfile(t *testing.T) {
	p256, sha256 := elliptic.P256(), x509.ECDSAWithSHA256
	good := func() []*x509.Certificate {
		return []*x509.Certificate{testCert(t, cnPCKCrt, p256, sha256), testCert(t, cnPCKCA, p256, sha256), testCert(t, cnRoot, p256, sha256)}
	}
	if err := pckProfile(good()); err != nil {
		t.Fatalf("profile chain refused: %v", err)
	}
	for _, tc := range []struct {
		name string
		i    int
		c    *x509.Certificate
		want string
	}{
		{"P-384 leaf key", 0, testCert(t, cnPCKCrt, elliptic.P384(), x509.ECDSAWithSHA384), "signature algorithm"},
		{"SHA-384 CA signature", 1, testCert(t, cnPCKCA, p256, x509.ECDSAWithSHA384), "signature algorithm"},
		{"P-384 root key, SHA-256 signature", 2, testCert(t, cnRoot, elliptic.P384(), sha256), "P-256"},
		{"processor CA", 1, testCert(t, "Intel SGX PCK Processor CA", p256, sha256), "want \"Intel SGX PCK Platform CA\""},
		{"other root", 2, testCert(t, "Intel SGX Root CA 2", p256, sha256), "want \"Intel SGX Root CA\""},
		{"other leaf", 0, testCert(t, "Intel SGX TCB Signing", p256, sha256), "want \"Intel SGX PCK Certificate\""},
	} {
		chain := good()
		chain[tc.i] = tc.c
		err := pckProfile(chain)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	v1 := good()
	v1[0].Version = 1
	if err := pckProfile(v1); err == nil || !strings.Contains(err.Error(), "version 1") {
		t.Errorf("X.509 v1 leaf: %v", err)
	}
}

// BenchmarkVerifyV4 and BenchmarkGoTDXGuestTdxQuote time the same corpus
// quote without collateral: ccmr's one path against go-tdx-guest's
// verify.TdxQuote alone (raw bytes to proto included, as ccmr's includes
// parsing). Issue 17 item 6 asks for ccmr within 1.1x.
func BenchmarkVerifyV4(b *testing.B) {
	q := readCorpus(b, "dcap-qvl/tdx_quote")
	when := time.Date(2025, 7, 10, 0, 0, 0, 0, time.UTC)
	roots, err := DefaultRoots()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Verify(q, nil, Options{At: when, Roots: roots}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGoTDXGuestTdxQuote(b *testing.B) {
	q := readCorpus(b, "dcap-qvl/tdx_quote")
	when := time.Date(2025, 7, 10, 0, 0, 0, 0, time.UTC)
	roots, err := DefaultRoots()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := gotdxverify.RawTdxQuote(q, &gotdxverify.Options{Now: when, TrustedRoots: roots}); err != nil {
			b.Fatal(err)
		}
	}
}

// The embedded root is parsed once and shared by Verify; DefaultRoots
// hands out a copy, so a caller adding to it changes nothing for others.
func TestDefaultRootsCopy(t *testing.T) {
	a, err := DefaultRoots()
	if err != nil {
		t.Fatal(err)
	}
	a.AddCert(testCert(t, cnRoot, elliptic.P256(), x509.ECDSAWithSHA256))
	b, err := DefaultRoots()
	if err != nil {
		t.Fatal(err)
	}
	if a.Equal(b) {
		t.Error("a caller's change to DefaultRoots reached the next call")
	}
	shared, _ := defaultRoots()
	if !b.Equal(shared) {
		t.Error("DefaultRoots is not the embedded root")
	}
}
