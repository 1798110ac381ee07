package tpmverify

import (
	"encoding/hex"
	"testing"
)

// FuzzTCGSubjectAltName: the SAN reader never panics, and whatever it
// accepts names at least one TPM attribute.
func FuzzTCGSubjectAltName(f *testing.F) {
	// The SAN of the real GCE AK certificate (go-tpm-tools' corpus file).
	gce, _ := hex.DecodeString("3045A443304131163014060567810502010C0B69643A3437344634463437310F300D060567810502020C047654504D31163014060567810502030C0B69643A3230313630353131")
	if _, err := parseTCGSubjectAltName(gce); err != nil {
		f.Fatalf("the GCE SAN seed: %v", err)
	}
	f.Add(gce)
	f.Add([]byte{0x30, 0x00})
	f.Add([]byte{0x30, 0x02, 0xa4, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := parseTCGSubjectAltName(b)
		if err == nil && id.Manufacturer == "" && id.Model == "" && id.Version == "" {
			t.Fatalf("accepted %x naming no attribute", b)
		}
	})
}
