package importer

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sevabi "github.com/google/go-sev-guest/abi"

	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/internal/snpserdetest"
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
	addSNPSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, _, err := Trustee(File{Name: "f", Data: b})
		if err == nil {
			_, _ = Build(p)
		}
	})
}

// addSNPSeeds adds the producer-written snp evidence files of
// testdata/trustee-snp (always), and one of each serde form the test
// encoder writes from the corpus's reports (when the corpus is present:
// without it, one line is logged, or the target fails when
// CCMR_REQUIRE_CORPUS=1, as for every corpus seed).
func addSNPSeeds(f *testing.F) {
	for _, n := range []string{"aa-evidence-openshift.json", "trustee-e2e-evidence-2024.json", "trustee-e2e-evidence-2025.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", "trustee-snp", n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	v2, v3 := snpserdetest.Named(f, "trustee-v2-vcek"), snpserdetest.Named(f, "trustee-v3-vlek")
	files := corpus.Seeds(f, v3.Report, v3.Key, v2.Report, v2.Key)
	if len(files) != 4 {
		return // corpus.Seeds said which is missing
	}
	raw3, der3 := v3.Parse(f, files[0], files[1])
	raw2, der2 := v2.Parse(f, files[2], files[3])
	for _, form := range []string{snpserdetest.Sev11, snpserdetest.Sev1, snpserdetest.Sev61} {
		f.Add(snpserdetest.EvidenceJSON(f, snpserdetest.Encode(f, form, raw3), v3.Type, der3))
	}
	f.Add(snpserdetest.EvidenceJSON(f, snpserdetest.Encode(f, snpserdetest.Sev63, raw2), v2.Type, der2))
}

// FuzzTrusteeSNP: the snp decoder alone, seeded with each serde form.
// What it accepts is a 1184-byte report that go-sev-guest reads back,
// and whose members it re-reads the same way (decoding is a function of
// the input: twice gives the same bytes).
func FuzzTrusteeSNP(f *testing.F) {
	addSNPSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, kind, err := Trustee(File{Name: "f", Data: b})
		if err != nil || !strings.HasPrefix(kind, "snp/") {
			return
		}
		if len(p.SNPReport.Data) != sevabi.ReportSize {
			t.Fatalf("%s: a %d-byte report", kind, len(p.SNPReport.Data))
		}
		p2, _, err := Trustee(File{Name: "f", Data: b})
		if err != nil || !bytes.Equal(p2.SNPReport.Data, p.SNPReport.Data) {
			t.Fatalf("a second decode differs: %v", err)
		}
		_, _ = Build(p)
	})
}
