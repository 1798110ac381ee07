package azure

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/log/tcg/corpus"
)

// FuzzParse: no input panics Parse, ReportData or AKPub; seeded from the
// corpus's two real HCL reports when present.
func FuzzParse(f *testing.F) {
	if dir, err := corpus.Dir(); err == nil {
		for _, rel := range []string{"trustee/az-snp-vtpm/hcl-report.bin", "trustee/az-tdx-vtpm/hcl-report.bin"} {
			if b, err := os.ReadFile(filepath.Join(dir, rel)); err == nil {
				f.Add(b)
			}
		}
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
