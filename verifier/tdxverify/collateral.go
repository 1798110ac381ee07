package tdxverify

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/google/go-tdx-guest/pcs"

	"github.com/ccmr-dev/ccmr/internal/strictjson"
	"github.com/ccmr-dev/ccmr/mr"
)

// Collateral is Intel PCS collateral for one quote in the QuoteCollateralV3
// JSON layout of Phala's dcap-qvl (the layout `ccmr evidence import
// --collateral` takes and bundles carry): PEM issuer chains, DER CRLs and
// ECDSA signatures as hex, and the TCB info and QE identity as the exact
// JSON text Intel signed.
type Collateral struct {
	PCKCRLIssuerChain     string `json:"pck_crl_issuer_chain"`
	RootCACRL             string `json:"root_ca_crl"`
	PCKCRL                string `json:"pck_crl"`
	TCBInfoIssuerChain    string `json:"tcb_info_issuer_chain"`
	TCBInfo               string `json:"tcb_info"`
	TCBInfoSignature      string `json:"tcb_info_signature"`
	QEIdentityIssuerChain string `json:"qe_identity_issuer_chain"`
	QEIdentity            string `json:"qe_identity"`
	QEIdentitySignature   string `json:"qe_identity_signature"`
}

// parsedCollateral is Collateral decoded.
type parsedCollateral struct {
	raw                            *Collateral
	pckCRLChain, tcbChain, qeChain []*x509.Certificate
	rootCRL, pckCRL                *x509.RevocationList
	tcbInfo                        pcs.TcbInfo
	tcbSig                         []byte
	qeID                           pcs.EnclaveIdentity
	qeSig                          []byte
}

func collErr(field string, format string, a ...any) error {
	return fmt.Errorf("tdx collateral: %w: %s: %s", mr.ErrMalformed, field, fmt.Sprintf(format, a...))
}

// ParseCollateral decodes collateral JSON. It checks form only (exactly one
// JSON object, no unknown member, nothing after it; every member present and
// decodable), not signatures or dates. A member it does not know is refused
// rather than ignored: ignored input is input nobody judged.
func ParseCollateral(data []byte) (*Collateral, error) {
	var c Collateral
	if err := strictjson.Decode(data, &c); err != nil {
		return nil, fmt.Errorf("tdx collateral: %w: %v", mr.ErrMalformed, err)
	}
	if _, err := c.parse(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Collateral) parse() (*parsedCollateral, error) {
	p := &parsedCollateral{raw: c}
	var err error
	chains := []struct {
		name string
		pem  string
		dst  *[]*x509.Certificate
	}{
		{"pck_crl_issuer_chain", c.PCKCRLIssuerChain, &p.pckCRLChain},
		{"tcb_info_issuer_chain", c.TCBInfoIssuerChain, &p.tcbChain},
		{"qe_identity_issuer_chain", c.QEIdentityIssuerChain, &p.qeChain},
	}
	for _, ch := range chains {
		if *ch.dst, err = parseChain(ch.pem); err != nil {
			return nil, collErr(ch.name, "%v", err)
		}
	}
	crls := []struct {
		name string
		hex  string
		dst  **x509.RevocationList
	}{
		{"root_ca_crl", c.RootCACRL, &p.rootCRL},
		{"pck_crl", c.PCKCRL, &p.pckCRL},
	}
	for _, cr := range crls {
		der, err := hex.DecodeString(strings.TrimSpace(cr.hex))
		if err != nil || len(der) == 0 {
			return nil, collErr(cr.name, "not hex DER (%v)", err)
		}
		if *cr.dst, err = x509.ParseRevocationList(der); err != nil {
			return nil, collErr(cr.name, "%v", err)
		}
	}
	if c.TCBInfo == "" {
		return nil, collErr("tcb_info", "empty")
	}
	if err := json.Unmarshal([]byte(c.TCBInfo), &p.tcbInfo); err != nil {
		return nil, collErr("tcb_info", "%v", err)
	}
	if c.QEIdentity == "" {
		return nil, collErr("qe_identity", "empty")
	}
	if err := json.Unmarshal([]byte(c.QEIdentity), &p.qeID); err != nil {
		return nil, collErr("qe_identity", "%v", err)
	}
	if p.tcbSig, err = hex.DecodeString(c.TCBInfoSignature); err != nil || len(p.tcbSig) != SignatureSize {
		return nil, collErr("tcb_info_signature", "want %d bytes of hex", SignatureSize)
	}
	if p.qeSig, err = hex.DecodeString(c.QEIdentitySignature); err != nil || len(p.qeSig) != SignatureSize {
		return nil, collErr("qe_identity_signature", "want %d bytes of hex", SignatureSize)
	}
	return p, nil
}

// parseChain decodes a PEM issuer chain: signing certificate first.
func parseChain(s string) ([]*x509.Certificate, error) {
	rest := []byte(s)
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, fmt.Errorf("%d bytes after the last PEM block", len(rest))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no certificate")
	}
	return out, nil
}
