package verifier_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/bundle/importer"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier"
	"github.com/ccmr-dev/ccmr/verifier/azure"
	"github.com/ccmr-dev/ccmr/verifier/snpverify"
	"github.com/ccmr-dev/ccmr/verifier/tdxverify"
)

// Attacks on layer 0 (issue 15 items 3, 4, 6, 7, 8, 9, 11, 20): each input
// below proves nothing, or something else, and was TRUSTED before the fix;
// each must be refused now. Honest inputs next to them keep passing.

// ---- helpers ---------------------------------------------------------------

func hverify(t *testing.T, b *bundle.Bundle, o verifier.Options) *verifier.Report {
	t.Helper()
	rep, err := verifier.Verify(context.Background(), b, o)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func text(rep *verifier.Report) string {
	var b strings.Builder
	rep.WriteText(&b)
	return b.String()
}

// refused fails the test unless rep is NOT TRUSTED at layer 0 with a reason
// holding want.
func refused(t *testing.T, rep *verifier.Report, want string) {
	t.Helper()
	if rep.Trusted || rep.FailedLayer() != verifier.LayerEvidence || !strings.Contains(rep.Layers[0].Failure.Reason, want) {
		t.Fatalf("want layer 0 to fail with %q:\n%s", want, text(rep))
	}
}

func trusted(t *testing.T, rep *verifier.Report) {
	t.Helper()
	if !rep.Trusted {
		t.Fatalf("honest input not trusted:\n%s", text(rep))
	}
}

// swQuote is a TPMS_ATTEST quote of one bank over pcrs, made and signed in
// software by key (ECDSA, TPMT_SIGNATURE with sha256): what anyone holding
// a key can make.
func swQuote(t *testing.T, key *ecdsa.PrivateKey, alg mr.Alg, pcrs map[int][]byte, nonce []byte, reset, restart uint32) bundle.TPMQuote {
	t.Helper()
	var a []byte
	a = binary.BigEndian.AppendUint32(a, 0xff544347) // TPM_GENERATED_VALUE
	a = binary.BigEndian.AppendUint16(a, 0x8018)     // TPM_ST_ATTEST_QUOTE
	a = binary.BigEndian.AppendUint16(a, 0)          // qualifiedSigner
	a = binary.BigEndian.AppendUint16(a, uint16(len(nonce)))
	a = append(a, nonce...)
	a = binary.BigEndian.AppendUint64(a, 12345) // clock
	a = binary.BigEndian.AppendUint32(a, reset)
	a = binary.BigEndian.AppendUint32(a, restart)
	a = append(a, 1)                          // safe
	a = binary.BigEndian.AppendUint64(a, 0x2) // firmwareVersion
	a = binary.BigEndian.AppendUint32(a, 1)   // one selection
	a = binary.BigEndian.AppendUint16(a, uint16(alg))
	sel := make([]byte, 3)
	h := sha256.New()
	out := map[string]string{}
	for i := 0; i < 24; i++ {
		if v, ok := pcrs[i]; ok {
			sel[i/8] |= 1 << (i % 8)
			h.Write(v)
			out[strconv.Itoa(i)] = hex.EncodeToString(v)
		}
	}
	a = append(a, 3)
	a = append(a, sel...)
	d := h.Sum(nil)
	a = binary.BigEndian.AppendUint16(a, uint16(len(d)))
	a = append(a, d...)
	dig := sha256.Sum256(a)
	r, s, err := ecdsa.Sign(rand.Reader, key, dig[:])
	if err != nil {
		t.Fatal(err)
	}
	var sig []byte
	sig = binary.BigEndian.AppendUint16(sig, 0x0018) // TPM_ALG_ECDSA
	sig = binary.BigEndian.AppendUint16(sig, uint16(mr.SHA256))
	for _, n := range []*big.Int{r, s} {
		sig = binary.BigEndian.AppendUint16(sig, uint16(len(n.Bytes())))
		sig = append(sig, n.Bytes()...)
	}
	return bundle.TPMQuote{Alg: alg.String(), Attest: a, Signature: sig, PCRs: out}
}

func pubPEM(t *testing.T, k crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func tpmBundle(pub []byte, nonce []byte, quotes ...bundle.TPMQuote) *bundle.Bundle {
	return &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTPM, Nonce: nonce,
		Evidence: bundle.Evidence{PublicKey: string(pub), TPMQuotes: quotes}}
}

func pcrVal(alg mr.Alg, b byte) []byte { return bytes.Repeat([]byte{b}, alg.Size()) }

func newAK(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ---- item 3: TDX without collateral, SNP without CRL ----------------------

// The real v5 quote of the corpus is refused with its collateral (platform
// below every TCB level); without the collateral it was TRUSTED.
func TestAttack03_TDXWithoutCollateral(t *testing.T) {
	q := cfile(t, "dcap-qvl/tdx_quote_outdated").Data
	qr, err := tdxverify.ParseQuote(q)
	if err != nil {
		t.Fatal(err)
	}
	nonce := qr.Body.ReportData[:]
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	b := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTDX, Nonce: nonce, Evidence: bundle.Evidence{Report: q}}
	refused(t, hverify(t, b, verifier.Options{At: at, Nonce: nonce}), "without TCB collateral")
	// With its collateral: refused for its TCB.
	wc := *b
	wc.Collateral = &bundle.Collateral{TDX: cfile(t, "dcap-qvl/tdx_quote_outdated_collateral.json").Data}
	refused(t, hverify(t, &wc, verifier.Options{At: at, Nonce: nonce}), "no matching TCB level")
	// The opt-in: a pass that says what it did not prove.
	rep := hverify(t, b, verifier.Options{At: at, Nonce: nonce, AllowMissingCollateral: true})
	if !rep.Trusted || !strings.Contains(rep.Verdict, "weakened: no TCB collateral: TCB level, QE identity and revocation not checked") {
		t.Fatalf("opt-in without collateral:\n%s", text(rep))
	}
}

// An SNP report verified without AMD's CRL was a plain TRUSTED: revocation
// of the ASK and VCEK was never checked. The verdict says so now.
func TestAttack03_SNPWithoutCRL(t *testing.T) {
	r := cfile(t, "trustee/snp/test-report.bin").Data
	v := cfile(t, "trustee/snp/test-vcek.der").Data
	b := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformSNP, Nonce: r[0x50 : 0x50+64],
		Evidence: bundle.Evidence{Report: r, Certificates: [][]byte{v}}}
	rep := hverify(t, b, verifier.Options{At: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), Nonce: r[0x50 : 0x50+64]})
	if !rep.Trusted || !strings.Contains(rep.Verdict, "weakened: no AMD CRL") {
		t.Fatalf("SNP without a CRL:\n%s", text(rep))
	}
	// A CRL that is not AMD's (signed by a key of ours) is refused.
	crl := selfCRL(t)
	rep = hverify(t, b, verifier.Options{At: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), Nonce: r[0x50 : 0x50+64], SNPCRL: crl})
	refused(t, rep, "not signed by the ARK")
}

