package snpverify

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-sev-guest/verify/trust"

	"github.com/ccmr-dev/ccmr/mr"
)

// ParseCRL reads AMD's CRL: DER, or exactly one PEM "X509 CRL" block. It
// checks form only, not the signer or the dates.
func ParseCRL(data []byte) (*x509.RevocationList, error) {
	der := data
	if bytes.Contains(data, []byte("-----BEGIN")) {
		b, rest := pem.Decode(data)
		if b == nil || b.Type != "X509 CRL" || len(bytes.TrimSpace(rest)) != 0 {
			return nil, fmt.Errorf("%w: AMD CRL: want DER or one PEM X509 CRL block", mr.ErrMalformed)
		}
		der = b.Bytes
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("%w: AMD CRL: %v", mr.ErrMalformed, err)
	}
	return crl, nil
}

// checkCRL checks AMD's CRL of a product line: it parses (DER, or one PEM
// "X509 CRL" block), is signed by one of the line's ARKs, is current at at,
// and lists neither the line's ASK/ASVK nor the endorsement key ek.
func checkCRL(data []byte, roots []*trust.AMDRootCerts, ek *x509.Certificate, at time.Time) error {
	crl, err := ParseCRL(data)
	if err != nil {
		return err
	}
	for _, r := range roots {
		if r == nil || r.ProductCerts == nil || r.ProductCerts.Ark == nil {
			continue
		}
		pc := r.ProductCerts
		if crl.CheckSignatureFrom(pc.Ark) != nil {
			continue
		}
		if at.Before(crl.ThisUpdate) || (!crl.NextUpdate.IsZero() && at.After(crl.NextUpdate)) {
			return fmt.Errorf("AMD CRL valid %s to %s, not at %s", crl.ThisUpdate.UTC().Format(time.RFC3339),
				crl.NextUpdate.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
		}
		for _, c := range []*x509.Certificate{pc.Ask, pc.Asvk, ek} {
			if c == nil {
				continue
			}
			for _, e := range crl.RevokedCertificateEntries {
				if e.SerialNumber.Cmp(c.SerialNumber) == 0 {
					return fmt.Errorf("%w: %q (serial %x) revoked at %s", ErrRevoked, c.Subject.CommonName, c.SerialNumber, e.RevocationTime.UTC().Format(time.RFC3339))
				}
			}
		}
		return nil
	}
	return errors.New("AMD CRL is not signed by the ARK of the report's product line")
}
