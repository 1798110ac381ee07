package snpverify

import (
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	sevabi "github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/verify/trust"
)

// ErrProductLine: the product line of the report cannot be told, is not
// one ccmr knows, or the VCEK/VLEK and the report name different lines.
var ErrProductLine = errors.New("SEV-SNP product line")

// ProductLines are the product lines ccmr verifies, in the order they are
// tried when neither the report nor the certificate names one.
var ProductLines = []string{"Milan", "Genoa", "Turin"}

// lineFromCPUID maps the report's CPUID family and model (v3 and later) to
// AMD's product line, by the model ranges of the EPYC generations rather
// than go-sev-guest's single model per line: family 19h models 00h-0Fh are
// Milan (EPYC 7003), 10h-1Fh and A0h-AFh are Genoa (EPYC 9004, and the
// Genoa-class Bergamo and Siena parts, which AMD's KDS serves under
// "Genoa"), family 1Ah models 00h-1Fh are Turin (EPYC 9005, Zen 5 and
// Zen 5c). Anything else is no line ("").
func lineFromCPUID(family, model byte) string {
	switch {
	case family == 0x19 && model <= 0x0F:
		return "Milan"
	case family == 0x19 && (model >= 0x10 && model <= 0x1F || model >= 0xA0 && model <= 0xAF):
		return "Genoa"
	case family == 0x1A && model <= 0x1F:
		return "Turin"
	}
	return ""
}

// lineFromProductName reads the product-name extension of a VCEK
// ("Milan-B0", "Genoa-B1", or the bare line, as AMD's KDS has issued
// since 2025) or a VLEK (the bare line). An empty name is no line; a name
// of another form or line is an error.
func lineFromProductName(name string) (string, error) {
	if name == "" {
		return "", nil
	}
	line, stepping, hasStepping := strings.Cut(name, "-")
	if !slices.Contains(ProductLines, line) {
		return "", fmt.Errorf("%w: certificate product name %q names no product line ccmr knows (%s)", ErrProductLine, name, strings.Join(ProductLines, ", "))
	}
	if hasStepping && (len(stepping) != 2 || stepping[0] < 'A' || stepping[0] > 'Z' || stepping[1] < '0' || stepping[1] > '9') {
		return "", fmt.Errorf("%w: certificate product name %q: stepping is not a letter and a digit", ErrProductLine, name)
	}
	return line, nil
}

// kdsExt are the AMD KDS extensions of a VCEK or VLEK (OID arc
// 1.3.6.1.4.1.3704.1). go-sev-guest's kds package wants a 64-byte HWID and
// the Milan/Genoa TCB fields, so it cannot read a Turin VCEK (8-byte HWID,
// FMC SPL, structVersion 1); this reads all three lines.
type kdsExt struct {
	StructVersion int
	ProductName   string
	HWID          []byte
	CSPID         string
	// SPL holds the security patch levels by the last OID arc:
	// 1 bootloader, 2 TEE, 3 SNP, 4-7 reserved SPLs, 8 microcode, 9 FMC.
	SPL     [10]int
	present map[string]bool
}

var kdsArc = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1}

// parseKDSExtensions reads the KDS extensions of an endorsement key
// certificate. A duplicate KDS extension, a value of the wrong type or
// with trailing bytes, an SPL outside 0-255 or an unknown KDS OID is an
// error: these are fields a verifier acts on.
func parseKDSExtensions(c *x509.Certificate) (*kdsExt, error) {
	e := &kdsExt{present: map[string]bool{}}
	for _, x := range c.Extensions {
		if len(x.Id) <= len(kdsArc) || !x.Id[:len(kdsArc)].Equal(kdsArc) {
			continue
		}
		key := x.Id[len(kdsArc):].String()
		if e.present[key] {
			return nil, fmt.Errorf("KDS extension %v appears twice", x.Id)
		}
		e.present[key] = true
		var rest []byte
		var err error
		switch sub := x.Id[len(kdsArc):]; {
		case len(sub) == 1 && sub[0] == 1:
			rest, err = asn1.Unmarshal(x.Value, &e.StructVersion)
		case len(sub) == 1 && sub[0] == 2:
			rest, err = ia5(x.Value, &e.ProductName)
		case len(sub) == 1 && sub[0] == 4:
			// AMD's KDS puts the HWID in untagged (64 bytes; 8 for
			// Turin); its length is checked against the line's.
			e.HWID = x.Value
		case len(sub) == 1 && sub[0] == 5:
			rest, err = ia5(x.Value, &e.CSPID)
		case len(sub) == 2 && sub[0] == 3 && sub[1] >= 1 && sub[1] <= 9:
			var v int
			rest, err = asn1.Unmarshal(x.Value, &v)
			if err == nil && (v < 0 || v > 255) {
				err = fmt.Errorf("SPL %d outside 0-255", v)
			}
			e.SPL[sub[1]] = v
		default:
			return nil, fmt.Errorf("unknown KDS extension %v", x.Id)
		}
		if err == nil && len(rest) != 0 {
			err = fmt.Errorf("%d bytes after the value", len(rest))
		}
		if err != nil {
			return nil, fmt.Errorf("KDS extension %v: %v", x.Id, err)
		}
	}
	return e, nil
}

