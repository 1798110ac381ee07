package tpm_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/backend/tpm"
	"github.com/ccmr-dev/ccmr/internal/swtpmtest"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
)

// checkquote runs tpm2_checkquote on one bank's files (it needs no TPM).
func checkquote(t *testing.T, ak string, f tpmverify.QuoteFiles, nonce []byte) error {
	t.Helper()
	swtpmtest.Need(t, "tpm2_checkquote")
	cmd := exec.Command("tpm2_checkquote", "-u", ak, "-m", f.Attest, "-s", f.Sig, "-f", f.PCRs,
		"-g", "sha256", "-q", hex.EncodeToString(nonce))
	cmd.Env = append(os.Environ(), "TSS2_LOG=all+NONE")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return errors.New(err.Error() + ": " + strings.TrimSpace(string(out)))
	}
	return nil
}

func TestQuoteCheckquote(t *testing.T) {
	for _, alg := range []tpm.AKAlg{tpm.AKECC, tpm.AKRSA} {
		t.Run(string(alg), func(t *testing.T) { testQuote(t, alg) })
	}
}

func testQuote(t *testing.T, alg tpm.AKAlg) {
	ctx := context.Background()
	logPath := filepath.Join(t.TempDir(), "binary_bios_measurements")
	logBytes := []byte("not really a TCG log, only bytes to carry")
	if err := os.WriteFile(logPath, logBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	sw, d := startTPM(t, tpm.WithAKAlg(alg), tpm.WithEventLog(logPath))
	if err := d.ExtendData(ctx, "pcr0", []byte("firmware")); err != nil {
		t.Fatal(err)
	}
	if err := d.ExtendData(ctx, "pcr14", []byte("kernel")); err != nil {
		t.Fatal(err)
	}
	nonce, _ := hex.DecodeString("00112233445566778899aabbccddeeff0123456789abcdef0123456789abcdef")
	ev, err := d.Attest(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	banks, _ := d.Banks(ctx)
	if len(ev.TPMQuotes) != len(banks) {
		t.Fatalf("%d quotes for %d banks", len(ev.TPMQuotes), len(banks))
	}
	if ev.Platform != mr.PlatformTPM || !bytes.Equal(ev.Nonce, nonce) || ev.Time.IsZero() {
		t.Errorf("evidence header: %v %x %v", ev.Platform, ev.Nonce, ev.Time)
	}
	if !bytes.Equal(ev.FirmwareLog, logBytes) || ev.FirmwareLogFormat != "tcg2" {
		t.Errorf("firmware log not carried: %q %q", ev.FirmwareLog, ev.FirmwareLogFormat)
	}
	if len(ev.Certificates) != 0 {
		t.Errorf("a fresh swtpm has no EK certificate, got %d", len(ev.Certificates))
	}
	if len(ev.Registers) != tpm.NumPCRs*len(banks) {
		t.Errorf("%d register values", len(ev.Registers))
	}
	// The claimed values are the quoted ones.
	for _, v := range ev.Registers {
		for _, q := range ev.TPMQuotes {
			if q.Alg == v.Digest.Alg && !bytes.Equal(q.PCRs[v.Register.Index], v.Digest.Bytes) {
				t.Errorf("%s %v: register %x, quote %x", v.Register.Name, q.Alg, v.Digest.Bytes, q.PCRs[v.Register.Index])
			}
		}
	}
	for _, q := range ev.TPMQuotes {
		if err := tpmverify.VerifyQuotePEM(ev.PublicKey, q, nonce); err != nil {
			t.Errorf("VerifyQuote %v: %v", q.Alg, err)
		}
		if err := tpmverify.VerifyQuotePEM(ev.PublicKey, q, nonce[1:]); !errors.Is(err, tpmverify.ErrNonceMismatch) {
			t.Errorf("VerifyQuote %v with another nonce: %v", q.Alg, err)
		}
	}
	// The AK is a primary key: the same on every call.
	ak2, err := d.AKPublic(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ak2, ev.PublicKey) {
		t.Error("AK differs between calls")
	}

	// tpm2-tools' independent check.
	dir := t.TempDir()
	akFile, files, err := tpmverify.WriteQuoteFiles(dir, ev)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := checkquote(t, akFile, f, nonce); err != nil {
			t.Errorf("tpm2_checkquote %v rejects our quote: %v", f.Alg, err)
		}
		other := append([]byte(nil), nonce...)
		other[0] ^= 1
		if err := checkquote(t, akFile, f, other); err == nil {
			t.Errorf("tpm2_checkquote %v accepts another nonce", f.Alg)
		}
	}

	// Extend after the quote: the new values no longer match it.
	if err := d.ExtendData(ctx, "pcr14", []byte("after the quote")); err != nil {
		t.Fatal(err)
	}
	now, err := d.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	late := *ev
	late.TPMQuotes = nil
	for _, q := range ev.TPMQuotes {
		q2 := q
		q2.PCRs = map[int][]byte{}
		for _, v := range now {
			if v.Digest.Alg == q.Alg {
				q2.PCRs[v.Register.Index] = v.Digest.Bytes
			}
		}
		late.TPMQuotes = append(late.TPMQuotes, q2)
		if err := tpmverify.VerifyQuotePEM(ev.PublicKey, q2, nonce); !errors.Is(err, tpmverify.ErrPCRMismatch) {
			t.Errorf("VerifyQuote %v with values after an extend: %v", q.Alg, err)
		}
	}
	dir2 := t.TempDir()
	akFile, files, err = tpmverify.WriteQuoteFiles(dir2, &late)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := checkquote(t, akFile, f, nonce); err == nil {
			t.Errorf("tpm2_checkquote %v accepts PCR values extended after the quote", f.Alg)
		}
	}

	// Our PCR file is byte for byte what tpm2_pcrread -F serialized writes.
	d.Close()
	for _, q := range late.TPMQuotes {
		p := filepath.Join(t.TempDir(), "pcrs")
		if _, err := tool(t, sw, "tpm2_pcrread", "-F", "serialized", "-o", p, q.Alg.String()+":all"); err != nil {
			t.Fatal(err)
		}
		theirs, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		ours, err := tpmverify.MarshalPCRFile(q)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ours, theirs) {
			t.Errorf("%v: our PCR file (%d bytes) differs from tpm2_pcrread's (%d bytes)", q.Alg, len(ours), len(theirs))
		}
		back, err := tpmverify.ParsePCRFile(theirs)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range q.PCRs {
			if !bytes.Equal(back[q.Alg][i], v) {
				t.Errorf("ParsePCRFile %v pcr%d: %x, want %x", q.Alg, i, back[q.Alg][i], v)
			}
		}
	}
}