// selfCRL is a well-formed CRL signed by a key that is not AMD's.
func selfCRL(t *testing.T) []byte {
	t.Helper()
	k := newAK(t)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ARK-Milan"}, NotBefore: time.Unix(0, 0),
		NotAfter: time.Now().AddDate(10, 0, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCRLSign | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, ca, ca, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), NextUpdate: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, c, k)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

// ---- item 4: the Azure HCL chain ------------------------------------------

func azureSNP(t *testing.T) (*bundle.Bundle, []byte) {
	const a = "trustee/az-snp-vtpm/"
	hcl := cfile(t, a+"hcl-report.bin")
	b, err := importer.Build(importer.Parts{AzureHCLReport: &hcl, VCEK: ptr(cfile(t, a+"vcek.pem")),
		TPMQuotes: []importer.TPMQuote{{Attest: cfile(t, a+"tpm-quote.attest"), Signature: cfile(t, a+"tpm-quote.tpmt_signature"), PCRs: ptr(cfile(t, a+"tpm-quote-pcrs.serialized"))}}})
	if err != nil {
		t.Fatal(err)
	}
	return b, hcl.Data[32+0x90 : 32+0x90+48]
}

// Any SNP guest chooses its REPORT_DATA, so a verified report over runtime
// data holding an AK proves only that some guest chose that AK: the AK is
// not trusted through the HCL report unless asked for, and then only for the
// launch measurement the policy names.
func TestAttack04_AzureHCLTrustsAnyAK(t *testing.T) {
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	b, meas := azureSNP(t)
	nonce := []byte("challenge")
	t.Run("not asked for", func(t *testing.T) {
		refused(t, hverify(t, b, verifier.Options{At: at, Nonce: nonce}), "AK is not trusted")
	})
	t.Run("no measurement in the policy", func(t *testing.T) {
		refused(t, hverify(t, b, verifier.Options{At: at, Nonce: nonce, AzureHCL: true}), "snp.measurement")
	})
	t.Run("another measurement", func(t *testing.T) {
		p := &verifier.Policy{SNP: &verifier.SNPPolicy{Measurement: []string{strings.Repeat("00", 48)}}}
		refused(t, hverify(t, b, verifier.Options{At: at, Nonce: nonce, AzureHCL: true, Policy: p}), "not a reference value")
	})
	t.Run("policy allows debugging", func(t *testing.T) {
		// The HCL path requires VMPL 0 and no debugging whatever the
		// policy says; this report forbids debugging, so it passes: the
		// honest case.
		p := &verifier.Policy{SNP: &verifier.SNPPolicy{AllowDebug: true, Measurement: []string{hex.EncodeToString(meas)}}}
		trusted(t, hverify(t, b, verifier.Options{At: at, Nonce: nonce, AzureHCL: true, Policy: p}))
	})
	t.Run("honest", func(t *testing.T) {
		p := &verifier.Policy{SNP: &verifier.SNPPolicy{Measurement: []string{hex.EncodeToString(meas)}}}
		rep := hverify(t, b, verifier.Options{At: at, Nonce: nonce, AzureHCL: true, Policy: p})
		trusted(t, rep)
		if !strings.Contains(text(rep), "policy snp.vmpl: report from VMPL 0") {
			t.Fatalf("VMPL not judged:\n%s", text(rep))
		}
	})
}

