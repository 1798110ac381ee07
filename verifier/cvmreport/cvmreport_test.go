package cvmreport_test

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"os"
	"testing"

	"github.com/ccmr-dev/ccmr/internal/modcache"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/cvmreport"
)

// real reads a real report shipped by the library that parses it, in place
// in the module cache.
func real(t testing.TB, mod, path string) []byte {
	t.Helper()
	p, err := modcache.File(mod, path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReportData(t *testing.T) {
	n64 := bytes.Repeat([]byte{7}, 64)
	if rd := cvmreport.ReportData(n64); !bytes.Equal(rd[:], n64) {
		t.Errorf("a 64-byte nonce is not copied: %x", rd)
	}
	short := []byte("nonce")
	rd := cvmreport.ReportData(short)
	if !bytes.Equal(rd[:len(short)], short) || !bytes.Equal(rd[len(short):], make([]byte, 64-len(short))) {
		t.Errorf("a short nonce is not zero-padded: %x", rd)
	}
	// 65 bytes: hashed, so a nonce of 64 bytes plus one cannot collide with
	// its own prefix.
	n65 := append(bytes.Clone(n64), 0)
	if rd := cvmreport.ReportData(n65); rd != sha512.Sum512(n65) || rd == cvmreport.ReportData(n64) {
		t.Errorf("a 65-byte nonce is not replaced by its SHA-512: %x", rd)
	}
}

// The real TDX quote and SNP report parse; cut or empty ones are refused
// as malformed (the backends' tests compare the values with the published
// ones).
func TestRealReportsAndCuts(t *testing.T) {
	q := real(t, "github.com/google/go-tdx-guest", "testing/testdata/tdx_prod_quote_SPR_E4.dat")
	vals, err := cvmreport.TDXQuoteRegisters(q)
	if err != nil || len(vals) != len(cvmreport.TDXRegisters) {
		t.Fatalf("real TDX quote: %d values, %v", len(vals), err)
	}
	// Not len(q)-1: go-tdx-guest reads the certification data loosely and
	// accepts the real quote cut by one byte; tdxverify checks the signature.
	for _, n := range []int{0, 4, 48, 631} {
		if _, err := cvmreport.TDXQuoteRegisters(q[:n]); !errors.Is(err, mr.ErrMalformed) {
			t.Errorf("TDX quote cut at %d: %v", n, err)
		}
	}
	r := real(t, "github.com/google/go-sev-guest", "verify/testdata/attestation.bin")
	if vals, err := cvmreport.SNPReportRegisters(r); err != nil || len(vals) != 3 {
		t.Fatalf("real SNP report: %d values, %v", len(vals), err)
	}
	for _, n := range []int{0, 0x90, len(r) - 1} {
		if _, err := cvmreport.SNPReportRegisters(r[:n]); !errors.Is(err, mr.ErrMalformed) {
			t.Errorf("SNP report cut at %d: %v", n, err)
		}
	}
	if _, err := cvmreport.SNPCertificates([]byte{1, 2, 3}); !errors.Is(err, mr.ErrMalformed) {
		t.Errorf("3-byte certificate table: %v", err)
	}
	if cs, err := cvmreport.SNPCertificates(nil); cs != nil || err != nil {
		t.Errorf("no certificate table: %v, %v", cs, err)
	}
}

func FuzzTDXQuoteRegisters(f *testing.F) {
	f.Add(real(f, "github.com/google/go-tdx-guest", "testing/testdata/tdx_prod_quote_SPR_E4.dat"))
	f.Add([]byte{4, 0, 2, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		vals, err := cvmreport.TDXQuoteRegisters(b)
		if err == nil && len(vals) != 8 {
			t.Fatalf("%d values", len(vals))
		}
	})
}

func FuzzSNPReportRegisters(f *testing.F) {
	f.Add(real(f, "github.com/google/go-sev-guest", "verify/testdata/attestation.bin"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := cvmreport.SNPReportRegisters(b); err == nil && len(v) != 3 {
			t.Fatal(len(v))
		}
	})
}

func FuzzSNPCertificates(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 24)) // one all-zero entry: the table's terminator
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = cvmreport.SNPCertificates(b) })
}
