package snpverify

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	sevabi "github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	"github.com/google/go-sev-guest/verify/trust"
)

var (
	genoaAt = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	turinAt = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
)

// genoa returns the real Genoa v3 report (Azure HCL report, SNP report at
// offset 0x20) and its VCEK (product name "Genoa", no stepping) from the
// corpus's trustee/az-snp-vtpm/evidence-genoa.json.
func genoa(t *testing.T) (report, vcek []byte) {
	t.Helper()
	var ev struct {
		Report []byte `json:"-"`
		Raw    []int  `json:"report"`
		VCEK   string `json:"vcek"`
	}
	if err := json.Unmarshal(readCorpus(t, "trustee/az-snp-vtpm/evidence-genoa.json"), &ev); err != nil {
		t.Fatal(err)
	}
	if len(ev.Raw) < 0x20+sevabi.ReportSize {
		t.Fatalf("HCL report is %d bytes", len(ev.Raw))
	}
	for _, v := range ev.Raw[0x20 : 0x20+sevabi.ReportSize] {
		report = append(report, byte(v))
	}
	return report, []byte(ev.VCEK)
}

func turinVCEK(t *testing.T) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile("testdata/turin-vcek.pem")
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func checkedHas(r *Result, s string) bool {
	for _, c := range r.Checked {
		if strings.Contains(c, s) {
			return true
		}
	}
	return false
}

// The real Genoa v3 report verifies against the Genoa roots, and the
// report says which chain and why.
func TestGenoaVCEKTrusted(t *testing.T) {
	rep, vcek := genoa(t)
	blk, _ := pem.Decode(vcek)
	if !independentSig(t, rep, blk.Bytes) {
		t.Fatal("independent signature check fails: corpus changed?")
	}
	r, err := Verify(rep, [][]byte{vcek}, Options{At: genoaAt})
	if err != nil {
		t.Fatalf("not trusted: %v", err)
	}
	if r.ProductLine != "Genoa" || r.Version != 3 || r.Signer != "VCEK" {
		t.Errorf("line %s version %d signer %s", r.ProductLine, r.Version, r.Signer)
	}
	for _, want := range []string{`product line Genoa (VCEK product name "Genoa", and report CPUID family 19h model 11h stepping 1)`,
		"VCEK → AMD Genoa ASK → AMD Genoa ARK", "CHIP_ID is the VCEK's HWID", "reported TCB 541700000000000a (bootloader 10, TEE 0, SNP 23, microcode 84)"} {
		if !checkedHas(r, want) {
			t.Errorf("checked lacks %q: %q", want, r.Checked)
		}
	}
	// The Milan roots do not verify it.
	milan, err := DefaultRoots()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Verify(rep, [][]byte{vcek}, Options{At: genoaAt, Roots: map[string][]*trust.AMDRootCerts{"Genoa": milan["Milan"]}})
	var ce *CheckError
	if !errors.As(err, &ce) || ce.Check != CheckSignature {
		t.Errorf("Genoa VCEK with Milan roots under Genoa: %v", err)
	}
}

// A Genoa-class part of family 19h model A0h (Bergamo, Siena) is Genoa:
// go-sev-guest maps it to no line and fails with "Last error: <nil>". No
// public report of such a part was found, so the real Genoa report's
// model byte is changed: the line is Genoa and the chain verifies; the
// signature, over the changed byte, does not.
func TestGenoaModelA0(t *testing.T) {
	rep, vcek := genoa(t)
	rep = bytes.Clone(rep)
	rep[0x189] = 0xA0
	line, how, err := productLine(rep, 3, "Genoa", "VCEK")
	if err != nil || line != "Genoa" || !strings.Contains(how, "model A0h") {
		t.Fatalf("model A0h: %q %q %v", line, how, err)
	}
	r, err := Verify(rep, [][]byte{vcek}, Options{At: genoaAt})
	var ce *CheckError
	if !errors.As(err, &ce) || ce.Check != CheckSignature || !strings.Contains(err.Error(), "report signature") {
		t.Fatalf("want the report signature to fail, after the chain: %v", err)
	}
	if !checkedHas(r, "VCEK → AMD Genoa ASK → AMD Genoa ARK") {
		t.Errorf("chain not reported as verified: %q", r.Checked)
	}
	for _, c := range []struct {
		fam, model byte
		want       string
	}{{0x19, 0x01, "Milan"}, {0x19, 0x11, "Genoa"}, {0x19, 0xA0, "Genoa"}, {0x19, 0xAF, "Genoa"}, {0x1A, 0x02, "Turin"}, {0x1A, 0x11, "Turin"},
		{0x19, 0x21, ""}, {0x19, 0x61, ""}, {0x1A, 0x20, ""}, {0x17, 0x31, ""}, {0x1B, 0x00, ""}} {
		if got := lineFromCPUID(c.fam, c.model); got != c.want {
			t.Errorf("family %02Xh model %02Xh: %q, want %q", c.fam, c.model, got, c.want)
		}
	}
}

