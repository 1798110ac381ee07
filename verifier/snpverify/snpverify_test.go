package snpverify

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"math/big"
	"testing"
	"time"

	sevabi "github.com/google/go-sev-guest/abi"

	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
)

func readCorpus(t testing.TB, rel string) []byte {
	t.Helper()
	return corpus.Read(t, rel)
}

var (
	milanAt = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
)

// independentSig checks the report signature with crypto/ecdsa directly:
// r and s are little-endian 72-byte fields at 0x2A0, the signed part is
// the first 0x2A0 bytes, SHA-384.
func independentSig(t *testing.T, report, certDER []byte) bool {
	t.Helper()
	c, err := x509.ParseCertificate(certDER)
	if err != nil {
		t.Fatal(err)
	}
	le := func(b []byte) *big.Int {
		be := make([]byte, len(b))
		for i := range b {
			be[len(b)-1-i] = b[i]
		}
		return new(big.Int).SetBytes(be)
	}
	h := sha512.Sum384(report[:0x2A0])
	return ecdsa.Verify(c.PublicKey.(*ecdsa.PublicKey), h[:], le(report[0x2A0:0x2A0+72]), le(report[0x2A0+72:0x2A0+144]))
}

func TestMilanVCEKTrusted(t *testing.T) {
	rep := readCorpus(t, "go-sev-guest/attestation.bin")
	vcek := readCorpus(t, "go-sev-guest/vcek.testcer")
	if !independentSig(t, rep, vcek) {
		t.Fatal("independent signature check fails: corpus changed?")
	}
	r, err := Verify(rep, [][]byte{vcek}, Options{At: milanAt})
	if err != nil {
		t.Fatalf("not trusted: %v", err)
	}
	// Published in the corpus EXPECTED.json (go-sev-guest folder).
	if got := hex.EncodeToString(r.Measurement[:]); got != "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01" {
		t.Errorf("measurement %s", got)
	}
	if !bytes.Equal(r.ReportData[:5], []byte{1, 2, 3, 4, 5}) || !bytes.Equal(r.ReportData[5:], make([]byte, 59)) {
		t.Errorf("report_data %x", r.ReportData)
	}
	// EXPECTED.json: "0200000000000544 (bl 2, tee 0, snp 5, ucode 0x44)",
	// the field's bytes in report order (little endian).
	le := make([]byte, 8)
	for i := range le {
		le[i] = byte(r.ReportedTCB >> (8 * i))
	}
	p := r.ReportedTCBParts
	if hex.EncodeToString(le) != "0200000000000544" || p.BlSpl != 2 || p.TeeSpl != 0 || p.SnpSpl != 5 || p.UcodeSpl != 0x44 {
		t.Errorf("reported TCB %016x %+v", r.ReportedTCB, r.ReportedTCBParts)
	}
	if r.Signer != "VCEK" || r.ProductLine != "Milan" || r.Version != 2 {
		t.Errorf("signer %s line %s version %d", r.Signer, r.ProductLine, r.Version)
	}
	if len(r.Registers) != 3 || r.Registers[0].Register.Name != "measurement" || r.Registers[0].Digest.Alg != mr.SHA384 {
		t.Errorf("registers %+v", r.Registers)
	}
	// The ASK/ARK bundle given alongside changes nothing.
	if _, err := Verify(rep, [][]byte{vcek, readCorpus(t, "go-sev-guest/milan.testcer")}, Options{At: milanAt}); err != nil {
		t.Errorf("with ASK+ARK: %v", err)
	}
}

