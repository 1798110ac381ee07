//go:build unix

package logfile_test

import (
	"context"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/cel"
	"github.com/ccmr-dev/ccmr/eventlog/logfile"
	"github.com/ccmr-dev/ccmr/internal/swtpmtest"
	"github.com/ccmr-dev/ccmr/mr"
)

// trixieSystemd is where scripts/systemd-trixie.sh puts Debian trixie's
// systemd and the libraries it needs.
const trixieSystemd = "../../.cache/systemd-trixie"

// A log written by a real producer, Debian trixie's systemd-pcrextend (257),
// against swtpm: `ccmr log replay` of it equals the PCRs tpm2_pcrread reads,
// in both banks, and it is read under the lock the collection takes.
// Skipped (one line) without scripts/systemd-trixie.sh's cache or swtpm.
func TestSystemdPcrextendSwtpm(t *testing.T) {
	root, _ := filepath.Abs(filepath.Join(trixieSystemd, "root"))
	loader := filepath.Join(root, "usr/lib64/ld-linux-x86-64.so.2")
	bin := filepath.Join(root, "usr/lib/systemd/systemd-pcrextend")
	libpath, err := os.ReadFile(filepath.Join(trixieSystemd, "libpath"))
	if err != nil {
		if os.Getenv("CCMR_REQUIRE_TOOLS") == "1" {
			t.Fatalf("no trixie systemd: run scripts/systemd-trixie.sh (%v)", err)
		}
		t.Skip("no trixie systemd-pcrextend: run scripts/systemd-trixie.sh")
	}
	pcrread := swtpmtest.Need(t, "tpm2_pcrread")
	sw := swtpmtest.Start(t)
	if err := sw.Startup(); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "tpm2-measure.log")
	extend := func(args ...string) {
		t.Helper()
		cmd := exec.Command(loader, append([]string{"--library-path", strings.TrimSpace(string(libpath)), bin, "--bank=sha256", "--bank=sha1"}, args...)...)
		// SYSTEMD_FORCE_MEASURE: measure though no systemd-stub booted
		// this machine; SYSTEMD_MEASURE_LOG_USERSPACE: the log's path,
		// never the machine's /run.
		cmd.Env = append(os.Environ(), "SYSTEMD_TPM2_DEVICE="+sw.TCTI(), "SYSTEMD_FORCE_MEASURE=1",
			"SYSTEMD_MEASURE_LOG_USERSPACE="+logPath, "SYSTEMD_LOG_LEVEL=info")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("systemd-pcrextend %v: %v\n%s", args, err, out)
		}
	}
	for _, w := range []string{"enter-initrd", "leave-initrd", "sysinit"} {
		extend(w)
	}
	extend("--pcr=15", "machine-id:00112233445566778899aabbccddeeff")
	extend("ready")

	ctx := context.Background()
	lk, err := cel.LockSystemdLog(ctx, logPath, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Under the shared lock no systemd writer can extend: this is where a
	// quote belongs.
	out, err := exec.Command(pcrread, "-T", sw.TCTI(), "sha1:11,15+sha256:11,15").CombinedOutput()
	lk.Close()
	if err != nil {
		t.Fatalf("tpm2_pcrread: %v\n%s", err, out)
	}
	expect := parsePCRRead(t, string(out))
	if len(expect) != 4 {
		t.Fatalf("tpm2_pcrread gave %d values:\n%s", len(expect), out)
	}
	lf, err := logfile.Open(logPath, eventlog.FormatAuto)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if lf.Format != eventlog.FormatSystemd {
		t.Fatalf("sniffed as %s", lf.Format)
	}
	var n int
	if err := lf.Show(ctx, logfile.Options{}, func(e eventlog.Event) error {
		if e.DigestOnly || len(e.Problems) > 0 || len(e.Digests) != 2 {
			t.Errorf("record %d: %+v", e.Index, e)
		}
		n++
		return nil
	}); err != nil || n != 5 {
		t.Fatalf("show: %d records, %v", n, err)
	}
	res, err := lf.Replay(ctx, logfile.Options{Expect: expect})
	if err != nil {
		t.Fatalf("replay of systemd's log against the swtpm's PCRs: %v", err)
	}
	if len(res.Registers) != 4 {
		t.Errorf("replay %+v", res)
	}
	// The same log with its last record cut as a writer killed mid-append
	// leaves it is refused, not replayed short.
	data, _ := os.ReadFile(logPath)
	cut := logfile.FromBytes("cut", data[:len(data)-10], eventlog.FormatSystemd)
	if _, err := cut.Replay(ctx, logfile.Options{Expect: expect}); err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Errorf("cut log: %v", err)
	}
}

var pcrLine = regexp.MustCompile(`^\s+(\d+)\s*:\s*0x([0-9A-Fa-f]+)$`)

// parsePCRRead reads tpm2_pcrread's YAML-like output.
func parsePCRRead(t *testing.T, out string) []mr.Value {
	var vals []mr.Value
	var alg mr.Alg
	for _, l := range strings.Split(out, "\n") {
		if a, err := mr.ParseAlg(strings.TrimSuffix(strings.TrimSpace(l), ":")); err == nil && strings.HasSuffix(l, ":") {
			alg = a
			continue
		}
		m := pcrLine.FindStringSubmatch(l)
		if m == nil || !alg.Valid() {
			continue
		}
		b, err := hex.DecodeString(m[2])
		if err != nil {
			t.Fatal(err)
		}
		vals = append(vals, mr.Value{Register: mr.Register{Name: "pcr" + m[1]}, Digest: mr.Digest{Alg: alg, Bytes: b}})
	}
	return vals
}
