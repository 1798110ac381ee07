package azure

import (
	"math/rand/v2"
	"testing"

	"github.com/ccmr-dev/ccmr/internal/corpus"
)

// FuzzParse: no input panics Parse, ReportData or AKPub; seeded from the
// corpus's two real HCL reports when present.
func FuzzParse(f *testing.F) {
	for _, b := range corpus.Seeds(f, "trustee/az-snp-vtpm/hcl-report.bin", "trustee/az-tdx-vtpm/hcl-report.bin") {
		f.Add(b)
	}
	f.Add([]byte("HCLA"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Parse(b)
		if err != nil {
			return
		}
		_ = r.ReportData()
		_ = r.RuntimeDataHash()
		_, _ = r.AKPub()
	})
}

// TestParseMutations: 20000 random mutations of the real SNP HCL report
// (1-4 bytes each, fixed seed) never panic Parse and its accessors. It
// complements FuzzParse, whose throughput with the 2.6 kB seeds was very
// low on the shared development machine.
func TestParseMutations(t *testing.T) {
	hcl := corpus.Read(t, "trustee/az-snp-vtpm/hcl-report.bin")
	r := rand.New(rand.NewPCG(1, 2))
	parsed := 0
	for i := 0; i < 20000; i++ {
		b := append([]byte(nil), hcl...)
		for j := 0; j < 1+r.IntN(4); j++ {
			b[r.IntN(len(b))] = byte(r.IntN(256))
		}
		if rep, err := Parse(b); err == nil {
			parsed++
			_ = rep.ReportData()
			_ = rep.RuntimeDataHash()
			_, _ = rep.AKPub()
		}
	}
	if parsed == 0 {
		t.Fatal("no mutation parsed: the test exercises nothing past the header")
	}
}