func TestTrusteeReports(t *testing.T) {
	for _, tc := range []struct{ report, cert, signer string }{
		{"trustee/snp/test-report.bin", "trustee/snp/test-vcek.der", "VCEK"},
		{"trustee/snp/test-vlek-report.bin", "trustee/snp/test-vlek.der", "VLEK"},
	} {
		rep := readCorpus(t, tc.report)
		cert := readCorpus(t, tc.cert)
		if !independentSig(t, rep, cert) {
			t.Fatalf("%s: independent signature check fails", tc.report)
		}
		r, err := Verify(rep, [][]byte{cert}, Options{At: milanAt})
		if err != nil {
			t.Fatalf("%s: not trusted: %v", tc.report, err)
		}
		if r.Signer != tc.signer || r.ProductLine != "Milan" {
			t.Errorf("%s: signer %s line %s", tc.report, r.Signer, r.ProductLine)
		}
		if tc.signer == "VLEK" && r.Version != 3 {
			t.Errorf("VLEK report version %d, corpus says 3", r.Version)
		}
		// VLEK certificate expired 2025-12-10; VCEK is valid to 2030.
		if tc.signer == "VLEK" {
			_, err := Verify(rep, [][]byte{cert}, Options{At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
			var ce *CheckError
			if !errors.As(err, &ce) || ce.Check != CheckSignature {
				t.Errorf("VLEK after expiry: %v", err)
			}
		}
	}
}

func TestChangedReportData(t *testing.T) {
	rep := bytes.Clone(readCorpus(t, "go-sev-guest/attestation.bin"))
	vcek := readCorpus(t, "go-sev-guest/vcek.testcer")
	rep[0x50] ^= 0x01 // REPORT_DATA[0]
	r, err := Verify(rep, [][]byte{vcek}, Options{At: milanAt})
	var ce *CheckError
	if !errors.As(err, &ce) || ce.Check != CheckSignature {
		t.Fatalf("changed report_data: %v", err)
	}
	if r.ReportData[0] != 0 {
		t.Errorf("offset wrong: report_data[0] = %x", r.ReportData[0])
	}
}

func TestWrongCertificate(t *testing.T) {
	rep := readCorpus(t, "go-sev-guest/attestation.bin")
	other := readCorpus(t, "trustee/snp/test-vcek.der")
	_, err := Verify(rep, [][]byte{other}, Options{At: milanAt})
	var ce *CheckError
	if !errors.As(err, &ce) {
		t.Fatalf("another chip's VCEK: %v", err)
	}
	_, err = Verify(rep, nil, Options{At: milanAt})
	if !errors.Is(err, ErrNoEndorsementKey) {
		t.Errorf("no certificate: %v", err)
	}
	// The VLEK report with a VCEK: no certificate for its key.
	_, err = Verify(readCorpus(t, "trustee/snp/test-vlek-report.bin"), [][]byte{readCorpus(t, "trustee/snp/test-vcek.der")}, Options{At: milanAt})
	if !errors.Is(err, ErrNoEndorsementKey) {
		t.Errorf("VLEK report with a VCEK: %v", err)
	}
}

func TestEveryByteMatters(t *testing.T) {
	orig := readCorpus(t, "go-sev-guest/attestation.bin")
	vcek := readCorpus(t, "go-sev-guest/vcek.testcer")
	rep := bytes.Clone(orig)
	step := 1
	if testing.Short() {
		step = 7
	}
	// Only the signed part and the signature: the rest of the signature
	// field (bytes 0x2A0+144 .. 0x49F) is reserved and unsigned.
	for i := 0; i < 0x2A0+144; i += step {
		rep[i] ^= 0x01
		if _, err := Verify(rep, [][]byte{vcek}, Options{At: milanAt}); err == nil {
			t.Errorf("byte %#x changed, still trusted", i)
		}
		rep[i] ^= 0x01
	}
}

func TestMalformed(t *testing.T) {
	rep := readCorpus(t, "go-sev-guest/attestation.bin")
	vcek := readCorpus(t, "go-sev-guest/vcek.testcer")
	if _, err := Verify(rep[:100], [][]byte{vcek}, Options{}); !errors.Is(err, mr.ErrMalformed) {
		t.Errorf("short report: %v", err)
	}
	if _, err := Verify(rep, [][]byte{[]byte("not a cert")}, Options{}); !errors.Is(err, mr.ErrMalformed) {
		t.Errorf("bad certificate: %v", err)
	}
	padded := append(bytes.Clone(rep), make([]byte, 32)...)
	if _, err := Verify(padded, [][]byte{vcek}, Options{At: milanAt}); err != nil {
		t.Errorf("zero-padded report: %v", err)
	}
	padded[len(padded)-1] = 1
	if _, err := Verify(padded, [][]byte{vcek}, Options{At: milanAt}); err == nil {
		t.Error("non-zero trailing byte accepted")
	}
	if len(rep) != sevabi.ReportSize {
		t.Errorf("corpus report is %d bytes", len(rep))
	}
}

func BenchmarkVerify(b *testing.B) {
	rep := readCorpus(b, "go-sev-guest/attestation.bin")
	vcek := readCorpus(b, "go-sev-guest/vcek.testcer")
	for b.Loop() {
		if _, err := Verify(rep, [][]byte{vcek}, Options{At: milanAt}); err != nil {
			b.Fatal(err)
		}
	}
}
