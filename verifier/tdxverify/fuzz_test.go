package tdxverify

import (
	"errors"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
)

// seedQuotes adds the corpus quotes (v4 and v5) as seeds when the corpus
// is present.
func seedQuotes(f *testing.F) {
	for _, b := range corpus.Seeds(f, "dcap-qvl/tdx_quote", "dcap-qvl/tdx_quote_outdated", "trustee/tdx/tdx_quote_5.dat",
		"go-tdx-guest/tdx_prod_quote_SPR_E4.dat") {
		f.Add(b)
	}
}

// FuzzParseQuote: the v4/v5 parser never panics, fails only with
// mr.ErrMalformed or mr.ErrUnsupported, and what it accepts is
// self-consistent.
func FuzzParseQuote(f *testing.F) {
	seedQuotes(f)
	f.Add([]byte{5, 0, 2, 0, 0x81, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := ParseQuote(b)
		if err != nil {
			if !errors.Is(err, mr.ErrMalformed) && !errors.Is(err, mr.ErrUnsupported) {
				t.Fatalf("error %v wraps neither ErrMalformed nor ErrUnsupported", err)
			}
			return
		}
		if q.End > len(b) || len(q.Signed) > q.End || len(q.Signature) != SignatureSize || len(q.QEReport) != QEReportSize {
			t.Fatalf("inconsistent quote: end %d len %d signed %d", q.End, len(b), len(q.Signed))
		}
		if q.Body.TD15 != (q.BodyType == BodyTypeTD15) {
			t.Fatalf("body type %d, TD15 %v", q.BodyType, q.Body.TD15)
		}
	})
}

// FuzzVerify: full verification of mutated quotes never panics and never
// trusts a quote the seeds did not already make trusted... at least it
// returns a verdict or a parse error.
func FuzzVerify(f *testing.F) {
	seedQuotes(f)
	when := time.Date(2025, 7, 10, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Verify(b, nil, Options{At: when})
		var ce *CheckError
		switch {
		case err == nil:
			if r == nil || len(r.Registers) != 8 {
				t.Fatal("trusted without registers")
			}
		case errors.As(err, &ce):
			if r == nil {
				t.Fatal("check error without a result")
			}
		case errors.Is(err, mr.ErrMalformed), errors.Is(err, mr.ErrUnsupported):
		default:
			t.Fatalf("unclassified error %v", err)
		}
	})
}
