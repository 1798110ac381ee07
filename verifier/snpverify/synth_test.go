package snpverify

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	sevabi "github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/verify/trust"
)

// testPKI is a test-only AMD-shaped hierarchy for one product line: an
// RSA ARK and ASK signing with RSASSA-PSS SHA-384, and an ECDSA P-384
// VCEK with the KDS extensions given. AMD's keys cannot sign here; these
// tests cover the paths no public report reaches (a Turin report, a v2
// report whose VCEK names no line).
type testPKI struct {
	roots *trust.AMDRootCerts
	key   *ecdsa.PrivateKey
	vcek  []byte
}

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func amdName(cn string) pkix.Name {
	return pkix.Name{OrganizationalUnit: []string{"Engineering"}, Country: []string{"US"}, Locality: []string{"Santa Clara"},
		Province: []string{"CA"}, Organization: []string{"Advanced Micro Devices"}, CommonName: cn}
}

func kdsExtension(t *testing.T, arc []int, v any, params string) pkix.Extension {
	t.Helper()
	var b []byte
	var err error
	if raw, ok := v.([]byte); ok {
		b = raw
	} else if b, err = asn1.MarshalWithParams(v, params); err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: append(append(asn1.ObjectIdentifier{}, kdsArc...), arc...), Value: b}
}

func newTestPKI(t *testing.T, line string, exts []pkix.Extension) *testPKI {
	t.Helper()
	rsaKey := func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	create := func(tmpl, parent *x509.Certificate, pub any, priv any) *x509.Certificate {
		tmpl.SignatureAlgorithm = x509.SHA384WithRSAPSS
		tmpl.NotBefore, tmpl.NotAfter = t0, t0.AddDate(10, 0, 0)
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	arkKey, askKey := rsaKey(), rsaKey()
	ca := func(serial int64, cn string) *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: amdName(cn), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	}
	ark := create(ca(1, "ARK-"+line), nil, &arkKey.PublicKey, arkKey)
	ask := create(ca(2, "SEV-"+line), ark, &askKey.PublicKey, arkKey)
	vk, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	vcek := create(&x509.Certificate{SerialNumber: big.NewInt(3), Subject: amdName("SEV-VCEK"), ExtraExtensions: exts}, ask, &vk.PublicKey, askKey)
	r := trust.AMDRootCertsProduct(line)
	r.ProductCerts = &trust.ProductCerts{Ark: ark, Ask: ask}
	return &testPKI{roots: r, key: vk, vcek: vcek.Raw}
}

