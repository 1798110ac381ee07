package snpverify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/google/go-sev-guest/verify/trust"
)

// checkCRL with a test ARK (AMD's own cannot sign here): an ARK-signed,
// current CRL that lists nothing of the chain passes, in DER and PEM; one
// that lists the VCEK or the ASK, is out of date, or is signed by another
// key is refused.
func TestCheckCRL(t *testing.T) {
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	cert := func(serial int64, cn string, pub, signKey *ecdsa.PrivateKey, parent *x509.Certificate) *x509.Certificate {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, NotBefore: t0, NotAfter: t0.AddDate(5, 0, 0),
			IsCA: serial < 3, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature}
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &pub.PublicKey, signKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	arkKey, askKey, vcekKey := key(), key(), key()
	ark := cert(1, "ARK-Milan", arkKey, arkKey, nil)
	ask := cert(2, "SEV-Milan", askKey, arkKey, ark)
	vcek := cert(3, "SEV-VCEK", vcekKey, askKey, ask)
	roots := []*trust.AMDRootCerts{{ProductCerts: &trust.ProductCerts{Ark: ark, Ask: ask}}}
	crl := func(signer *ecdsa.PrivateKey, issuer *x509.Certificate, next time.Time, revoked ...*x509.Certificate) []byte {
		rl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: t0, NextUpdate: next}
		for _, c := range revoked {
			rl.RevokedCertificateEntries = append(rl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: t0})
		}
		der, err := x509.CreateRevocationList(rand.Reader, rl, issuer, signer)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	at := t0.AddDate(0, 1, 0)
	good := crl(arkKey, ark, t0.AddDate(1, 0, 0))
	if err := checkCRL(good, roots, vcek, at); err != nil {
		t.Fatalf("current CRL listing nothing: %v", err)
	}
	if err := checkCRL(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: good}), roots, vcek, at); err != nil {
		t.Fatalf("PEM CRL: %v", err)
	}
	other := key()
	otherCA := cert(1, "ARK-Milan", other, other, nil)
	for name, c := range map[string]struct {
		crl  []byte
		at   time.Time
		want string
	}{
		"VCEK revoked":   {crl(arkKey, ark, t0.AddDate(1, 0, 0), vcek), at, "revoked"},
		"ASK revoked":    {crl(arkKey, ark, t0.AddDate(1, 0, 0), ask), at, "revoked"},
		"out of date":    {good, t0.AddDate(2, 0, 0), "not at"},
		"other signer":   {crl(other, otherCA, t0.AddDate(1, 0, 0)), at, "not signed by the ARK"},
		"not a CRL":      {[]byte("garbage"), at, "AMD CRL"},
		"two PEM blocks": {append(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: good}), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: good})...), at, "one PEM"},
	} {
		t.Run(name, func(t *testing.T) {
			err := checkCRL(c.crl, roots, vcek, c.at)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want an error with %q, got %v", c.want, err)
			}
			if strings.HasSuffix(name, "revoked") && !errors.Is(err, ErrRevoked) {
				t.Fatalf("not ErrRevoked: %v", err)
			}
		})
	}
}