// The TDX HCL path needs MRTD and RTMR0..3 reference values.
func TestAttack04_AzureHCLTDX(t *testing.T) {
	const a = "trustee/az-tdx-vtpm/"
	hcl := cfile(t, a+"hcl-report.bin")
	td := cfile(t, a+"td-quote.bin")
	b, err := importer.Build(importer.Parts{AzureHCLReport: &hcl, TDXQuote: &td,
		TPMQuotes: []importer.TPMQuote{{Attest: cfile(t, a+"tpm-quote.attest"), Signature: cfile(t, a+"tpm-quote.tpmt_signature"), PCRs: ptr(cfile(t, a+"tpm-quote-pcrs.serialized"))}}})
	if err != nil {
		t.Fatal(err)
	}
	qr, err := tdxverify.ParseQuote(td.Data)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	o := verifier.Options{At: at, Nonce: []byte("challenge"), AzureHCL: true, AllowMissingCollateral: true}
	refused(t, hverify(t, b, verifier.Options{At: at, Nonce: []byte("challenge")}), "AK is not trusted")
	refused(t, hverify(t, b, o), "tdx.mrtd and tdx.rtmr0..rtmr3")
	x := func(v [48]byte) []string { return []string{hex.EncodeToString(v[:])} }
	bd := qr.Body
	o.Policy = &verifier.Policy{TDX: &verifier.TDXPolicy{MRTD: x(bd.MRTD), RTMR0: x(bd.RTMR[0]), RTMR1: x(bd.RTMR[1]), RTMR2: x(bd.RTMR[2])}}
	refused(t, hverify(t, b, o), "tdx.mrtd and tdx.rtmr0..rtmr3")
	o.Policy.TDX.RTMR3 = x(bd.RTMR[3])
	trusted(t, hverify(t, b, o))
	// Without collateral and without the opt-in: refused.
	o.AllowMissingCollateral = false
	refused(t, hverify(t, b, o), "without TCB collateral")
}

// ---- item 6: SNP debug guests and platform fields ---------------------------

func goSevGuest(t *testing.T) (*bundle.Bundle, *snpverify.Result, time.Time) {
	report := cfile(t, "go-sev-guest/attestation.bin").Data
	vcek := cfile(t, "go-sev-guest/vcek.testcer").Data
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	res, err := snpverify.Verify(report, [][]byte{vcek}, snpverify.Options{At: at})
	if err != nil {
		t.Fatal(err)
	}
	return &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformSNP, Nonce: report[0x50 : 0x50+64],
		Evidence: bundle.Evidence{Report: report, Certificates: [][]byte{vcek}}}, res, at
}

