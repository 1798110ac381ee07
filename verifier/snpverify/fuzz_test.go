package snpverify

import (
	"errors"
	"testing"

	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
)

// FuzzVerify: mutated reports and certificates never panic, and every
// failure is either malformed input or a *CheckError.
func FuzzVerify(f *testing.F) {
	if s := corpus.Seeds(f, "go-sev-guest/attestation.bin", "go-sev-guest/vcek.testcer"); len(s) == 2 {
		f.Add(s[0], s[1])
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