// sign puts the test VCEK's signature on a report: SHA-384 over the
// first 0x2A0 bytes, r and s little endian in 72-byte fields.
func (p *testPKI) sign(t *testing.T, rep []byte) []byte {
	t.Helper()
	rep = bytes.Clone(rep)
	h := sha512.Sum384(rep[:0x2A0])
	r, s, err := ecdsa.Sign(rand.Reader, p.key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	clear(rep[0x2A0 : 0x2A0+144])
	for i, n := range []*big.Int{r, s} {
		be := n.Bytes()
		for j := range be {
			rep[0x2A0+72*i+j] = be[len(be)-1-j]
		}
	}
	return rep
}

// splExts are the KDS extensions of a VCEK: struct version, product name
// (none if ""), HWID and the SPLs by arc.
func splExts(t *testing.T, name string, hwid []byte, spl map[int]int) []pkix.Extension {
	x := []pkix.Extension{kdsExtension(t, []int{1}, 1, ""), kdsExtension(t, []int{4}, hwid, "")}
	if name != "" {
		x = append(x, kdsExtension(t, []int{2}, name, "ia5"))
	}
	for arc, v := range spl {
		x = append(x, kdsExtension(t, []int{3, arc}, v, ""))
	}
	return x
}

// A Turin v3 report: the line comes from the VCEK and the CPUID (family
// 1Ah model 02h), the TCB is read in Turin's layout (FMC in byte 0) and
// CHIP_ID is the 8-byte HWID and zeros.
func TestSyntheticTurinReport(t *testing.T) {
	base, _ := genoa(t)
	hwid := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	pki := newTestPKI(t, "Turin", splExts(t, "Turin-B0", hwid, map[int]int{9: 1, 1: 3, 2: 2, 3: 5, 5: 0, 6: 0, 7: 0, 8: 0x5a}))
	rep := bytes.Clone(base)
	rep[0x188], rep[0x189], rep[0x18A] = 0x1A, 0x02, 0x00
	binary.LittleEndian.PutUint64(rep[0x180:], 0x5a00000005020301)
	clear(rep[0x1A0:0x1E0])
	copy(rep[0x1A0:], hwid)
	roots := map[string][]*trust.AMDRootCerts{"Turin": {pki.roots}}
	r, err := Verify(pki.sign(t, rep), [][]byte{pki.vcek}, Options{At: t0.AddDate(1, 0, 0), Roots: roots})
	if err != nil {
		t.Fatalf("synthetic Turin report: %v", err)
	}
	p := r.ReportedTCBParts
	if r.ProductLine != "Turin" || r.ReportedFMCSPL != 1 || p.BlSpl != 3 || p.TeeSpl != 2 || p.SnpSpl != 5 || p.UcodeSpl != 0x5a {
		t.Errorf("line %s FMC %d parts %+v", r.ProductLine, r.ReportedFMCSPL, p)
	}
	if !checkedHas(r, "FMC 1, bootloader 3, TEE 2, SNP 5, microcode 90") || !checkedHas(r, "CHIP_ID is the VCEK's HWID") {
		t.Errorf("checked: %q", r.Checked)
	}
	var ce *CheckError
	// The same SPLs in the Milan/Genoa layout are not the VCEK's TCB.
	bad := bytes.Clone(rep)
	binary.LittleEndian.PutUint64(bad[0x180:], 0x5a05000000000203)
	if _, err := Verify(pki.sign(t, bad), [][]byte{pki.vcek}, Options{At: t0.AddDate(1, 0, 0), Roots: roots}); !errors.Is(err, ErrTCBMismatch) {
		t.Errorf("Turin TCB in Genoa layout: %v", err)
	}
	// CHIP_ID beyond the 8 HWID bytes is not zero.
	bad = bytes.Clone(rep)
	bad[0x1A0+8] = 1
	if _, err := Verify(pki.sign(t, bad), [][]byte{pki.vcek}, Options{At: t0.AddDate(1, 0, 0), Roots: roots}); !errors.As(err, &ce) || ce.Check != CheckChipID {
		t.Errorf("Turin CHIP_ID with a non-zero byte 8: %v", err)
	}
	// The same report with Genoa's CPUID: the lines disagree.
	bad = bytes.Clone(rep)
	bad[0x188], bad[0x189] = 0x19, 0x11
	if _, err := Verify(pki.sign(t, bad), [][]byte{pki.vcek}, Options{At: t0.AddDate(1, 0, 0), Roots: roots}); !errors.Is(err, ErrProductLine) {
		t.Errorf("Turin VCEK, Genoa CPUID: %v", err)
	}
}

// A v2 report whose VCEK has no product name: each line is tried, the
// one whose chain verifies is taken and named; with no such line the
// report is refused.
func TestSyntheticNoLineNamed(t *testing.T) {
	base := readCorpus(t, "go-sev-guest/attestation.bin")
	chip := bytes.Repeat([]byte{0xC1}, 64)
	pki := newTestPKI(t, "Genoa", splExts(t, "", chip, map[int]int{1: 2, 2: 0, 3: 5, 4: 0, 5: 0, 6: 0, 7: 0, 8: 0x44}))
	rep := bytes.Clone(base)
	copy(rep[0x1A0:0x1E0], chip)
	rep = pki.sign(t, rep)
	other := newTestPKI(t, "Milan", nil)
	at := t0.AddDate(1, 0, 0)
	r, err := Verify(rep, [][]byte{pki.vcek}, Options{At: at, Roots: map[string][]*trust.AMDRootCerts{"Milan": {other.roots}, "Genoa": {pki.roots}}})
	if err != nil {
		t.Fatalf("no line named: %v", err)
	}
	if r.ProductLine != "Genoa" || !checkedHas(r, "product line Genoa (no line named by report or VCEK; the only one of Milan, Genoa, Turin whose chain verifies)") {
		t.Errorf("line %s, checked %q", r.ProductLine, r.Checked)
	}
	_, err = Verify(rep, [][]byte{pki.vcek}, Options{At: at, Roots: map[string][]*trust.AMDRootCerts{"Milan": {other.roots}}})
	var ce *CheckError
	if !errors.As(err, &ce) || ce.Check != CheckSignature || !errors.Is(err, ErrProductLine) || !strings.Contains(err.Error(), "chains to none of Milan, Genoa, Turin") {
		t.Errorf("no line named, no line verifies: %v", err)
	}
	// The test roots under a line they are not (ARK-Genoa given as Milan):
	// the VCEK's issuer is not SEV-Milan.
	_, err = Verify(rep, [][]byte{pki.vcek}, Options{At: at, Roots: map[string][]*trust.AMDRootCerts{"Milan": {pki.roots}}})
	if !errors.As(err, &ce) || ce.Check != CheckSignature {
		t.Errorf("Genoa roots filed under Milan: %v", err)
	}
}

// A VLEK chains to its line's ASVK, never to the ASK: the real Milan VLEK
// with roots whose ASVK is missing or is the ASK is refused.
func TestVLEKNeedsASVK(t *testing.T) {
	rep := readCorpus(t, "trustee/snp/test-vlek-report.bin")
	vlek := readCorpus(t, "trustee/snp/test-vlek.der")
	def, err := DefaultRoots()
	if err != nil {
		t.Fatal(err)
	}
	m := def["Milan"][0].ProductCerts
	r, err := Verify(rep, [][]byte{vlek}, Options{At: milanAt})
	if err != nil || !checkedHas(r, "VLEK → AMD Milan ASVK → AMD Milan ARK") || !checkedHas(r, `VLEK product name "Milan", and report CPUID family 19h model 01h`) {
		t.Fatalf("VLEK: %v %q", err, r.Checked)
	}
	for name, pc := range map[string]*trust.ProductCerts{
		"no ASVK":     {Ark: m.Ark, Ask: m.Ask},
		"ASK as ASVK": {Ark: m.Ark, Ask: m.Ask, Asvk: m.Ask},
	} {
		root := trust.AMDRootCertsProduct("Milan")
		root.ProductCerts = pc
		_, err := Verify(rep, [][]byte{vlek}, Options{At: milanAt, Roots: map[string][]*trust.AMDRootCerts{"Milan": {root}}})
		var ce *CheckError
		if !errors.As(err, &ce) || ce.Check != CheckSignature {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// The endorsement key's form, as AMD's KDS issues it: a certificate off
// that form is refused even under the right line.
func TestEndorsementKeyForm(t *testing.T) {
	pki := newTestPKI(t, "Genoa", splExts(t, "Genoa-B1", bytes.Repeat([]byte{1}, 64), map[int]int{1: 1, 2: 0, 3: 1, 4: 0, 5: 0, 6: 0, 7: 0, 8: 1}))
	good, err := x509.ParseCertificate(pki.vcek)
	if err != nil {
		t.Fatal(err)
	}
	e, err := parseKDSExtensions(good)
	if err != nil {
		t.Fatal(err)
	}
	const vcek = sevabi.VcekReportSigner
	if err := checkEndorsementKey(good, e, vcek, "Genoa"); err != nil {
		t.Fatalf("good form refused: %v", err)
	}
	for name, change := range map[string]func(c *x509.Certificate, e *kdsExt){
		"version 1":        func(c *x509.Certificate, e *kdsExt) { c.Version = 1 },
		"PKCS#1 signature": func(c *x509.Certificate, e *kdsExt) { c.SignatureAlgorithm = x509.SHA384WithRSA },
		"P-256 key":        func(c *x509.Certificate, e *kdsExt) { c.PublicKey = &ecdsa.PublicKey{Curve: elliptic.P256()} },
		"subject SEV-VLEK": func(c *x509.Certificate, e *kdsExt) { c.Subject.CommonName = "SEV-VLEK" },
		"two OUs":          func(c *x509.Certificate, e *kdsExt) { c.Subject.OrganizationalUnit = []string{"Engineering", "x"} },
		"issuer elsewhere": func(c *x509.Certificate, e *kdsExt) { c.Issuer.Locality = []string{"Austin"} },
		"VCEK with CSP_ID": func(c *x509.Certificate, e *kdsExt) { e.CSPID = "x" },
		"VCEK no HWID":     func(c *x509.Certificate, e *kdsExt) { e.HWID = nil },
	} {
		c, ee := *good, *e
		change(&c, &ee)
		if err := checkEndorsementKey(&c, &ee, vcek, "Genoa"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := checkEndorsementKey(good, e, vcek, "Milan"); err == nil {
		t.Error("Genoa VCEK accepted as Milan")
	}
	// Duplicate and unknown KDS extensions are refused.
	for name, x := range map[string][]pkix.Extension{
		"duplicate SPL": append(splExts(t, "Genoa-B1", bytes.Repeat([]byte{1}, 64), map[int]int{1: 1}), kdsExtension(t, []int{3, 1}, 2, "")),
		"unknown arc":   append(splExts(t, "Genoa-B1", bytes.Repeat([]byte{1}, 64), nil), kdsExtension(t, []int{6}, 1, "")),
		"SPL 256":       splExts(t, "Genoa-B1", bytes.Repeat([]byte{1}, 64), map[int]int{8: 256}),
	} {
		if _, err := parseKDSExtensions(&x509.Certificate{Extensions: x}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