// Hostile: a report whose CPUID names one line with a VCEK naming
// another, a CPUID ccmr does not know, a product name of an unknown line.
func TestProductLineRefused(t *testing.T) {
	rep, vcek := genoa(t)
	for name, c := range map[string]struct {
		fam, model byte
		want       string
	}{
		"Genoa VCEK, Milan report": {0x19, 0x01, `names "Genoa" (Genoa) but the report's CPUID family 19h model 01h is Milan`},
		"Genoa VCEK, Turin report": {0x1A, 0x02, "is Turin"},
		"unknown CPUID":            {0x19, 0x61, "family 19h model 61h is no SEV-SNP product line"},
	} {
		t.Run(name, func(t *testing.T) {
			r := bytes.Clone(rep)
			r[0x188], r[0x189] = c.fam, c.model
			_, err := Verify(r, [][]byte{vcek}, Options{At: genoaAt})
			var ce *CheckError
			if !errors.As(err, &ce) || ce.Check != CheckProductLine || !errors.Is(err, ErrProductLine) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want a product line refusal with %q, got %v", c.want, err)
			}
		})
	}
	for _, n := range []string{"Venice-A0", "Rome-B0", "milan", "Genoa-", "Genoa-B10", "Turin-b1", "Milan-B0-x"} {
		if _, err := lineFromProductName(n); !errors.Is(err, ErrProductLine) {
			t.Errorf("product name %q: %v", n, err)
		}
	}
	for n, want := range map[string]string{"Milan-B0": "Milan", "Milan-B1": "Milan", "Genoa-B1": "Genoa", "Genoa": "Genoa", "Turin-B0": "Turin", "Turin": "Turin", "": ""} {
		if got, err := lineFromProductName(n); err != nil || got != want {
			t.Errorf("product name %q: %q %v", n, got, err)
		}
	}
}

// Hostile: a Genoa VCEK given for the Milan v2 report (no CPUID): the
// VCEK names Genoa, its chain verifies to Genoa's ARK, and the report's
// signature is not its.
func TestGenoaVCEKMilanReport(t *testing.T) {
	_, vcek := genoa(t)
	_, err := Verify(readCorpus(t, "go-sev-guest/attestation.bin"), [][]byte{vcek}, Options{At: genoaAt})
	var ce *CheckError
	if !errors.As(err, &ce) || ce.Check != CheckSignature || !strings.Contains(err.Error(), "report signature") {
		t.Fatalf("Genoa VCEK with the Milan report: %v", err)
	}
}

// replaceOnce changes one occurrence of old in der (same length).
func replaceOnce(t *testing.T, der []byte, old, new string) []byte {
	t.Helper()
	if len(old) != len(new) || bytes.Count(der, []byte(old)) != 1 {
		t.Fatalf("%q occurs %d times", old, bytes.Count(der, []byte(old)))
	}
	return bytes.Replace(bytes.Clone(der), []byte(old), []byte(new), 1)
}