// ia5 reads a DER IA5String, tag and all (asn1.Unmarshal with "ia5"
// would also take other string tags).
func ia5(b []byte, out *string) ([]byte, error) {
	if len(b) == 0 || b[0] != asn1.TagIA5String {
		return nil, errors.New("not an IA5String")
	}
	return asn1.UnmarshalWithParams(b, out, "ia5")
}

// tcb returns the TCB_VERSION the certificate's SPLs make, in the layout
// of its product line: Milan and Genoa have bootloader, TEE, four reserved
// SPLs, SNP and microcode in bytes 0-7; Turin has FMC, bootloader, TEE,
// SNP in bytes 0-3, zero in 4-6 and microcode in 7. Every SPL the layout
// uses must be present.
func (e *kdsExt) tcb(line string) (uint64, error) {
	var order []int // arc of the SPL in each byte, 0 for a zero byte
	switch line {
	case "Milan", "Genoa":
		order = []int{1, 2, 4, 5, 6, 7, 3, 8}
	case "Turin":
		order = []int{9, 1, 2, 3, 0, 0, 0, 8}
	default:
		return 0, fmt.Errorf("%w: no TCB layout for %q", ErrProductLine, line)
	}
	var v uint64
	for i, arc := range order {
		if arc == 0 {
			continue
		}
		if !e.present[fmt.Sprintf("3.%d", arc)] {
			return 0, fmt.Errorf("%s certificate has no SPL extension 1.3.6.1.4.1.3704.1.3.%d", line, arc)
		}
		v |= uint64(e.SPL[arc]) << (8 * i)
	}
	if line == "Turin" {
		// Turin's reserved bytes 4-6 are zero: a certificate giving them
		// a non-zero SPL names a TCB no Turin report can carry.
		for _, arc := range []int{4, 5, 6, 7} {
			if e.SPL[arc] != 0 {
				return 0, fmt.Errorf("Turin certificate has a non-zero reserved SPL 1.3.6.1.4.1.3704.1.3.%d", arc)
			}
		}
	}
	return v, nil
}

// hwidMatches: a Milan or Genoa VCEK's HWID is the report's 64-byte
// CHIP_ID; a Turin VCEK's is its first 8 bytes, and the other 56 are zero.
func hwidMatches(line string, hwid, chip []byte) bool {
	n := 64
	if line == "Turin" {
		n = 8
	}
	if len(hwid) != n || len(chip) != 64 {
		return false
	}
	for _, b := range chip[n:] {
		if b != 0 {
			return false
		}
	}
	return string(hwid) == string(chip[:n])
}

// checkAMDName checks the fixed part of an AMD KDS certificate name
// (57230, "Certificate Format"): one each of OU Engineering, C US, L
// Santa Clara, ST CA, O Advanced Micro Devices, and the given CN.
func checkAMDName(n pkix.Name, role, cn string) error {
	for _, f := range []struct {
		name string
		got  []string
		want string
	}{{"OU", n.OrganizationalUnit, "Engineering"}, {"C", n.Country, "US"}, {"L", n.Locality, "Santa Clara"},
		{"ST", n.Province, "CA"}, {"O", n.Organization, "Advanced Micro Devices"}} {
		if len(f.got) != 1 || f.got[0] != f.want {
			return fmt.Errorf("%s %s is %q, want %q", role, f.name, f.got, f.want)
		}
	}
	if n.CommonName != cn {
		return fmt.Errorf("%s CN is %q, want %q", role, n.CommonName, cn)
	}
	return nil
}

