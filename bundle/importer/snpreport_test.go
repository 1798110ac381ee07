package importer_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle/importer"
	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
)

// Issue 16 item 7: an SNP report file with bytes after the 1,184-byte
// report was imported (exit 0) and failed verify (exit 1). No producer
// writes them (snpguest serializes the report struct alone): refused at
// import, naming the offset and the count.
func TestSNPReportTrailingBytes(t *testing.T) {
	rd := func(rel string) []byte {
		b, err := os.ReadFile(corpus.Path(t, rel))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	r := rd("go-sev-guest/attestation.bin")
	vcek := &importer.File{Name: "vcek", Data: rd("go-sev-guest/vcek.testcer")}
	if _, err := importer.Build(importer.Parts{SNPReport: &importer.File{Name: "r", Data: r}, VCEK: vcek}); err != nil {
		t.Fatalf("the report alone: %v", err)
	}
	for _, extra := range []int{1, 16, 4000 - 1184} {
		long := append(append([]byte(nil), r...), make([]byte, extra)...)
		_, err := importer.Build(importer.Parts{SNPReport: &importer.File{Name: "long", Data: long}, VCEK: vcek})
		var pe *importer.PartError
		if !errors.As(err, &pe) || pe.Part != importer.PartSNPReport || !errors.Is(err, mr.ErrMalformed) ||
			!strings.Contains(err.Error(), "at byte 1184: ") || !strings.Contains(err.Error(), " bytes after the 1184-byte SNP report") {
			t.Fatalf("%d trailing bytes: %v", extra, err)
		}
	}
}
