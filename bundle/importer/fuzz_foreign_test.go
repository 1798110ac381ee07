package importer

import (
	"testing"

	"github.com/ccmr-dev/ccmr/internal/corpus"
)

// FuzzGoTPM: no input panics GoTPM or Build on what it returns; seeded
// from the corpus's real GCE attestations.
func FuzzGoTPM(f *testing.F) {
	for _, b := range corpus.Seeds(f, "go-tpm-tools/attestations/gce-cos-85-nonce9009.pb", "go-tpm-tools/attestations/gce-cos-85-no-nonce.pb") {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := GoTPM(File{Name: "f", Data: b})
		if err == nil {
			_, _ = Build(p)
		}
	})
}

// FuzzTrustee: no input panics Trustee or Build on what it returns;
// seeded from every Trustee evidence file of the corpus.
func FuzzTrustee(f *testing.F) {
	for _, b := range corpus.Seeds(f, "trustee/az-snp-vtpm/evidence-v0.json", "trustee/az-snp-vtpm/evidence-v1.json",
		"trustee/az-snp-vtpm/evidence-v2.json", "trustee/az-tdx-vtpm/evidence-v0.json", "trustee/az-tdx-vtpm/evidence-v1.json", "trustee/tpm/tpm_evidence.json") {
		f.Add(b)
	}
	f.Add([]byte(`{"quote":"AAAA","cc_eventlog":null,"aa_eventlog":"INIT sha384/00"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, _, err := Trustee(File{Name: "f", Data: b})
		if err == nil {
			_, _ = Build(p)
		}
	})
}