// go-sev-guest's report allows debugging (guest policy bit 19) and was
// TRUSTED with "judge it by policy", with no policy member to judge it.
func TestAttack06_SNPDebugGuest(t *testing.T) {
	b, res, at := goSevGuest(t)
	if !res.DebugAllowed {
		t.Fatal("the corpus report no longer allows debugging")
	}
	refused(t, hverify(t, b, verifier.Options{At: at, Nonce: b.Nonce}), "allows debugging")
	trusted(t, hverify(t, b, verifier.Options{At: at, Nonce: b.Nonce, Policy: &verifier.Policy{SNP: &verifier.SNPPolicy{AllowDebug: true}}}))
}

// Every SNP policy member is judged: a value the report does not have is
// refused, the report's own value passes.
func TestAttack06_SNPPolicyMembers(t *testing.T) {
	b, res, at := goSevGuest(t)
	vmpl, other := res.VMPL, res.VMPL+1
	h := func(x []byte) []string { return []string{hex.EncodeToString(x)} }
	p := res.ReportedTCBParts
	cases := []struct {
		name      string
		bad, good verifier.SNPPolicy
		why       string
	}{
		{"vmpl", verifier.SNPPolicy{VMPL: &other}, verifier.SNPPolicy{VMPL: &vmpl}, "VMPL"},
		{"min_tcb", verifier.SNPPolicy{MinTCB: &verifier.SNPTCB{Microcode: p.UcodeSpl + 1}}, verifier.SNPPolicy{MinTCB: &verifier.SNPTCB{Bootloader: p.BlSpl, TEE: p.TeeSpl, SNP: p.SnpSpl, Microcode: p.UcodeSpl}}, "below the policy's minimum"},
		{"policy_set", verifier.SNPPolicy{PolicySet: "0x100000"}, verifier.SNPPolicy{PolicySet: "0x80000"}, "guest policy"},
		{"policy_clear", verifier.SNPPolicy{PolicyClear: "0x80000"}, verifier.SNPPolicy{PolicyClear: "0x100000"}, "guest policy"},
		{"measurement", verifier.SNPPolicy{Measurement: h(make([]byte, 48))}, verifier.SNPPolicy{Measurement: h(res.Measurement[:])}, "snp.measurement"},
		{"host_data", verifier.SNPPolicy{HostData: h(bytes.Repeat([]byte{1}, 32))}, verifier.SNPPolicy{HostData: h(res.HostData[:])}, "snp.host_data"},
		{"family_id", verifier.SNPPolicy{FamilyID: h(bytes.Repeat([]byte{1}, 16))}, verifier.SNPPolicy{FamilyID: h(res.FamilyID[:])}, "snp.family_id"},
		{"image_id", verifier.SNPPolicy{ImageID: h(bytes.Repeat([]byte{1}, 16))}, verifier.SNPPolicy{ImageID: h(res.ImageID[:])}, "snp.image_id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.bad.AllowDebug, c.good.AllowDebug = true, true
			refused(t, hverify(t, b, verifier.Options{At: at, Nonce: b.Nonce, Policy: &verifier.Policy{SNP: &c.bad}}), c.why)
			trusted(t, hverify(t, b, verifier.Options{At: at, Nonce: b.Nonce, Policy: &verifier.Policy{SNP: &c.good}}))
		})
	}
}