// Hostile: a VCEK whose product-name extension was changed. Within the
// line the certificate's signature breaks; to another line its issuer is
// not that line's ASK; against the report's CPUID the lines disagree.
func TestChangedProductName(t *testing.T) {
	milanRep := readCorpus(t, "go-sev-guest/attestation.bin")
	milanVCEK := readCorpus(t, "go-sev-guest/vcek.testcer")
	var ce *CheckError
	b1 := replaceOnce(t, milanVCEK, "Milan-B0", "Milan-B1")
	if _, err := Verify(milanRep, [][]byte{b1}, Options{At: milanAt}); !errors.As(err, &ce) || ce.Check != CheckSignature || !strings.Contains(err.Error(), "does not chain to AMD's Milan ARK") {
		t.Errorf("Milan-B0 → Milan-B1: %v", err)
	}
	g := replaceOnce(t, milanVCEK, "Milan-B0", "Genoa-B0")
	if _, err := Verify(milanRep, [][]byte{g}, Options{At: milanAt}); !errors.As(err, &ce) || ce.Check != CheckSignature || !strings.Contains(err.Error(), `issuer CN is "SEV-Milan", want "SEV-Genoa"`) {
		t.Errorf("Milan-B0 → Genoa-B0: %v", err)
	}
	u := replaceOnce(t, milanVCEK, "Milan-B0", "Venic-B0")
	if _, err := Verify(milanRep, [][]byte{u}, Options{At: milanAt}); !errors.As(err, &ce) || ce.Check != CheckProductLine {
		t.Errorf("Milan-B0 → Venic-B0: %v", err)
	}
	rep, vcek := genoa(t)
	blk, _ := pem.Decode(vcek)
	tu := replaceOnce(t, blk.Bytes, "\x16\x05Genoa", "\x16\x05Turin")
	if _, err := Verify(rep, [][]byte{tu}, Options{At: genoaAt}); !errors.As(err, &ce) || ce.Check != CheckProductLine || !strings.Contains(err.Error(), "is Genoa") {
		t.Errorf("Genoa → Turin with a Genoa report: %v", err)
	}
	// A product name that is not an IA5String is refused, not read.
	octet := replaceOnce(t, milanVCEK, "\x16\x08Milan-B0", "\x04\x08Milan-B0")
	if _, err := Verify(milanRep, [][]byte{octet}, Options{At: milanAt}); !errors.As(err, &ce) || ce.Check != CheckCertificates || !strings.Contains(err.Error(), "not an IA5String") {
		t.Errorf("product name as an OCTET STRING: %v", err)
	}
}

// The real Turin VCEK (no public Turin report was found) chains to the
// Turin ARK through the Turin ASK go-sev-guest embeds, and to no other
// line's. go-sev-guest's kds package cannot read it (8-byte HWID, no
// SPL 3.4, FMC SPL 3.9); ccmr's reader can, and composes the Turin TCB.
func TestTurinVCEKChain(t *testing.T) {
	c := turinVCEK(t)
	if _, err := kds.VcekCertificateExtensions(c); err == nil {
		t.Log("go-sev-guest now reads Turin VCEKs")
	}
	e, err := parseKDSExtensions(c)
	if err != nil {
		t.Fatal(err)
	}
	if line, err := lineFromProductName(e.ProductName); line != "Turin" || err != nil || e.StructVersion != 1 {
		t.Fatalf("product name %q → %q %v, struct version %d", e.ProductName, line, err, e.StructVersion)
	}
	roots, err := DefaultRoots()
	if err != nil {
		t.Fatal(err)
	}
	r, err := verifyChain(c, e, sevabi.VcekReportSigner, "Turin", roots["Turin"], turinAt)
	if err != nil || r.ProductCerts.Ark.Subject.CommonName != "ARK-Turin" {
		t.Fatalf("Turin VCEK against the Turin roots: %v", err)
	}
	for _, l := range []string{"Milan", "Genoa"} {
		if _, err := verifyChain(c, e, sevabi.VcekReportSigner, l, roots[l], turinAt); err == nil {
			t.Errorf("Turin VCEK verified against the %s roots", l)
		}
		// Even with the issuer name check out of the way, the other
		// line's ASK did not sign it.
		opts := roots[l][0].X509Options(turinAt, sevabi.VcekReportSigner)
		if _, err := c.Verify(*opts); err == nil {
			t.Errorf("Turin VCEK chains to the %s ASK", l)
		}
	}
	if _, err := verifyChain(c, e, sevabi.VcekReportSigner, "Turin", roots["Turin"], time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); err == nil {
		t.Error("Turin VCEK verified before its notBefore (2026-07-18)")
	}
	// SPLs per the certificate: FMC 1, bootloader 3, TEE 2, SNP 5,
	// microcode 0x5a; Turin layout puts them in bytes 0, 1, 2, 3, 7.
	tcb, err := e.tcb("Turin")
	if err != nil || tcb != 0x5a00000005020301 {
		t.Errorf("Turin TCB %016x %v", tcb, err)
	}
	if _, err := e.tcb("Genoa"); err == nil {
		t.Error("Turin certificate read in the Genoa layout (it has no SPL 3.4)")
	}
	if hex.EncodeToString(e.HWID) != "5b0f3945c57a2338" {
		t.Errorf("HWID %x", e.HWID)
	}
	chip := make([]byte, 64)
	copy(chip, e.HWID)
	if !hwidMatches("Turin", e.HWID, chip) {
		t.Error("Turin CHIP_ID with its 8-byte HWID and 56 zero bytes does not match")
	}
	chip[8] = 1
	if hwidMatches("Turin", e.HWID, chip) || hwidMatches("Genoa", e.HWID, chip[:64]) {
		t.Error("Turin CHIP_ID with a non-zero byte 8, or read as Genoa, matches")
	}
}

