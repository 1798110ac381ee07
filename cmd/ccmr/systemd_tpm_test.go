//go:build unix

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/internal/swtpmtest"
)

// A real systemd (Debian trixie's systemd-pcrextend 257, fetched by
// scripts/systemd-trixie.sh) measures boot phases into PCR 11 of a swtpm and
// logs them; `ccmr quote` quotes the swtpm; the bundle with systemd's log
// added (as the collection will add it) verifies TRUSTED with PCR 11
// explained by systemd's records, and fails with one record taken out.
// Skipped without the trixie cache or swtpm.
func TestSystemdRealLogVerifies(t *testing.T) {
	root, _ := filepath.Abs("../../.cache/systemd-trixie/root")
	libpath, err := os.ReadFile("../../.cache/systemd-trixie/libpath")
	if err != nil {
		if os.Getenv("CCMR_REQUIRE_TOOLS") == "1" {
			t.Fatalf("no trixie systemd: run scripts/systemd-trixie.sh (%v)", err)
		}
		t.Skip("no trixie systemd-pcrextend: run scripts/systemd-trixie.sh")
	}
	swtpmtest.Need(t, "swtpm")
	tp := swtpmtest.Start(t)
	if err := tp.Startup(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sdLog := filepath.Join(dir, "tpm2-measure.log")
	for _, w := range []string{"enter-initrd", "leave-initrd", "sysinit", "ready"} {
		cmd := exec.Command(filepath.Join(root, "usr/lib64/ld-linux-x86-64.so.2"), "--library-path", strings.TrimSpace(string(libpath)),
			filepath.Join(root, "usr/lib/systemd/systemd-pcrextend"), w)
		cmd.Env = append(os.Environ(), "SYSTEMD_TPM2_DEVICE="+tp.TCTI(), "SYSTEMD_FORCE_MEASURE=1", "SYSTEMD_MEASURE_LOG_USERSPACE="+sdLog)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("systemd-pcrextend %s: %v\n%s", w, err, out)
		}
	}
	vars := map[string]string{"CCMR_DEVICE": tp.Spec}
	dev := []string{"--device", "tcp://" + tp.Addr}
	nonce := "5d5d5d01"
	ak := filepath.Join(dir, "ak.pem")
	if _, errs, code := ccmrRun(t, vars, append(dev, "key", "-O", ak)...); code != 0 {
		t.Fatal(errs)
	}
	// quote collects systemd's log itself, under its lock.
	collected := filepath.Join(dir, "collected.json")
	if _, errs, code := ccmrRun(t, vars, append(dev, "quote", "--nonce", nonce, "--systemd-log", sdLog, "-O", collected)...); code != 0 {
		t.Fatal(errs)
	}
	out, _, code := ccmrRun(t, vars, "verify", collected, "--trust-ak", ak, "--nonce", nonce)
	if code != 0 || !strings.Contains(out, "4 records replay to the quoted pcr11") {
		t.Fatalf("quote --systemd-log: exit %d\n%s", code, out)
	}
	// A log systemd marked incomplete (sticky bit: a writer died between
	// extend and log) is left out, with a warning.
	if err := os.Chmod(sdLog, 0o600|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	sticky := filepath.Join(dir, "sticky.json")
	_, errs, code := ccmrRun(t, vars, append(dev, "quote", "--nonce", nonce, "--systemd-log", sdLog, "-O", sticky)...)
	if code != 0 || !strings.Contains(errs, "incomplete") {
		t.Fatalf("quote with an incomplete systemd log: exit %d, stderr %q", code, errs)
	}
	if f, err := os.Open(sticky); err != nil {
		t.Fatal(err)
	} else {
		b, err := bundle.Read(f, sticky)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range b.Logs {
			if l.Format == "systemd" {
				t.Fatal("an incomplete systemd log was carried")
			}
		}
		b.Close()
	}
	os.Chmod(sdLog, 0o600)
	bf := filepath.Join(dir, "e.json")
	if _, errs, code := ccmrRun(t, vars, append(dev, "quote", "--nonce", nonce, "--systemd-log", "", "-O", bf)...); code != 0 {
		t.Fatal(errs)
	}
	data, err := os.ReadFile(sdLog)
	if err != nil {
		t.Fatal(err)
	}
	withLog := func(name string, sd []byte) string {
		f, err := os.Open(bf)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b, err := bundle.Read(f, bf)
		if err != nil {
			t.Fatal(err)
		}
		b.Logs = append(b.Logs, bundle.Log{Format: "systemd", Source: sdLog, Data: sd})
		var buf bytes.Buffer
		if err := b.Write(&buf); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, buf.Bytes(), 0o600)
		return p
	}
	out, _, code = ccmrRun(t, vars, "verify", withLog("sd.json", data), "--trust-ak", ak, "--nonce", nonce)
	if code != 0 || !strings.Contains(out, "4 records replay to the quoted pcr11") {
		t.Fatalf("the bundle with systemd's real log: exit %d\n%s", code, out)
	}
	recs := bytes.SplitAfter(data, []byte("\n"))
	cut := bytes.Join(append(recs[:1:1], recs[2:]...), nil)
	out, _, code = ccmrRun(t, vars, "verify", withLog("cut.json", cut), "--trust-ak", ak, "--nonce", nonce)
	if code != 1 || !strings.Contains(out, "does not give the quoted pcr11") {
		t.Fatalf("systemd's log with a record taken out: exit %d\n%s", code, out)
	}
}