// Every TDX policy member is judged, on the real v4 quote with its
// collateral.
func TestAttack06_TDXPolicyMembers(t *testing.T) {
	q := cfile(t, "dcap-qvl/tdx_quote").Data
	coll := cfile(t, "dcap-qvl/tdx_quote_collateral.json").Data
	qr, err := tdxverify.ParseQuote(q)
	if err != nil {
		t.Fatal(err)
	}
	bd := qr.Body
	nonce := bd.ReportData[:]
	b := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTDX, Nonce: nonce, Evidence: bundle.Evidence{Report: q},
		Collateral: &bundle.Collateral{TDX: coll}}
	at := time.Date(2025, 7, 10, 0, 0, 0, 0, time.UTC)
	h := func(x []byte) []string { return []string{hex.EncodeToString(x)} }
	z48, z8 := h(bytes.Repeat([]byte{0xee}, 48)), h(bytes.Repeat([]byte{0xee}, 8))
	high := hex.EncodeToString(append([]byte{bd.TeeTCBSVN[0] + 1}, bd.TeeTCBSVN[1:]...))
	cases := []struct {
		name      string
		bad, good verifier.TDXPolicy
		why       string
	}{
		{"td_attributes", verifier.TDXPolicy{TDAttributes: z8}, verifier.TDXPolicy{TDAttributes: h(bd.TDAttributes[:])}, "tdx.td_attributes"},
		{"xfam", verifier.TDXPolicy{XFAM: z8}, verifier.TDXPolicy{XFAM: h(bd.XFAM[:])}, "tdx.xfam"},
		{"mrtd", verifier.TDXPolicy{MRTD: z48}, verifier.TDXPolicy{MRTD: h(bd.MRTD[:])}, "tdx.mrtd"},
		{"mrconfigid", verifier.TDXPolicy{MRConfigID: z48}, verifier.TDXPolicy{MRConfigID: h(bd.MRConfigID[:])}, "tdx.mrconfigid"},
		{"mrowner", verifier.TDXPolicy{MROwner: z48}, verifier.TDXPolicy{MROwner: h(bd.MROwner[:])}, "tdx.mrowner"},
		{"mrownerconfig", verifier.TDXPolicy{MROwnerConfig: z48}, verifier.TDXPolicy{MROwnerConfig: h(bd.MROwnerConfig[:])}, "tdx.mrownerconfig"},
		{"rtmr1", verifier.TDXPolicy{RTMR1: z48}, verifier.TDXPolicy{RTMR1: h(bd.RTMR[1][:])}, "tdx.rtmr1"},
		{"min_tee_tcb_svn", verifier.TDXPolicy{MinTEETCBSVN: high}, verifier.TDXPolicy{MinTEETCBSVN: hex.EncodeToString(bd.TeeTCBSVN[:])}, "below the policy's minimum"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			refused(t, hverify(t, b, verifier.Options{At: at, Nonce: nonce, Policy: &verifier.Policy{TDX: &c.bad}}), c.why)
			trusted(t, hverify(t, b, verifier.Options{At: at, Nonce: nonce, Policy: &verifier.Policy{TDX: &c.good}}))
		})
	}
	// A malformed member is refused when the policy is read.
	for _, bad := range []string{`{"tdx": {"mrtd": ["00"]}}`, `{"tdx": {"mrtd": []}}`, `{"tdx": {"allowed_tcb_statuses": ["Bogus"]}}`,
		`{"snp": {"policy_set": "zz"}}`, `{"snp": {"measurement": ["00"]}}`, `{"snp": {"vmpl": -1}}`} {
		if _, err := verifier.ParsePolicy([]byte(bad), "."); err == nil {
			t.Errorf("policy %s accepted", bad)
		}
	}
}

// ---- item 7: a sim key never vouches for a TPM quote ------------------------

// simKey opens a sim device and returns its public key (PEM) and its
// private key, read from the device's state folder as anyone who can run
// the sim can.
func simKey(t *testing.T) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "sim")
	dev, err := sim.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := dev.PublicKeyPEM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "attest-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(raw)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return pub, k.(*ecdsa.PrivateKey)
}

// The sim device's key signs a TPMS_ATTEST over invented PCRs: pinned as a
// sim key, it must not make a TPM quote trusted, with or without
// --allow-sim.
func TestAttack07_SimKeySignsTPMQuote(t *testing.T) {
	pub, key := simKey(t)
	nonce := []byte("n7")
	b := tpmBundle(pub, nonce, swQuote(t, key, mr.SHA256, map[int][]byte{7: pcrVal(mr.SHA256, 7)}, nonce, 1, 0))
	for _, allow := range []bool{false, true} {
		refused(t, hverify(t, b, verifier.Options{Nonce: nonce, AllowSim: allow, SimKeys: [][]byte{pub}}), "AK is")
		// Pinned both ways: the sim pin wins.
		refused(t, hverify(t, b, verifier.Options{Nonce: nonce, AllowSim: allow, SimKeys: [][]byte{pub}, TrustedKeys: [][]byte{pub}}), "sim key")
	}
}

// The other direction: a --trust-ak key (a TPM AK) does not vouch for sim
// statements.
func TestAttack07_AKKeySignsSimStatement(t *testing.T) {
	ctx := context.Background()
	dev, err := sim.Open(ctx, filepath.Join(t.TempDir(), "sim"))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := dev.Attest(ctx, []byte("n"))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := dev.PublicKeyPEM(ctx)
	b := bundle.New(ev, nil, nil)
	refused(t, hverify(t, b, verifier.Options{Nonce: []byte("n"), AllowSim: true, TrustedKeys: [][]byte{pub}}), "--trust-sim-key")
	trusted(t, hverify(t, b, verifier.Options{Nonce: []byte("n"), AllowSim: true, SimKeys: [][]byte{pub}}))
}

