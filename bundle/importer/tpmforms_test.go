package importer_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle/importer"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
)

func form(t testing.TB, name string) importer.File {
	t.Helper()
	p := filepath.Join("testdata", "tpm2-tools-forms", name)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return importer.File{Name: p, Data: b}
}

func verifyForms(t *testing.T, ak importer.File, attest, sig, pcrs importer.File, nonce []byte) *verifier.Report {
	t.Helper()
	b, err := importer.Build(importer.Parts{AK: &ak, TPMQuotes: []importer.TPMQuote{{Attest: attest, Signature: sig, PCRs: &pcrs}}})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := verifier.Verify(context.Background(), b, verifier.Options{Nonce: nonce, TrustedKeys: [][]byte{form(t, filepath.Base(strings.TrimSuffix(ak.Name, filepath.Ext(ak.Name)))+".pem").Data}})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// Issue 16 item 7: tpm2_quote -F values PCR files and -f plain signatures
// (real files of tpm2_quote on swtpm) import and verify, with the AK as
// PEM or TPM2B_PUBLIC.
func TestTPM2QuoteOtherForms(t *testing.T) {
	n := []byte{1, 2, 3, 4, 5}
	for _, c := range []struct{ ak, q string }{
		{"ecc-ak.pem", "ecc"}, {"ecc-ak.pub", "ecc"}, {"rsa-ak.pem", "rsa"}, {"rsa-ak.pub", "rsa"}, {"ecc-ak.pem", "ecc-sha1"},
	} {
		t.Run(c.ak+"/"+c.q, func(t *testing.T) {
			rep := verifyForms(t, form(t, c.ak), form(t, c.q+".attest"), form(t, c.q+".plain"), form(t, c.q+".values"), n)
			if !rep.Trusted {
				t.Fatalf("not trusted: %+v", rep.Layers[0])
			}
			rep = verifyForms(t, form(t, c.ak), form(t, c.q+".attest"), form(t, c.q+".plain"), form(t, c.q+".values"), []byte{1, 2, 3, 4, 6})
			if rep.Trusted {
				t.Fatal("trusted with another nonce")
			}
		})
	}
	// The default forms still read, and mixed with the others.
	rep := verifyForms(t, form(t, "ecc-ak.pem"), form(t, "ecc2.attest"), form(t, "ecc2.sig"), form(t, "ecc2.pcrs"), n)
	if !rep.Trusted {
		t.Fatalf("default forms: %+v", rep.Layers[0])
	}
}

// Values that are not what the quote signed import (the file has the
// right length) and are refused by verify (exit 1), never trusted.
func TestTPM2QuoteValuesChanged(t *testing.T) {
	v := form(t, "ecc.values")
	v.Data = bytes.Clone(v.Data)
	v.Data[4*32] ^= 1 // pcr4
	rep := verifyForms(t, form(t, "ecc-ak.pem"), form(t, "ecc.attest"), form(t, "ecc.plain"), v, []byte{1, 2, 3, 4, 5})
	if rep.Trusted {
		t.Fatal("changed PCR value trusted")
	}
	// A plain signature with a changed byte: refused by verify for ECDSA.
	s := form(t, "ecc.plain")
	s.Data = bytes.Clone(s.Data)
	s.Data[len(s.Data)-1] ^= 1
	rep = verifyForms(t, form(t, "ecc-ak.pem"), form(t, "ecc.attest"), s, form(t, "ecc.values"), []byte{1, 2, 3, 4, 5})
	if rep.Trusted {
		t.Fatal("changed ECDSA signature trusted")
	}
}

// Unusable forms: exit 2 naming the part and what to give.
func TestTPM2QuoteFormsRefused(t *testing.T) {
	build := func(ak *importer.File, attest, sig, pcrs importer.File) error {
		_, err := importer.Build(importer.Parts{AK: ak, TPMQuotes: []importer.TPMQuote{{Attest: attest, Signature: sig, PCRs: &pcrs}}})
		return err
	}
	ecc, rsa := form(t, "ecc-ak.pem"), form(t, "rsa-ak.pem")
	cases := []struct {
		name string
		err  error
		part string
		want string
	}{
		{"values one byte short", build(&ecc, form(t, "ecc.attest"), form(t, "ecc.plain"), importer.File{Name: "v", Data: form(t, "ecc.values").Data[:351]}),
			importer.PartTPMPCRs, "nor the 352 bytes of -F values the quote's selection sha256:[0 1 2 3 4 5 6 7 8 9 10] needs"},
		{"values of another quote", build(&ecc, form(t, "ecc.attest"), form(t, "ecc.plain"), form(t, "ecc-sha1.values")),
			importer.PartTPMPCRs, "-F values"},
		{"rsa plain signature changed", build(&rsa, form(t, "rsa.attest"), flip(form(t, "rsa.plain")), form(t, "rsa.values")),
			importer.PartTPMSig, "neither RSASSA nor RSAPSS"},
		{"rsa plain signature under the ECC AK", build(&ecc, form(t, "rsa.attest"), form(t, "rsa.plain"), form(t, "rsa.values")),
			importer.PartTPMSig, "nor a DER ECDSA signature"},
		{"ecc plain signature under the RSA AK", build(&rsa, form(t, "ecc.attest"), form(t, "ecc.plain"), form(t, "ecc.values")),
			importer.PartTPMSig, "nor a 256-byte RSA signature"},
		{"plain signature, no AK", build(nil, form(t, "ecc.attest"), form(t, "ecc.plain"), form(t, "ecc.values")),
			importer.PartTPMSig, "read only with --ak"},
		{"ecc plain with trailing byte", build(&ecc, form(t, "ecc.attest"), importer.File{Name: "s", Data: append(bytes.Clone(form(t, "ecc.plain").Data), 0)}, form(t, "ecc.values")),
			importer.PartTPMSig, "nor a DER ECDSA signature"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var pe *importer.PartError
			if !errors.As(c.err, &pe) || pe.Part != c.part || !strings.Contains(c.err.Error(), c.want) {
				t.Fatalf("got %v, want a %s error with %q", c.err, c.part, c.want)
			}
		})
	}
}

func flip(f importer.File) importer.File {
	f.Data = bytes.Clone(f.Data)
	f.Data[100] ^= 1
	return f
}

// The stored signature is the TPMT_SIGNATURE tpm2_checkquote reads.
func TestTPM2QuotePlainStoredAsTPMT(t *testing.T) {
	ak := form(t, "ecc-ak.pem")
	pcrs := form(t, "ecc.values")
	b, err := importer.Build(importer.Parts{AK: &ak, TPMQuotes: []importer.TPMQuote{{Attest: form(t, "ecc.attest"), Signature: form(t, "ecc.plain"), PCRs: &pcrs}}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := tpmverify.ParseSignature(b.Evidence.TPMQuotes[0].Signature)
	if err != nil || s.Hash != mr.SHA256 || s.Scheme != 0x0018 {
		t.Fatalf("stored signature %+v, %v", s, err)
	}
	if len(b.Evidence.TPMQuotes[0].PCRs) != 11 {
		t.Fatalf("%d PCR values", len(b.Evidence.TPMQuotes[0].PCRs))
	}
}
