package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/internal/snpserdetest"
)

// Red team 7 against Trustee snp evidence (ccmr evidence import --trustee):
// a cert_chain that smuggles a key. The VCEK or VLEK of cert_chain is
// imported as that part; the ARK and ASK are checked to be certificates
// and not carried. None of these may make verify trust a report AMD's
// roots do not vouch for.

// editTrustee rewrites the Trustee snp evidence file with fn (given the
// decoded evidence) into a temporary file.
func editTrustee(t *testing.T, file string, fn func(top map[string]any)) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]any
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	fn(top)
	out, err := json.Marshal(top)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, t.TempDir(), filepath.Base(file), out)
}

func byteNums(b []byte) []any {
	out := make([]any, len(b))
	for i, x := range b {
		out[i] = int(x)
	}
	return out
}

// attackerChain is an ARK, an ASK and a VCEK of the attacker's, made as
// AMD makes them (RSA ARK and ASK signing with SHA-384 RSASSA-PSS, the
// ARK self-signed; a P-384 VCEK), and the VCEK's key.
func attackerChain(t *testing.T) (ark, ask, vcek []byte, key *ecdsa.PrivateKey) {
	t.Helper()
	mk := func(cn string, pub any, parent *x509.Certificate, parentKey any, ca bool) ([]byte, *x509.Certificate) {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC),
			IsCA: ca, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
			SignatureAlgorithm: x509.SHA384WithRSAPSS}
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return der, c
	}
	arkK, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	askK, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	ark, arkC := mk("ARK-Milan", &arkK.PublicKey, nil, arkK, true)
	ask, askC := mk("SEV-Milan", &askK.PublicKey, arkC, arkK, true)
	vcek, _ = mk("SEV-VCEK", &key.PublicKey, askC, askK, false)
	return ark, ask, vcek, key
}

// le72 is n as the report's 72-byte little-endian signature component.
func le72(n *big.Int) []any {
	be := n.FillBytes(make([]byte, 72))
	for i, j := 0, len(be)-1; i < j; i, j = i+1, j-1 {
		be[i], be[j] = be[j], be[i]
	}
	return byteNums(be)
}

func TestRedteam7TrusteeSNPKeys(t *testing.T) {
	// The sev crate's serde forms of the corpus's reports, written from
	// the corpus at test time (internal/snpserdetest).
	td := t.TempDir()
	snpserdetest.Named(t, "trustee-v2-vcek").Write(t, td)
	snpserdetest.Named(t, "trustee-v3-vlek").Write(t, td)
	snpAt := []string{"--at", "2025-06-01T00:00:00Z"}
	vcekFile := filepath.Join(td, "trustee-v2-vcek.sev6.1.json")
	vlekFile := filepath.Join(td, "trustee-v3-vlek.sev6.1.json")
	plain, code := importVerify(t, []string{"--trustee", vcekFile}, snpAt)
	if code != 0 {
		t.Fatalf("the genuine evidence: exit %d\n%s", code, plain)
	}
	notTrusted := func(name, file, why string) {
		t.Helper()
		b := filepath.Join(t.TempDir(), "b.json")
		out, errs, code := ccmrRun(t, nil, "evidence", "import", "-O", b, "--trustee", file)
		if code != 0 {
			t.Logf("%s: import refused (exit %d): %s", name, code, errs)
			if code != 2 {
				t.Errorf("%s: import exit %d, want 2", name, code)
			}
			return
		}
		out, _, code = ccmrRun(t, nil, append([]string{"verify", b}, snpAt...)...)
		if code != 1 || !strings.Contains(out, "FAIL") || !strings.Contains(out, why) {
			t.Errorf("%s: verify exit %d, want 1 with a FAIL saying %q:\n%s", name, code, why, out)
		}
		t.Logf("%s:\n%s", name, out)
	}
	// 1. The genuine keys under the other label (a VCEK called VLEK, a
	//    VLEK called VCEK): the label carries no trust; verify tells the
	//    key by its certificate and chain (VCEK → ASK, VLEK → ASVK), so
	//    the verdict is the genuine evidence's, line for line.
	plainVLEK, code := importVerify(t, []string{"--trustee", vlekFile}, snpAt)
	if code != 0 {
		t.Fatalf("the genuine VLEK evidence: exit %d\n%s", code, plainVLEK)
	}
	for _, tc := range []struct{ name, file, as, want string }{
		{"VCEK labelled VLEK", vcekFile, "VLEK", plain},
		{"VLEK labelled VCEK", vlekFile, "VCEK", plainVLEK},
	} {
		relabelled := editTrustee(t, tc.file, func(top map[string]any) {
			top["cert_chain"].([]any)[0].(map[string]any)["cert_type"] = tc.as
		})
		if out, code := importVerify(t, []string{"--trustee", relabelled}, snpAt); code != 0 || out != tc.want {
			t.Errorf("%s: exit %d, a verdict other than the genuine one's:\n%s\nwant:\n%s", tc.name, code, out, tc.want)
		}
	}
	ark, ask, vcek, key := attackerChain(t)
	// 2. The attacker's ARK and ASK beside the genuine VCEK: ignored, the
	//    verdict is the genuine evidence's, line for line.
	smuggled := editTrustee(t, vcekFile, func(top map[string]any) {
		top["cert_chain"] = append(top["cert_chain"].([]any),
			map[string]any{"cert_type": "ASK", "data": byteNums(ask)},
			map[string]any{"cert_type": "ARK", "data": byteNums(ark)})
	})
	if out, code := importVerify(t, []string{"--trustee", smuggled}, snpAt); code != 0 || out != plain {
		t.Errorf("the attacker's ARK and ASK beside the genuine VCEK changed the verdict (exit %d):\n%s\nwant:\n%s", code, out, plain)
	}
	// 3. The attacker's VCEK, ASK and ARK, and the report re-signed with
	//    the attacker's VCEK key (sev 1.x form: every byte of the report,
	//    the signature r and s little-endian over bytes 0x000-0x29F).
	sev1 := filepath.Join(td, "trustee-v2-vcek.sev1.json")
	raw, err := os.ReadFile(filepath.Join(corpusPath(t), "trustee/snp/test-report.bin"))
	if err != nil {
		t.Fatal(err)
	}
	h := sha512.Sum384(raw[:0x2a0])
	r, s, err := ecdsa.Sign(rand.Reader, key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	forged := editTrustee(t, sev1, func(top map[string]any) {
		sig := top["attestation_report"].(map[string]any)["signature"].(map[string]any)
		sig["r"], sig["s"] = le72(r), le72(s)
		top["cert_chain"] = []any{
			map[string]any{"cert_type": "ARK", "data": byteNums(ark)},
			map[string]any{"cert_type": "ASK", "data": byteNums(ask)},
			map[string]any{"cert_type": "VCEK", "data": byteNums(vcek)},
		}
	})
	// The given ARK is not a root: the chain must end at AMD's.
	notTrusted("the attacker's chain and signature", forged, "chains to none of Milan, Genoa, Turin")
}