// ---- item 8: strict collateral, TCB statuses ---------------------------------

func TestAttack08_CollateralJSON(t *testing.T) {
	q := cfile(t, "dcap-qvl/tdx_quote").Data
	coll := cfile(t, "dcap-qvl/tdx_quote_collateral.json").Data
	qr, _ := tdxverify.ParseQuote(q)
	nonce := qr.Body.ReportData[:]
	at := time.Date(2025, 7, 10, 0, 0, 0, 0, time.UTC)
	mk := func(c []byte) *bundle.Bundle {
		return &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTDX, Nonce: nonce, Evidence: bundle.Evidence{Report: q},
			Collateral: &bundle.Collateral{TDX: c}}
	}
	trusted(t, hverify(t, mk(coll), verifier.Options{At: at, Nonce: nonce}))
	var m map[string]any
	if err := json.Unmarshal(coll, &m); err != nil {
		t.Fatal(err)
	}
	m["tcb_status_override"] = "UpToDate"
	extra, _ := json.Marshal(m)
	for name, c := range map[string][]byte{
		"unknown member": extra,
		"second object":  append(append([]byte(nil), coll...), []byte(` {"pck_crl": "00"}`)...),
		"null":           []byte("null"),
	} {
		t.Run(name, func(t *testing.T) {
			refused(t, hverify(t, mk(c), verifier.Options{At: at, Nonce: nonce}), "collateral")
		})
	}
	// Allowed statuses add to UpToDate: allowing OutOfDate does not
	// refuse this UpToDate quote; an unknown status is refused.
	trusted(t, hverify(t, mk(coll), verifier.Options{At: at, Nonce: nonce, AllowedTCB: []string{"OutOfDate"}}))
	refused(t, hverify(t, mk(coll), verifier.Options{At: at, Nonce: nonce, AllowedTCB: []string{"Bogus"}}), "not a TDX TCB status")
}

// ---- item 9: nonce and claimed values -----------------------------------------

func TestAttack09_RequireNonce(t *testing.T) {
	ak := newAK(t)
	pub := pubPEM(t, &ak.PublicKey)
	b := tpmBundle(pub, []byte("n9"), swQuote(t, ak, mr.SHA256, map[int][]byte{0: pcrVal(mr.SHA256, 0)}, []byte("n9"), 1, 0))
	refused(t, hverify(t, b, verifier.Options{TrustedKeys: [][]byte{pub}, RequireNonce: true}), "--require-nonce")
	if rep := hverify(t, b, verifier.Options{TrustedKeys: [][]byte{pub}}); !rep.Trusted || !strings.Contains(rep.Verdict, "no expected nonce") {
		t.Fatalf("no nonce, not required:\n%s", text(rep))
	}
	trusted(t, hverify(t, b, verifier.Options{TrustedKeys: [][]byte{pub}, Nonce: []byte("n9"), RequireNonce: true}))
}

// A claimed value for a register the quote does not cover was silently
// ignored: it is reported now.
func TestAttack09_UncoveredClaim(t *testing.T) {
	ak := newAK(t)
	pub := pubPEM(t, &ak.PublicKey)
	b := tpmBundle(pub, []byte("n"), swQuote(t, ak, mr.SHA256, map[int][]byte{0: pcrVal(mr.SHA256, 0)}, []byte("n"), 1, 0))
	b.Registers = []bundle.Register{{Name: "pcr16", Digest: mr.Digest{Alg: mr.SHA256, Bytes: pcrVal(mr.SHA256, 0x16)}}}
	rep := hverify(t, b, verifier.Options{TrustedKeys: [][]byte{pub}, Nonce: []byte("n")})
	if !strings.Contains(strings.Join(rep.Layers[0].NotChecked, "\n"), "claimed value of pcr16 (sha256) is not covered by the evidence") {
		t.Fatalf("uncovered claim not reported:\n%s", text(rep))
	}
}

// ---- item 11: AK certificates ----------------------------------------------------

