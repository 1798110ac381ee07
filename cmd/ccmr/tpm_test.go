//go:build linux

// The TPM commands against swtpm: a device test, and swtpm and its test
// helper (internal/swtpmtest, which stops the process with SIGSTOP) are
// Linux only.

package main

import (
	"archive/zip"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	bundlepkg "github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/internal/imatest"
	"github.com/ccmr-dev/ccmr/internal/swtpmtest"
)

// pcrreadValues runs tpm2_pcrread on the swtpm and returns "bank:index HEX" lines.
func pcrreadValues(t *testing.T, tp *swtpmtest.TPM, sel string) []string {
	t.Helper()
	cmd := exec.Command(swtpmtest.Need(t, "tpm2_pcrread"), sel)
	cmd.Env = append(os.Environ(), tp.Env()...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tpm2_pcrread: %v\n%s", err, b)
	}
	var out []string
	bank := ""
	re := regexp.MustCompile(`^\s+(\d+)\s*:\s*0x([0-9A-Fa-f]+)`)
	for _, l := range strings.Split(string(b), "\n") {
		if m := regexp.MustCompile(`^\s+(sha\w+):`).FindStringSubmatch(l); m != nil {
			bank = m[1]
		} else if m := re.FindStringSubmatch(l); m != nil {
			out = append(out, "pcr"+m[1]+" "+bank+":"+strings.ToLower(m[2]))
		}
	}
	sort.Strings(out)
	return out
}

func ccmrValues(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}

