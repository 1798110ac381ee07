package verifier_test

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/bundle/importer"
	"github.com/ccmr-dev/ccmr/verifier"
)

func gceCA(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("tpmverify/testdata/gce/" + name)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", name)
	}
	return blk.Bytes
}

// Issue 16 item 5: the real GCE AK certificate (critical TCG SAN) chains
// to Google's EK/AK root through Google's intermediate, with the real
// quotes: TRUSTED by --ak-roots alone. Before, x509 refused it
// ("unhandled critical extension").
func TestGCEAKCertificateChain(t *testing.T) {
	const g = "go-tpm-tools/attestations/gce-cos-85-nonce9009/"
	p := gceParts(t)
	p.AKCerts = []importer.File{cfile(t, g+"ak_cert.der"), {Name: "tpm_ek_intermediate_2.pem", Data: gceCA(t, "tpm_ek_intermediate_2.pem")}}
	root, err := x509.ParseCertificate(gceCA(t, "tpm_ek_root_1.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rep := verify(t, p, verifier.Options{Nonce: []byte{0x90, 0x09}, AKRoots: roots, At: at})
	if !rep.Trusted {
		t.Fatalf("GCE AK certificate not trusted: %s", failure(rep))
	}
	if !strings.Contains(text(rep), `critical TCG subject alternative name names TPM manufacturer "id:474F4F47", model "vTPM"`) {
		t.Fatalf("the TPM named by the SAN is not reported:\n%s", text(rep))
	}
	// Without the intermediate: not trusted.
	p.AKCerts = p.AKCerts[:1]
	rep = verify(t, p, verifier.Options{Nonce: []byte{0x90, 0x09}, AKRoots: roots, At: at})
	if rep.Trusted || !strings.Contains(failure(rep), "does not chain to the AK roots") {
		t.Fatalf("trusted without the intermediate: %s", failure(rep))
	}
	// Another root: not trusted.
	other := x509.NewCertPool()
	other.AddCert(mustCert(t, gceCA(t, "tpm_ek_intermediate_2.pem")))
	p.AKCerts = []importer.File{cfile(t, g+"ak_cert.der")}
	rep = verify(t, p, verifier.Options{Nonce: []byte{0x90, 0x09}, AKRoots: x509.NewCertPool(), At: at})
	if rep.Trusted {
		t.Fatal("trusted with an empty root pool")
	}
	// The intermediate as the anchor is the caller's choice, and works.
	rep = verify(t, p, verifier.Options{Nonce: []byte{0x90, 0x09}, AKRoots: other, At: at})
	if !rep.Trusted {
		t.Fatalf("the intermediate as anchor: %s", failure(rep))
	}
}

func mustCert(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Attack: an AK certificate that carries the TCG SAN and another critical
// extension nobody reads; or a critical SAN that is not the TCG form. Both
// chain to the roots; both are refused.
func TestGCEAKCertificateOtherCriticalExtension(t *testing.T) {
	gce := mustCert(t, cfile(t, "go-tpm-tools/attestations/gce-cos-85-nonce9009/ak_cert.der").Data)
	var san pkix.Extension
	for _, e := range gce.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) {
			san = e
		}
	}
	if !san.Critical {
		t.Fatal("the GCE AK certificate's SAN is no longer critical")
	}
	notTCG := san
	notTCG.Value = bytes.Replace(san.Value, []byte{0x06, 0x05, 0x67, 0x81, 0x05, 0x02, 0x02}, []byte{0x06, 0x05, 0x67, 0x81, 0x05, 0x02, 0x09}, 1)
	for name, exts := range map[string][]pkix.Extension{
		"another critical extension": {san, {Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 99}, Critical: true, Value: []byte{5, 0}}},
		"SAN not the TCG form":       {notTCG},
	} {
		t.Run(name, func(t *testing.T) {
			tmpl := &x509.Certificate{KeyUsage: gce.KeyUsage, BasicConstraintsValid: true, UnknownExtKeyUsage: gce.UnknownExtKeyUsage, ExtraExtensions: exts}
			der, roots := certFor(t, gce.PublicKey, tmpl)
			b, err := importer.Build(gceParts(t))
			if err != nil {
				t.Fatal(err)
			}
			b.Evidence.Certificates = [][]byte{der}
			rep := hverify(t, b, verifier.Options{Nonce: []byte{0x90, 0x09}, AKRoots: roots})
			if rep.Trusted {
				t.Fatalf("trusted:\n%s", text(rep))
			}
			if r := failure(rep); !strings.Contains(r, "unhandled critical extension") && !strings.Contains(r, "not the TCG form") {
				t.Fatalf("refused for another reason: %s", r)
			}
		})
	}
	// The same certificate with the real SAN alone is trusted (the test CA
	// is the only difference from Google's).
	tmpl := &x509.Certificate{KeyUsage: gce.KeyUsage, BasicConstraintsValid: true, UnknownExtKeyUsage: gce.UnknownExtKeyUsage, ExtraExtensions: []pkix.Extension{san}}
	der, roots := certFor(t, gce.PublicKey, tmpl)
	b, err := importer.Build(gceParts(t))
	if err != nil {
		t.Fatal(err)
	}
	b.Evidence.Certificates = [][]byte{der}
	trusted(t, hverify(t, b, verifier.Options{Nonce: []byte{0x90, 0x09}, AKRoots: roots}))
}
