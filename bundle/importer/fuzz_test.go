package importer

import (
	"testing"

	"github.com/ccmr-dev/ccmr/internal/corpus"
)

// FuzzParseAK: no input panics ParseAK; seeded from the real AK files
// (PEM, TPM2B_PUBLIC, TPMT_PUBLIC) of the corpus and the tpm2-tools vectors.
func FuzzParseAK(f *testing.F) {
	f.Add(vec(f, "rsa-ak.pem").Data)
	f.Add(vec(f, "ecc-ak.pem").Data)
	for _, b := range corpus.Seeds(f, "keylime/ak.pub", "go-tpm-tools/attestations/gce-cos-85-nonce9009/ak_pub.tpmt_public", "go-attestation/windows_gcp_shielded_vm/ak_pub.tpmt_public") {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseAK(b)
		_, _ = ParseCertificates(b)
	})
}

// FuzzBuildTPM: no quote, signature or PCR file panics Build; seeded from
// the tpm2-tools vectors.
func FuzzBuildTPM(f *testing.F) {
	f.Add(vec(f, "rsa-sha1.attest").Data, vec(f, "rsa-sha1.sig").Data, vec(f, "rsa-sha1.pcrs").Data)
	f.Add(vec(f, "ecc-sha256.attest").Data, vec(f, "ecc-sha256.sig").Data, vec(f, "ecc-sha256.pcrs").Data)
	ak := vec(f, "rsa-ak.pem")
	f.Fuzz(func(t *testing.T, attest, sig, pcrs []byte) {
		_, _ = Build(Parts{AK: &ak, TPMQuotes: []TPMQuote{{Attest: File{"a", attest}, Signature: File{"s", sig}, PCRs: &File{"p", pcrs}}}})
	})
}
