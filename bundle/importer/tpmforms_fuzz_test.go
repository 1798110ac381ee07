package importer

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzTPMForms: no quote, signature or PCR file in tpm2_quote's other forms
// (-f plain, -F values) panics Build, with an ECC and an RSA AK; seeded from
// the real files of testdata/tpm2-tools-forms.
func FuzzTPMForms(f *testing.F) {
	rd := func(n string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", "tpm2-tools-forms", n))
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	for _, q := range []string{"ecc", "rsa", "ecc-sha1"} {
		f.Add(rd(q+".attest"), rd(q+".plain"), rd(q+".values"), q == "rsa")
	}
	ecc := File{"ecc-ak.pem", rd("ecc-ak.pem")}
	rsa := File{"rsa-ak.pem", rd("rsa-ak.pem")}
	f.Fuzz(func(t *testing.T, attest, sig, pcrs []byte, useRSA bool) {
		ak := &ecc
		if useRSA {
			ak = &rsa
		}
		_, _ = Build(Parts{AK: ak, TPMQuotes: []TPMQuote{{Attest: File{"a", attest}, Signature: File{"s", sig}, PCRs: &File{"p", pcrs}}}})
	})
}
