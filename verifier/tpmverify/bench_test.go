package tpmverify_test

import (
	"testing"

	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
)

// BenchmarkVerifyQuoteECC verifies one ECC quote of the tpm2-tools vectors.
func BenchmarkVerifyQuoteECC(b *testing.B) {
	q, err := tpmverify.NewQuote(vec(b, "ecc-sha256.attest"), vec(b, "ecc-sha256.sig"), vec(b, "ecc-sha256.pcrs"))
	if err != nil {
		b.Fatal(err)
	}
	ak, err := tpmverify.ParseAKPublic(vec(b, "ecc-ak.pem"))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := tpmverify.VerifyQuote(ak, q, vectorNonce); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParsePCRFile parses one serialized PCR file.
func BenchmarkParsePCRFile(b *testing.B) {
	p := vec(b, "ecc-sha256.pcrs")
	for b.Loop() {
		if _, err := tpmverify.ParsePCRFile(p); err != nil {
			b.Fatal(err)
		}
	}
}