// checkEndorsementKey checks the form AMD's KDS gives a VCEK or VLEK
// (as go-sev-guest's verify does): X.509 v3, signed with RSASSA-PSS
// SHA-384, an ECDSA P-384 key, AMD's names with CN SEV-VCEK/SEV-VLEK and
// the issuer SEV-<line> (VCEK) or SEV-VLEK-<line> (VLEK); a VCEK has an
// HWID and no CSP_ID, a VLEK a CSP_ID and no HWID.
func checkEndorsementKey(c *x509.Certificate, e *kdsExt, key sevabi.ReportSigner, line string) error {
	if c.Version != 3 {
		return fmt.Errorf("%v certificate version %d, want 3", key, c.Version)
	}
	if c.SignatureAlgorithm != x509.SHA384WithRSAPSS {
		return fmt.Errorf("%v certificate signed with %v, want SHA-384 with RSASSA-PSS", key, c.SignatureAlgorithm)
	}
	if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve.Params().Name != "P-384" {
		return fmt.Errorf("%v certificate key is not ECDSA P-384", key)
	}
	issuer := "SEV-" + line
	if key == sevabi.VlekReportSigner {
		issuer = "SEV-VLEK-" + line
	}
	if err := checkAMDName(c.Subject, key.String()+" subject", "SEV-"+key.String()); err != nil {
		return err
	}
	if err := checkAMDName(c.Issuer, key.String()+" issuer", issuer); err != nil {
		return err
	}
	switch key {
	case sevabi.VcekReportSigner:
		if e.CSPID != "" || e.HWID == nil {
			return fmt.Errorf("VCEK certificate must have an HWID and no CSP_ID")
		}
	case sevabi.VlekReportSigner:
		if e.CSPID == "" || e.HWID != nil {
			return fmt.Errorf("VLEK certificate must have a CSP_ID and no HWID")
		}
	}
	return nil
}

// verifyChain verifies the endorsement key certificate ek of kind key
// against the AMD roots of one product line: its form, then the X.509
// chain ek → ASK (VCEK) or ASVK (VLEK) → ARK at time at. It returns the
// roots that verified it.
func verifyChain(ek *x509.Certificate, e *kdsExt, key sevabi.ReportSigner, line string, roots []*trust.AMDRootCerts, at time.Time) (*trust.AMDRootCerts, error) {
	if err := checkEndorsementKey(ek, e, key, line); err != nil {
		return nil, err
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("%w: no AMD roots for the %s line", ErrProductLine, line)
	}
	var errs []error
	for _, r := range roots {
		var opts *x509.VerifyOptions
		if r != nil {
			opts = r.X509Options(at, key)
		}
		if opts == nil {
			errs = append(errs, fmt.Errorf("%s roots have no ARK or no %s", line, map[bool]string{true: "ASVK", false: "ASK"}[key == sevabi.VlekReportSigner]))
			continue
		}
		if _, err := ek.Verify(*opts); err != nil {
			errs = append(errs, err)
			continue
		}
		return r, nil
	}
	return nil, fmt.Errorf("%v does not chain to AMD's %s ARK: %w", key, line, errors.Join(errs...))
}

// productLine chooses the product line whose roots must verify the
// chain, and says how: from the endorsement key's product-name extension,
// cross-checked with the report's CPUID family and model when the report
// has them (v3 and later, not all zero). A line neither names is "" (the
// caller tries each); a name or CPUID ccmr does not know, or two that
// disagree, is an error. The product name is read before the chain is
// verified, but it only picks the roots: the chain to them then
// authenticates it.
func productLine(raw []byte, version int, productName, signer string) (line, how string, err error) {
	nameLine, err := lineFromProductName(productName)
	if err != nil {
		return "", "", err
	}
	var cpuLine string
	var fam, model, step byte
	hasCPUID := false
	if version >= 3 && len(raw) > 0x18A {
		fam, model, step = raw[0x188], raw[0x189], raw[0x18A]
		hasCPUID = fam != 0 || model != 0 || step != 0
	}
	if hasCPUID {
		if cpuLine = lineFromCPUID(fam, model); cpuLine == "" {
			return "", "", fmt.Errorf("%w: report CPUID family %02Xh model %02Xh is no SEV-SNP product line ccmr knows (%s)", ErrProductLine, fam, model, strings.Join(ProductLines, ", "))
		}
	}
	switch {
	case nameLine != "" && cpuLine != "" && nameLine != cpuLine:
		return "", "", fmt.Errorf("%w: the %s names %q (%s) but the report's CPUID family %02Xh model %02Xh is %s", ErrProductLine, signer, productName, nameLine, fam, model, cpuLine)
	case nameLine != "" && cpuLine != "":
		return nameLine, fmt.Sprintf("%s product name %q, and report CPUID family %02Xh model %02Xh stepping %d", signer, productName, fam, model, step), nil
	case nameLine != "":
		return nameLine, fmt.Sprintf("%s product name %q; the v%d report has no CPUID", signer, productName, version), nil
	case cpuLine != "":
		return cpuLine, fmt.Sprintf("report CPUID family %02Xh model %02Xh stepping %d; the %s has no product name", fam, model, step, signer), nil
	}
	return "", "", nil
}