// ccmr --device tcp://… read pcr0 pcr11 prints what tpm2_pcrread prints, in
// every active bank, before and after extends; a quote verifies with
// tpm2_checkquote and with ccmr verify; the old bundle still verifies after
// a PCR changes, and fails against another expected nonce; virtual
// registers work on the TPM with a non-resettable backing PCR.
func TestTPMEndToEnd(t *testing.T) {
	swtpmtest.Need(t, "swtpm")
	tp := swtpmtest.Start(t)
	tp.Startup()
	dir := t.TempDir()
	vars := map[string]string{"CCMR_DEVICE": tp.Spec}
	dev := []string{"--device", "tcp://" + tp.Addr}

	read := func() []string {
		out, errs, code := ccmrRun(t, vars, append(dev, "read", "pcr0", "pcr11")...)
		if code != 0 {
			t.Fatalf("read: %d %s", code, errs)
		}
		return ccmrValues(out)
	}
	if got, want := read(), pcrreadValues(t, tp, "sha1:0,11+sha256:0,11+sha384:0,11+sha512:0,11"); strings.Join(got, "\n") != strings.Join(filterBanks(want, got), "\n") || len(got) == 0 {
		t.Fatalf("ccmr read:\n%s\ntpm2_pcrread:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, errs, code := ccmrRun(t, vars, append(dev, "extend", "pcr11", "--data", "main.go")...); code != 0 {
		t.Fatal(errs)
	}
	if got, want := read(), pcrreadValues(t, tp, "sha1:0,11+sha256:0,11+sha384:0,11+sha512:0,11"); strings.Join(got, "\n") != strings.Join(filterBanks(want, got), "\n") {
		t.Fatalf("after extend: ccmr read:\n%s\ntpm2_pcrread:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Virtual registers backed by pcr14 (not resettable). The IMA list is
	// a generated one: the real kernel's list has a boot_aggregate of its
	// own TPM, which this swtpm's PCRs rightly refuse. Its boot_aggregate
	// is that of this swtpm, whose PCRs 0-9 nothing extended (zeros): a
	// TPM bundle's IMA list must start with one that matches the quote.
	imaList := filepath.Join(dir, "ima.bin")
	bootAgg := sha256.Sum256(make([]byte, 10*32))
	specs := []imatest.Spec{{Template: "ima-ng", FileAlg: "sha256", Name: "boot_aggregate", Digest: bootAgg[:]}}
	for i := 1; i < 40; i++ {
		specs = append(specs, imatest.NG(i))
	}
	if err := os.WriteFile(imaList, imatest.Binary(specs, binary.LittleEndian), 0o600); err != nil {
		t.Fatal(err)
	}
	// PCR 10 holds what the list measured, as the kernel extends it (every
	// bank with its hash of the template data): the verifier replays the
	// whole list against the quoted PCR 10, not only against mr_ima.
	for i, sp := range specs {
		f := filepath.Join(dir, fmt.Sprintf("entry%d", i))
		if err := os.WriteFile(f, sp.TemplateData(binary.LittleEndian), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, errs, code := ccmrRun(t, vars, append(dev, "extend", "pcr10", "--data", f)...); code != 0 {
			t.Fatal(errs)
		}
	}
	logDir := filepath.Join(dir, "run")
	vdev := append(dev, "--log-dir", logDir, "--backing", "pcr14")
	if _, errs, code := ccmrRun(t, vars, append(vdev, "extend", "mr_ctr.a", "--data", "main.go")...); code != 0 {
		t.Fatal(errs)
	}
	if _, errs, code := ccmrRun(t, vars, append(vdev, "ima", "forward", "--once", "--ima-log", imaList)...); code != 0 {
		t.Fatal(errs)
	}
	if _, errs, code := ccmrRun(t, vars, append(dev, "--log-dir", filepath.Join(dir, "run16"), "extend", "mr_ctr.a", "--backing", "pcr16", "--data", "main.go")...); code != 2 || !strings.Contains(errs, "can be reset from the guest") {
		t.Fatalf("pcr16 as backing register: exit %d, want 2 (%s)", code, errs)
	}

	nonce := "c0ffee01"
	bundle := filepath.Join(dir, "e.json")
	if _, errs, code := ccmrRun(t, vars, append(vdev, "quote", "--nonce", nonce, "-O", bundle, "--ima-log", imaList)...); code != 0 {
		t.Fatal(errs)
	}
	ak := filepath.Join(dir, "ak.pem")
	if _, errs, code := ccmrRun(t, vars, append(dev, "key", "-O", ak)...); code != 0 {
		t.Fatal(errs)
	}
	checkquote(t, bundle, nonce, true)
	checkquote(t, bundle, "c0ffee02", false)

	verify := func(nonce string) (string, int) {
		out, _, code := ccmrRun(t, vars, "verify", bundle, "--trust-ak", ak, "--nonce", nonce)
		return out, code
	}
	if out, code := verify(nonce); code != 0 {
		t.Fatalf("verify: exit %d\n%s", code, out)
	} else if !strings.Contains(out, "records of mr_ima") || !strings.Contains(out, "40 IMA entries replay to the quoted PCR 10") {
		t.Fatalf("IMA list not checked against mr_ima and PCR 10:\n%s", out)
	}
	// The kernel measures on while the guest quotes: the list read after
	// the quote ends with entries PCR 10 did not hold when quoted. The
	// bundle carries the quoted prefix only, and verifies.
	grown := append(specs[:len(specs):len(specs)], imatest.NG(100), imatest.NG(101), imatest.NG(102))
	if err := os.WriteFile(imaList, imatest.Binary(grown, binary.LittleEndian), 0o600); err != nil {
		t.Fatal(err)
	}
	grownBundle := filepath.Join(dir, "grown.json")
	if _, errs, code := ccmrRun(t, vars, append(vdev, "quote", "--nonce", "c0ffee04", "-O", grownBundle, "--ima-log", imaList)...); code != 0 {
		t.Fatal(errs)
	}
	if out, _, code := ccmrRun(t, vars, "verify", grownBundle, "--trust-ak", ak, "--nonce", "c0ffee04"); code != 0 || !strings.Contains(out, "40 IMA entries replay to the quoted PCR 10") {
		t.Fatalf("a list that grew after the quote: exit %d, want the quoted 40 entries trusted\n%s", code, out)
	}
	// A PCR changes after the quote: the old bundle still verifies (it
	// proves the past), and fails against a fresh nonce.
	if _, errs, code := ccmrRun(t, vars, append(dev, "extend", "pcr10", "--data", "main.go")...); code != 0 {
		t.Fatal(errs)
	}
	if out, code := verify(nonce); code != 0 {
		t.Fatalf("old bundle after extend: exit %d\n%s", code, out)
	}
	if out, code := verify("c0ffee03"); code != 1 || !strings.Contains(out, "nonce") {
		t.Fatalf("old bundle, new nonce: exit %d\n%s", code, out)
	}
	// Another pinned AK: not trusted.
	other := filepath.Join(dir, "other.pem")
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	os.WriteFile(other, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
	if out, _, code := ccmrRun(t, vars, "verify", bundle, "--trust-ak", other, "--nonce", nonce); code != 1 || !strings.Contains(out, "AK is not trusted") {
		t.Fatalf("other AK: exit %d\n%s", code, out)
	}
}

// filterBanks keeps tpm2_pcrread lines of the banks ccmr reported.
func filterBanks(want, got []string) []string {
	banks := map[string]bool{}
	for _, g := range got {
		banks[strings.SplitN(strings.Fields(g)[1], ":", 2)[0]] = true
	}
	var out []string
	for _, w := range want {
		if banks[strings.SplitN(strings.Fields(w)[1], ":", 2)[0]] {
			out = append(out, w)
		}
	}
	return out
}

// checkquote runs tpm2_checkquote on every bank's quote of the bundle, with
// the files extracted as docs/tpm.md shows.
func checkquote(t *testing.T, bundle, nonce string, wantOK bool) {
	t.Helper()
	tool := swtpmtest.Need(t, "tpm2_checkquote")
	raw, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	// A v2 bundle's evidence is in its manifest, read here with the
	// standard library's zip reader as docs/tpm.md's unzip -p does.
	if zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw))); err == nil {
		f, err := zr.Open(bundlepkg.ManifestName)
		if err != nil {
			t.Fatal(err)
		}
		if raw, err = io.ReadAll(f); err != nil {
			t.Fatal(err)
		}
	}
	var b struct {
		Evidence struct {
			PublicKey string `json:"public_key"`
			TPMQuotes []struct {
				Alg       string `json:"alg"`
				Attest    []byte `json:"attest"`
				Signature []byte `json:"signature"`
				PCRFile   []byte `json:"pcr_file"`
			} `json:"tpm_quotes"`
		} `json:"evidence"`
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ak := write("ak.pem", []byte(b.Evidence.PublicKey))
	if len(b.Evidence.TPMQuotes) == 0 {
		t.Fatal("no quotes")
	}
	for _, q := range b.Evidence.TPMQuotes {
		cmd := exec.Command(tool, "-u", ak, "-m", write(q.Alg+".attest", q.Attest), "-s", write(q.Alg+".sig", q.Signature),
			"-f", write(q.Alg+".pcrs", q.PCRFile), "-g", q.Alg, "-q", nonce)
		out, err := cmd.CombinedOutput()
		if (err == nil) != wantOK {
			t.Fatalf("tpm2_checkquote %s nonce %s: err %v, want ok=%v\n%s", q.Alg, nonce, err, wantOK, out)
		}
	}
	_ = hex.EncodeToString
}