// The product-line reader agrees with go-sev-guest's on the Milan and
// Genoa VCEKs and the Milan VLEK it can read.
func TestKDSExtensionsAgree(t *testing.T) {
	_, gv := genoa(t)
	blk, _ := pem.Decode(gv)
	for _, c := range []struct {
		der []byte
		key sevabi.ReportSigner
	}{{readCorpus(t, "go-sev-guest/vcek.testcer"), sevabi.VcekReportSigner}, {blk.Bytes, sevabi.VcekReportSigner},
		{readCorpus(t, "trustee/snp/test-vlek.der"), sevabi.VlekReportSigner}} {
		cert, err := x509.ParseCertificate(c.der)
		if err != nil {
			t.Fatal(err)
		}
		want, err := kds.CertificateExtensions(cert, c.key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseKDSExtensions(cert)
		if err != nil {
			t.Fatal(err)
		}
		line, _ := lineFromProductName(got.ProductName)
		tcb, err := got.tcb(line)
		if err != nil || tcb != uint64(want.TCBVersion) || got.ProductName != want.ProductName || !bytes.Equal(got.HWID, want.HWID) || got.CSPID != want.CspID {
			t.Errorf("%s: got %q %x %q tcb %016x (%v), go-sev-guest %q %x %q %016x", cert.Subject.CommonName, got.ProductName, got.HWID, got.CSPID, tcb, err,
				want.ProductName, want.HWID, want.CspID, uint64(want.TCBVersion))
		}
	}
}

// virtee/sev's test files: a Milan v2 report with its VCEK (their
// milan_report test verifies it; milan_report_invalid flips bit 7 of byte
// 21) and a second real Turin VCEK (their turin_ca_stack test chains it
// to the Turin ASK/ARK).
func TestVirteeFiles(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	rep, vcek := read("virtee-milan-report.bin"), read("virtee-milan-vcek.der")
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	r, err := Verify(rep, [][]byte{vcek}, Options{At: at})
	if err != nil {
		t.Fatalf("virtee Milan report: %v", err)
	}
	if r.ProductLine != "Milan" || r.Version != 2 || !checkedHas(r, `VCEK product name "Milan-B0"; the v2 report has no CPUID`) {
		t.Errorf("line %s version %d checked %q", r.ProductLine, r.Version, r.Checked)
	}
	bad := bytes.Clone(rep)
	bad[21] ^= 0x80
	if _, err := Verify(bad, [][]byte{vcek}, Options{At: at}); err == nil {
		t.Error("virtee milan_report_invalid change accepted")
	}
	c, err := x509.ParseCertificate(read("virtee-turin-vcek.der"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := parseKDSExtensions(c)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := DefaultRoots()
	if err != nil {
		t.Fatal(err)
	}
	if line, _ := lineFromProductName(e.ProductName); line != "Turin" || len(e.HWID) != 8 {
		t.Errorf("product name %q HWID %x", e.ProductName, e.HWID)
	}
	if _, err := verifyChain(c, e, sevabi.VcekReportSigner, "Turin", roots["Turin"], at); err != nil {
		t.Errorf("virtee Turin VCEK: %v", err)
	}
	if _, err := verifyChain(c, e, sevabi.VcekReportSigner, "Genoa", roots["Genoa"], at); err == nil {
		t.Error("virtee Turin VCEK verified as Genoa")
	}
	// From the certificate: structVersion 1, HWID 1e550a8ee5cf9f4d, all
	// SPLs 0 but microcode 9.
	if tcb, err := e.tcb("Turin"); err != nil || tcb != 0x0900000000000000 || hex.EncodeToString(e.HWID) != "1e550a8ee5cf9f4d" || e.StructVersion != 1 {
		t.Errorf("virtee Turin VCEK: TCB %016x (%v), HWID %x, struct version %d", tcb, err, e.HWID, e.StructVersion)
	}
}