// TestPersistentAKAndToolQuote: an AK made and persisted by tpm2-tools
// (RSA-PSS, to cover that scheme) is used by our quotes, and a quote made by
// tpm2_quote passes our VerifyQuote; one over two banks is refused.
func TestPersistentAKAndToolQuote(t *testing.T) {
	ctx := context.Background()
	sw, d := startTPM(t)
	if err := d.ExtendData(ctx, "pcr4", []byte("boot")); err != nil {
		t.Fatal(err)
	}
	d.Close()
	dir := t.TempDir()
	run := func(name string, args ...string) string {
		t.Helper()
		swtpmtest.Need(t, name)
		cmd := exec.Command(name, args...)
		cmd.Env = sw.Env()
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v: %s", name, args, err, out)
		}
		return string(out)
	}
	run("tpm2_createprimary", "-Q", "-C", "o", "-G", "rsa2048:rsapss-sha256:null", "-c", "ak.ctx",
		"-a", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign|noda")
	run("tpm2_evictcontrol", "-Q", "-C", "o", "-c", "ak.ctx", "0x81010042")
	run("tpm2_flushcontext", "-t")
	run("tpm2_readpublic", "-Q", "-c", "0x81010042", "-f", "pem", "-o", "ak.pem")
	run("tpm2_readpublic", "-Q", "-c", "0x81010042", "-o", "ak.tss")
	nonce := []byte("tool nonce")
	run("tpm2_quote", "-Q", "-c", "0x81010042", "-l", "sha256:0,4,7", "-q", hex.EncodeToString(nonce),
		"-m", "q.attest", "-s", "q.sig", "-o", "q.pcrs", "-g", "sha256", "--scheme", "rsapss")
	run("tpm2_quote", "-Q", "-c", "0x81010042", "-l", "sha1:4+sha256:4", "-q", hex.EncodeToString(nonce),
		"-m", "q2.attest", "-s", "q2.sig", "-o", "q2.pcrs", "-g", "sha256", "--scheme", "rsapss")
	rd := func(n string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	akPEM := rd("ak.pem")
	q, err := tpmverify.NewQuote(rd("q.attest"), rd("q.sig"), rd("q.pcrs"))
	if err != nil {
		t.Fatal(err)
	}
	if q.Alg != mr.SHA256 || len(q.PCRs) != 3 {
		t.Fatalf("NewQuote: %v with %d PCRs", q.Alg, len(q.PCRs))
	}
	if err := tpmverify.VerifyQuotePEM(akPEM, q, nonce); err != nil {
		t.Errorf("tpm2_quote's quote fails our check: %v", err)
	}
	q.PCRs[4] = bytes.Repeat([]byte{1}, 32)
	if err := tpmverify.VerifyQuotePEM(akPEM, q, nonce); !errors.Is(err, tpmverify.ErrPCRMismatch) {
		t.Errorf("changed PCR: %v", err)
	}
	sig := rd("q.sig")
	sig[len(sig)-1] ^= 1
	q, _ = tpmverify.NewQuote(rd("q.attest"), sig, rd("q.pcrs"))
	if err := tpmverify.VerifyQuotePEM(akPEM, q, nonce); !errors.Is(err, tpmverify.ErrBadSignature) {
		t.Errorf("flipped signature bit: %v", err)
	}
	if _, err := tpmverify.NewQuote(rd("q2.attest"), rd("q2.sig"), rd("q2.pcrs")); !errors.Is(err, mr.ErrUnsupported) {
		t.Errorf("two-bank quote: %v", err)
	}
	if v, err := tpmverify.ParsePCRFile(rd("q2.pcrs")); err != nil || len(v[mr.SHA1]) != 1 || len(v[mr.SHA256]) != 1 {
		t.Errorf("two-bank PCR file: %v %v", v, err)
	}

	// Our quote with the persistent AK passes tpm2_checkquote.
	d = open(t, sw, tpm.WithAKHandle(0x81010042))
	ev, err := d.Attest(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if !bytes.Equal(ev.PublicKey, akPEM) {
		t.Errorf("evidence AK:\n%s\ntpm2_readpublic:\n%s", ev.PublicKey, akPEM)
	}
	_, files, err := tpmverify.WriteQuoteFiles(t.TempDir(), ev)
	if err != nil {
		t.Fatal(err)
	}
	// tpm2_checkquote 5.4 does not verify RSA-PSS signatures (it fails on
	// tpm2_quote's own), so openssl is the second opinion on the signature.
	openssl := swtpmtest.Need(t, "openssl")
	for _, f := range files {
		sigFile := filepath.Join(dir, "raw.sig")
		s, _ := os.ReadFile(f.Sig)
		if len(s) < 6 || s[0] != 0 || s[1] != 0x16 {
			t.Fatalf("%v: not an RSAPSS TPMT_SIGNATURE: %x", f.Alg, s[:min(6, len(s))])
		}
		os.WriteFile(sigFile, s[6:], 0o644)
		out, err := exec.Command(openssl, "dgst", "-sha256", "-verify", filepath.Join(dir, "ak.pem"),
			"-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:auto", "-signature", sigFile, f.Attest).CombinedOutput()
		if err != nil {
			t.Errorf("openssl rejects our %v quote's RSA-PSS signature: %v: %s", f.Alg, err, out)
		}
	}
	if _, err := tpm.Open(ctx, sw.Spec, tpm.WithAKHandle(0x80000001)); !errors.Is(err, mr.ErrMalformed) {
		t.Errorf("transient AK handle accepted: %v", err)
	}
}

// TestEKCertificate: a TPM provisioned by swtpm_setup carries EK
// certificates in NV; Attest returns them as tpm2_nvread reads them, and
// only sha256 is allocated, so there is one quote.
func TestEKCertificate(t *testing.T) {
	setup := swtpmtest.Need(t, "swtpm_setup")
	dir := t.TempDir()
	out, err := exec.Command(setup, "--tpm2", "--tpmstate", dir, "--create-ek-cert", "--overwrite").CombinedOutput()
	if err != nil {
		if os.Getenv("CCMR_REQUIRE_TOOLS") == "1" {
			t.Fatalf("swtpm_setup cannot provision here (CCMR_REQUIRE_TOOLS=1): %v: %s", err, lastLine(out))
		}
		t.Skipf("swtpm_setup cannot provision here: %v: %s", err, lastLine(out))
	}
	sw := swtpmtest.Start(t, swtpmtest.StateDir(dir))
	d := open(t, sw, tpm.WithEventLog(""))
	ctx := context.Background()
	if err := d.Startup(ctx); err != nil {
		t.Fatal(err)
	}
	ev, err := d.Attest(ctx, []byte("n"))
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if len(ev.TPMQuotes) != 1 || ev.TPMQuotes[0].Alg != mr.SHA256 {
		t.Errorf("quotes: %d", len(ev.TPMQuotes))
	}
	if ev.FirmwareLog != nil {
		t.Error("event log read although disabled")
	}
	if len(ev.Certificates) == 0 {
		t.Fatal("no EK certificate")
	}
	p := filepath.Join(t.TempDir(), "ek.der")
	if _, err := tool(t, sw, "tpm2_nvread", "-C", "o", "-o", p, "0x01c00002"); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(p)
	var rv asn1.RawValue
	rest, err := asn1.Unmarshal(raw, &rv)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ev.Certificates[0], raw[:len(raw)-len(rest)]) {
		t.Error("EK certificate differs from tpm2_nvread's")
	}
	for _, c := range ev.Certificates {
		if _, err := x509.ParseCertificate(c); err != nil {
			t.Errorf("EK certificate does not parse: %v", err)
		}
	}
}

func lastLine(b []byte) string {
	s := strings.Split(strings.TrimSpace(string(b)), "\n")
	return s[len(s)-1]
}
