package snpverify

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
)

// FuzzVerify: mutated reports and certificates never panic, and every
// failure is either malformed input or a *CheckError.
func FuzzVerify(f *testing.F) {
	if d, err := corpus.Dir(); err == nil {
		rep, err1 := os.ReadFile(filepath.Join(d, "go-sev-guest/attestation.bin"))
		cert, err2 := os.ReadFile(filepath.Join(d, "go-sev-guest/vcek.testcer"))
		if err1 == nil && err2 == nil {
			f.Add(rep, cert)
		}
	}
	f.Add(make([]byte, 1184), []byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, rep, cert []byte) {
		r, err := Verify(rep, [][]byte{cert}, Options{At: milanAt})
		var ce *CheckError
		switch {
		case err == nil:
			if r == nil || len(r.Registers) != 3 {
				t.Fatal("trusted without registers")
			}
		case errors.As(err, &ce), errors.Is(err, mr.ErrMalformed):
		default:
			t.Fatalf("unclassified error %v", err)
		}
	})
}
