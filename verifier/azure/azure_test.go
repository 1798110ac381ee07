package azure

import (
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
)

func corpusFile(t testing.TB, rel string) []byte {
	t.Helper()
	return corpus.Read(t, rel)
}

// The real Azure SNP CVM: the HCL report's SNP report verifies with its
// VCEK, its report_data is sha256 of the runtime data (computed here with
// crypto/sha256 over the bytes the header delimits), and HCLAkPub is the
// key the corpus extracted as hcl-akpub.pem (which tpm2_checkquote used).
func TestAzureSNPChain(t *testing.T) {
	hcl := corpusFile(t, "trustee/az-snp-vtpm/hcl-report.bin")
	vcek := corpusFile(t, "trustee/az-snp-vtpm/vcek.pem")
	ak, err := tpmverify.ParseAKPublic(corpusFile(t, "trustee/az-snp-vtpm/hcl-akpub.pem"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Parse(hcl)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Platform() != mr.PlatformSNP || rep.HashType != HashSHA256 || len(rep.RuntimeData) != 1110 {
		t.Fatalf("parsed %+v", rep)
	}
	h := sha256.Sum256(rep.RuntimeData)
	if string(hcl[32+0x50:32+0x70]) != string(h[:]) {
		t.Fatal("independent hash differs from report_data")
	}
	res, err := Verify(hcl, ak, Options{Certificates: [][]byte{vcek}})
	if err != nil {
		t.Fatalf("chain: %v\n%s", err, strings.Join(res.Checked, "\n"))
	}
	if res.SNP == nil || len(res.Registers) == 0 {
		t.Fatal("no SNP result")
	}
	t.Log(strings.Join(res.Checked, "\n"))

	// One byte of the runtime data changed: the hash link breaks.
	bad := append([]byte(nil), hcl...)
	bad[RequestDataStart+requestHdrSize+100] ^= 1
	if _, err := Verify(bad, ak, Options{Certificates: [][]byte{vcek}}); !errors.Is(err, ErrRuntimeDataHash) {
		t.Fatalf("changed runtime data: %v", err)
	}
	// One byte of the SNP report changed: the hardware report breaks.
	bad = append([]byte(nil), hcl...)
	bad[32+0x90] ^= 1
	var ce *ChainError
	if _, err := Verify(bad, ak, Options{Certificates: [][]byte{vcek}}); !errors.As(err, &ce) || ce.Link != "hardware report" {
		t.Fatalf("changed SNP report: %v", err)
	}
	// Another AK: named.
	other, _ := tpmverify.ParseAKPublic(corpusFile(t, "keylime/akpub.pem"))
	if _, err := Verify(hcl, other, Options{Certificates: [][]byte{vcek}}); !errors.Is(err, ErrAKMismatch) {
		t.Fatalf("other AK: %v", err)
	}
	// No VCEK.
	if _, err := Verify(hcl, ak, Options{}); err == nil {
		t.Fatal("verified without a VCEK")
	}
}

// The real Azure TDX CVM: the TD quote verifies (no collateral in the
// corpus: TCB not judged), its body equals the HCL report's TD report.
func TestAzureTDXChain(t *testing.T) {
	hcl := corpusFile(t, "trustee/az-tdx-vtpm/hcl-report.bin")
	q := corpusFile(t, "trustee/az-tdx-vtpm/td-quote.bin")
	ak, err := tpmverify.ParseAKPublic(corpusFile(t, "trustee/az-tdx-vtpm/hcl-akpub.pem"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Verify(hcl, ak, Options{TDQuote: q})
	if err != nil {
		var ss []string
		if res != nil {
			ss = res.Checked
		}
		t.Fatalf("chain: %v\n%s", err, strings.Join(ss, "\n"))
	}
	t.Log(strings.Join(res.Checked, "\n"), "\nNOT: ", strings.Join(res.NotChecked, "\n"))
	bad := append([]byte(nil), hcl...)
	bad[32+528] ^= 1 // MRTD of the TD report
	if _, err := Verify(bad, ak, Options{TDQuote: q}); !errors.Is(err, ErrTDReportMismatch) || !strings.Contains(err.Error(), "MRTD") {
		t.Fatalf("changed TD report MRTD: %v", err)
	}
	if _, err := Verify(hcl, ak, Options{}); !errors.Is(err, ErrNoTDQuote) {
		t.Fatalf("no TD quote: %v", err)
	}
}

// BenchmarkVerifySNPChain: the whole Azure SNP chain (SNP report and VCEK
// chain through go-sev-guest, hash, JWK, AK comparison).
func BenchmarkVerifySNPChain(b *testing.B) {
	hcl := corpusFile(b, "trustee/az-snp-vtpm/hcl-report.bin")
	vcek := corpusFile(b, "trustee/az-snp-vtpm/vcek.pem")
	ak, err := tpmverify.ParseAKPublic(corpusFile(b, "trustee/az-snp-vtpm/hcl-akpub.pem"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Verify(hcl, ak, Options{Certificates: [][]byte{vcek}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParse: the HCL report layout alone.
func BenchmarkParse(b *testing.B) {
	hcl := corpusFile(b, "trustee/az-snp-vtpm/hcl-report.bin")
	for i := 0; i < b.N; i++ {
		if _, err := Parse(hcl); err != nil {
			b.Fatal(err)
		}
	}
}
