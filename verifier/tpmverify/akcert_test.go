package tpmverify_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
)

func pemCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A real GCE AK certificate: refused by x509 as parsed, verified after the
// TCG SAN is accepted, against Google's intermediate and root.
func TestAcceptTCGSubjectAltName_GCE(t *testing.T) {
	der, err := os.ReadFile(corpus.Path(t, "go-tpm-tools/attestations/gce-cos-85-nonce9009/ak_cert.der"))
	if err != nil {
		t.Fatal(err)
	}
	ak, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(pemCert(t, "testdata/gce/tpm_ek_root_1.pem"))
	inter.AddCert(pemCert(t, "testdata/gce/tpm_ek_intermediate_2.pem"))
	opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	var uce x509.UnhandledCriticalExtension
	if _, err := ak.Verify(opts); !errors.As(err, &uce) {
		t.Fatalf("x509 no longer refuses the GCE SAN (%v): the workaround may go", err)
	}
	id, err := tpmverify.AcceptTCGSubjectAltName(ak)
	if err != nil {
		t.Fatal(err)
	}
	if id == nil || id.Manufacturer != "id:474F4F47" || id.Model != "vTPM" || id.Version != "id:20160511" {
		t.Fatalf("TPM identity %+v", id)
	}
	if _, err := ak.Verify(opts); err != nil {
		t.Fatalf("GCE AK certificate does not verify: %v", err)
	}
	// Without the intermediate it does not chain.
	if _, err := ak.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: opts.CurrentTime, KeyUsages: opts.KeyUsages}); err == nil {
		t.Fatal("chained without the intermediate")
	}
}

// tcgSAN builds a SAN value of directoryName entries.
func tcgSAN(t *testing.T, names ...pkix.RDNSequence) []byte {
	t.Helper()
	var gns []asn1.RawValue
	for _, n := range names {
		b, err := asn1.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		gns = append(gns, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: b})
	}
	v, err := asn1.Marshal(gns)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func attr(oid asn1.ObjectIdentifier, v any) []pkix.AttributeTypeAndValue {
	return []pkix.AttributeTypeAndValue{{Type: oid, Value: v}}
}

var (
	oidMan   = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	oidModel = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	oidVer   = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
)

// leaf makes a certificate with the given extra extensions, signed by a
// CA of the test.
func leaf(t *testing.T, exts ...pkix.Extension) *x509.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtraExtensions: exts}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Hostile certificates: only the TCG SAN is accepted; any other content
// of a critical SAN, and any other unhandled critical extension, stays
// unhandled and x509 refuses it.
func TestAcceptTCGSubjectAltName_Hostile(t *testing.T) {
	san := asn1.ObjectIdentifier{2, 5, 29, 17}
	good := pkix.RDNSequence{attr(oidMan, "id:474F4F47"), attr(oidModel, "vTPM"), attr(oidVer, "id:20160511")}
	c := leaf(t, pkix.Extension{Id: san, Critical: true, Value: tcgSAN(t, good)})
	if id, err := tpmverify.AcceptTCGSubjectAltName(c); err != nil || id == nil || len(c.UnhandledCriticalExtensions) != 0 {
		t.Fatalf("the TCG SAN was not accepted: %v %v %v", id, err, c.UnhandledCriticalExtensions)
	}

	other := asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}
	cases := map[string][]pkix.Extension{
		"CN in the directoryName":  {{Id: san, Critical: true, Value: tcgSAN(t, pkix.RDNSequence{attr(oidMan, "x"), attr(asn1.ObjectIdentifier{2, 5, 4, 3}, "evil")})}},
		"manufacturer twice":       {{Id: san, Critical: true, Value: tcgSAN(t, pkix.RDNSequence{attr(oidMan, "a")}, pkix.RDNSequence{attr(oidMan, "b")})}},
		"not a string":             {{Id: san, Critical: true, Value: tcgSAN(t, pkix.RDNSequence{attr(oidMan, 7)})}},
		"empty directoryName":      {{Id: san, Critical: true, Value: tcgSAN(t, pkix.RDNSequence{})}},
		"registeredID GeneralName": {{Id: san, Critical: true, Value: mustMarshal(t, []asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 8, Bytes: []byte{0x2a, 0x03}}})}},
		"bytes after the SAN":      {{Id: san, Critical: true, Value: append(tcgSAN(t, good), 0)}},
	}
	for name, exts := range cases {
		t.Run(name, func(t *testing.T) {
			c := leaf(t, exts...)
			if len(c.UnhandledCriticalExtensions) == 0 {
				t.Skip("x509 handles this SAN itself")
			}
			_, err := tpmverify.AcceptTCGSubjectAltName(c)
			if !errors.Is(err, mr.ErrUnsupported) || !strings.Contains(err.Error(), "not the TCG form") {
				t.Fatalf("accepted: %v", err)
			}
			if len(c.UnhandledCriticalExtensions) != 1 {
				t.Fatalf("unhandled extensions changed: %v", c.UnhandledCriticalExtensions)
			}
		})
	}
	// Another critical extension next to the TCG SAN stays unhandled.
	c = leaf(t, pkix.Extension{Id: san, Critical: true, Value: tcgSAN(t, good)}, pkix.Extension{Id: other, Critical: true, Value: []byte{5, 0}})
	if _, err := tpmverify.AcceptTCGSubjectAltName(c); err != nil {
		t.Fatal(err)
	}
	if len(c.UnhandledCriticalExtensions) != 1 || !c.UnhandledCriticalExtensions[0].Equal(other) {
		t.Fatalf("unhandled extensions %v, want only %v", c.UnhandledCriticalExtensions, other)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c)
	var uce x509.UnhandledCriticalExtension
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: time.Unix(1000, 0), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); !errors.As(err, &uce) {
		t.Fatalf("a certificate with another critical extension verified: %v", err)
	}
	// A certificate without the SAN: nothing to do.
	c = leaf(t)
	if id, err := tpmverify.AcceptTCGSubjectAltName(c); id != nil || err != nil {
		t.Fatalf("no SAN: %v %v", id, err)
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