// certFor issues a certificate for pub from a fresh CA, shaped by tmpl.
func certFor(t *testing.T, pub crypto.PublicKey, tmpl *x509.Certificate) (leaf []byte, roots *x509.CertPool) {
	t.Helper()
	ck := newAK(t)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "broad CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().AddDate(1, 0, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &ck.PublicKey, ck)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = big.NewInt(2), time.Now().Add(-time.Hour), time.Now().AddDate(1, 0, 0)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, pub, ck)
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(caCert)
	return der, roots
}

var (
	oidAIKCert = asn1.ObjectIdentifier{2, 23, 133, 8, 3}
	oidEKCert  = asn1.ObjectIdentifier{2, 23, 133, 8, 1}
)

// A broad CA bundle (--ak-roots) turned any certificate of the AK's key
// into an AK certificate: a TLS server certificate, a CA, an encryption
// key.
func TestAttack11_AKCertificateProfile(t *testing.T) {
	ak := newAK(t)
	nonce := []byte("n11")
	b := tpmBundle(pubPEM(t, &ak.PublicKey), nonce, swQuote(t, ak, mr.SHA256, map[int][]byte{0: pcrVal(mr.SHA256, 0)}, nonce, 1, 0))
	cases := []struct {
		name string
		tmpl x509.Certificate
		ok   bool
	}{
		{"tls server", x509.Certificate{Subject: pkix.Name{CommonName: "www.example.com"}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, false},
		{"tls client", x509.Certificate{KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, false},
		{"any usage", x509.Certificate{KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}, false},
		{"ca", x509.Certificate{IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}, false},
		{"encryption key", x509.Certificate{KeyUsage: x509.KeyUsageKeyEncipherment, UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidAIKCert}}, false},
		{"no key usage", x509.Certificate{}, false},
		{"foreign purpose", x509.Certificate{KeyUsage: x509.KeyUsageDigitalSignature, UnknownExtKeyUsage: []asn1.ObjectIdentifier{{1, 2, 3, 4}}}, false},
		{"tcg AIK", x509.Certificate{KeyUsage: x509.KeyUsageDigitalSignature, UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidAIKCert}}, true},
		{"no EKU", x509.Certificate{KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			der, roots := certFor(t, &ak.PublicKey, &c.tmpl)
			bc := *b
			bc.Evidence.Certificates = [][]byte{der}
			rep := hverify(t, &bc, verifier.Options{Nonce: nonce, AKRoots: roots})
			if c.ok {
				trusted(t, rep)
			} else {
				refused(t, rep, "not an AK certificate")
			}
		})
	}
}

// The real GCE AK certificates keep verifying: their profile (critical
// digitalSignature, CA:FALSE, EKU tcg-kp-EKCertificate) re-issued by a test
// CA over the real AK, with the real quotes.
func TestAttack11_GCEProfileAccepted(t *testing.T) {
	gce, err := x509.ParseCertificate(cfile(t, "go-tpm-tools/attestations/gce-cos-85-nonce9009/ak_cert.der").Data)
	if err != nil {
		t.Fatal(err)
	}
	if gce.KeyUsage != x509.KeyUsageDigitalSignature || gce.IsCA || len(gce.UnknownExtKeyUsage) != 1 || !gce.UnknownExtKeyUsage[0].Equal(oidEKCert) {
		t.Fatalf("GCE AK certificate profile changed: usage %v, CA %v, EKU %v", gce.KeyUsage, gce.IsCA, gce.UnknownExtKeyUsage)
	}
	tmpl := &x509.Certificate{KeyUsage: gce.KeyUsage, BasicConstraintsValid: true, UnknownExtKeyUsage: gce.UnknownExtKeyUsage}
	der, roots := certFor(t, gce.PublicKey, tmpl)
	b, err := importer.Build(gceParts(t))
	if err != nil {
		t.Fatal(err)
	}
	b.Evidence.Certificates = [][]byte{der}
	rep := hverify(t, b, verifier.Options{Nonce: []byte{0x90, 0x09}, AKRoots: roots})
	trusted(t, rep)
	if !strings.Contains(text(rep), "AK profile") {
		t.Fatalf("profile not reported:\n%s", text(rep))
	}
}

// ---- item 20: quotes from different boots --------------------------------------

