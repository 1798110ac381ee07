package tpmverify

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"strings"

	"github.com/ccmr-dev/ccmr/mr"
)

// OIDs of the TCG EK Credential Profile's subject alternative name: the
// TPM's manufacturer, model and version as directoryName attributes.
var (
	oidSubjectAltName  = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidTPMManufacturer = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	oidTPMModel        = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	oidTPMVersion      = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
)

// TPMIdentity is what a TCG subject alternative name names: the TPM's
// manufacturer, model and version, as the certificate spells them
// (Google's vTPM: "id:474F4F47", "vTPM", "id:20160511").
type TPMIdentity struct {
	Manufacturer, Model, Version string
}

// String names the TPM for a report.
func (t TPMIdentity) String() string {
	return fmt.Sprintf("TPM manufacturer %q, model %q, version %q", t.Manufacturer, t.Model, t.Version)
}

// AcceptTCGSubjectAltName lets an AK certificate whose critical subject
// alternative name is the TCG form through x509 chain verification, as
// go-tpm-tools' server.validateAKCert does for Google's AK certificates.
// Go's x509 parser leaves a critical SAN "unhandled" when it holds no DNS
// name, e-mail, IP address or URI, and Verify then refuses the certificate
// ("x509: unhandled critical extension"); the TCG profile's SAN is only a
// directoryName of TPM manufacturer, model and version, so every AK
// certificate of that profile (GCE's among them) was refused.
//
// Narrowly: the SAN is taken off c.UnhandledCriticalExtensions only when it
// is a DER SEQUENCE of directoryName entries whose attributes are all TCG
// TPM attributes (2.23.133.2.1-3), each a string, each at most once, and
// nothing else; any other content leaves it unhandled, and any other
// unhandled critical extension stays, so x509 still refuses the
// certificate. It returns the TPM named (nil when c's SAN was handled by
// x509 or absent) and an error naming what it refused.
func AcceptTCGSubjectAltName(c *x509.Certificate) (*TPMIdentity, error) {
	at := -1
	for i, o := range c.UnhandledCriticalExtensions {
		if o.Equal(oidSubjectAltName) {
			at = i
		}
	}
	if at < 0 {
		return nil, nil
	}
	var val []byte
	n := 0
	for _, e := range c.Extensions {
		if e.Id.Equal(oidSubjectAltName) {
			val = e.Value
			n++
		}
	}
	if n != 1 {
		// x509.ParseCertificate refuses duplicate extensions; kept for a
		// certificate built by hand.
		return nil, fmt.Errorf("%w: AK certificate: %d subject alternative name extensions", mr.ErrMalformed, n)
	}
	id, err := parseTCGSubjectAltName(val)
	if err != nil {
		return nil, fmt.Errorf("%w: AK certificate: critical subject alternative name is not the TCG form (directoryName of TPM manufacturer, model, version): %v", mr.ErrUnsupported, err)
	}
	rest := make([]asn1.ObjectIdentifier, 0, len(c.UnhandledCriticalExtensions)-1)
	rest = append(rest, c.UnhandledCriticalExtensions[:at]...)
	c.UnhandledCriticalExtensions = append(rest, c.UnhandledCriticalExtensions[at+1:]...)
	return id, nil
}

// parseTCGSubjectAltName reads GeneralNames ::= SEQUENCE OF GeneralName
// with every GeneralName a directoryName [4] Name of TCG TPM attributes.
func parseTCGSubjectAltName(der []byte) (*TPMIdentity, error) {
	var seq asn1.RawValue
	rest, err := asn1.Unmarshal(der, &seq)
	if err != nil {
		return nil, err
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("%d bytes after the GeneralNames", len(rest))
	}
	if seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return nil, fmt.Errorf("not a SEQUENCE of GeneralName")
	}
	var id TPMIdentity
	seen := map[string]bool{}
	names := 0
	for b := seq.Bytes; len(b) > 0; names++ {
		var gn asn1.RawValue
		if b, err = asn1.Unmarshal(b, &gn); err != nil {
			return nil, fmt.Errorf("GeneralName %d: %v", names, err)
		}
		if gn.Class != asn1.ClassContextSpecific || gn.Tag != 4 || !gn.IsCompound {
			return nil, fmt.Errorf("GeneralName %d has tag [%d] class %d, not a directoryName [4]", names, gn.Tag, gn.Class)
		}
		var rdns pkix.RDNSequence
		r2, err := asn1.Unmarshal(gn.Bytes, &rdns)
		if err != nil {
			return nil, fmt.Errorf("directoryName %d: %v", names, err)
		}
		if len(r2) > 0 {
			return nil, fmt.Errorf("directoryName %d: %d bytes after the Name", names, len(r2))
		}
		for _, rdn := range rdns {
			for _, atv := range rdn {
				s, ok := atv.Value.(string)
				if !ok {
					return nil, fmt.Errorf("attribute %v is not a string", atv.Type)
				}
				var dst *string
				switch {
				case atv.Type.Equal(oidTPMManufacturer):
					dst = &id.Manufacturer
				case atv.Type.Equal(oidTPMModel):
					dst = &id.Model
				case atv.Type.Equal(oidTPMVersion):
					dst = &id.Version
				default:
					return nil, fmt.Errorf("attribute %v is not a TCG TPM attribute (2.23.133.2.1-3)", atv.Type)
				}
				k := atv.Type.String()
				if seen[k] {
					return nil, fmt.Errorf("attribute %v given twice", atv.Type)
				}
				seen[k] = true
				*dst = strings.Clone(s)
			}
		}
	}
	if names == 0 || len(seen) == 0 {
		return nil, fmt.Errorf("no TPM attribute")
	}
	return &id, nil
}