func TestAttack20_QuotesFromDifferentBoots(t *testing.T) {
	ak := newAK(t)
	pub := pubPEM(t, &ak.PublicKey)
	nonce := []byte("n20")
	q1 := func(reset, restart uint32) bundle.TPMQuote {
		return swQuote(t, ak, mr.SHA1, map[int][]byte{0: pcrVal(mr.SHA1, 1)}, nonce, reset, restart)
	}
	q256 := func(reset, restart uint32) bundle.TPMQuote {
		return swQuote(t, ak, mr.SHA256, map[int][]byte{0: pcrVal(mr.SHA256, 2)}, nonce, reset, restart)
	}
	o := verifier.Options{TrustedKeys: [][]byte{pub}, Nonce: nonce}
	t.Run("reboot between the quotes", func(t *testing.T) {
		refused(t, hverify(t, tpmBundle(pub, nonce, q1(3, 0), q256(4, 0)), o), "different boots")
	})
	t.Run("resume between the quotes", func(t *testing.T) {
		refused(t, hverify(t, tpmBundle(pub, nonce, q1(3, 0), q256(3, 1)), o), "different boots")
	})
	t.Run("two quotes of one bank", func(t *testing.T) {
		refused(t, hverify(t, tpmBundle(pub, nonce, q256(3, 0), q256(3, 0)), o), "one quote per bank")
	})
	t.Run("honest", func(t *testing.T) {
		trusted(t, hverify(t, tpmBundle(pub, nonce, q1(3, 0), q256(3, 0)), o))
	})
}

// Runtime data with two HCLAkPub keys: which one is the AK must not depend
// on the parser, so it is refused.
func TestAttack04_DuplicateHCLAkPub(t *testing.T) {
	const jwk = `{"kid":"HCLAkPub","kty":"RSA","e":"AQAB","n":"%s"}`
	n1 := "3Jz8cb-Br6mW9pSlmPwOf1QTu0GdDbZHGQMo2J8uqLnvIYgmw7e2hnGCWJKcU52-2Ot4zJQo1iUdn3xgu9-3lQ"
	n2 := "wd3nDN1c7Q_zqlLL5kmD-cpk-G9KcDA0YYfJZ6S5tzBz8pUsZ82rSx5Wwpa4dFBlHBavGhMVU7nQl8q3EPgtNQ"
	one := []byte(`{"keys":[` + strings.Replace(jwk, "%s", n1, 1) + `]}`)
	two := []byte(`{"keys":[` + strings.Replace(jwk, "%s", n1, 1) + `,` + strings.Replace(jwk, "%s", n2, 1) + `]}`)
	rd, err := azure.ParseRuntimeData(one)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Key("HCLAkPub"); err != nil {
		t.Fatalf("one HCLAkPub: %v", err)
	}
	rd, err = azure.ParseRuntimeData(two)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := rd.Key("HCLAkPub"); err == nil {
		t.Fatalf("two HCLAkPub keys: took %v", k)
	}
}

// A platform section the evidence gives nothing to judge fails: an snp
// section against a TDX quote, a tdx section against a TPM quote.
func TestAttack06_UnjudgedPlatformSection(t *testing.T) {
	q := cfile(t, "dcap-qvl/tdx_quote").Data
	qr, err := tdxverify.ParseQuote(q)
	if err != nil {
		t.Fatal(err)
	}
	nonce := qr.Body.ReportData[:]
	b := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTDX, Nonce: nonce, Evidence: bundle.Evidence{Report: q},
		Collateral: &bundle.Collateral{TDX: cfile(t, "dcap-qvl/tdx_quote_collateral.json").Data}}
	at := time.Date(2025, 7, 10, 0, 0, 0, 0, time.UTC)
	snpPol := &verifier.Policy{SNP: &verifier.SNPPolicy{Measurement: []string{strings.Repeat("00", 48)}}}
	refused(t, hverify(t, b, verifier.Options{At: at, Nonce: nonce, Policy: snpPol}), "snp section")

	ak := newAK(t)
	pub := pubPEM(t, &ak.PublicKey)
	tb := tpmBundle(pub, []byte("n"), swQuote(t, ak, mr.SHA256, map[int][]byte{0: pcrVal(mr.SHA256, 0)}, []byte("n"), 1, 0))
	tdxPol := &verifier.Policy{TDX: &verifier.TDXPolicy{MRTD: []string{strings.Repeat("00", 48)}}}
	refused(t, hverify(t, tb, verifier.Options{TrustedKeys: [][]byte{pub}, Nonce: []byte("n"), Policy: tdxPol}), "tdx section")
}
