//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/internal/swtpmtest"
)

// Virtual registers on a real TPM (swtpm) through the CLI, with no
// --backing after the first command: the folder records its register
// (pcr14 by default, which the OS can extend), and every later command
// (read, registers, vmr list, quote) finds it; a --backing or CCMR_BACKING
// that disagrees is a usage error naming both; key and reads of real
// registers never touch the log folder; a resettable PCR needs
// --accept-resettable-backing on every command, and its bundle verifies
// only weakened.
func TestTPMRecordedBacking(t *testing.T) {
	swtpmtest.Need(t, "swtpm")
	tp := swtpmtest.Start(t)
	tp.Startup()
	dir := t.TempDir()
	logDir := filepath.Join(dir, "run")
	vars := map[string]string{}
	dev := []string{"--device", "tcp://" + tp.Addr, "--log-dir", logDir}
	ok := func(env map[string]string, args ...string) string {
		t.Helper()
		out, errs, code := ccmrRun(t, env, append(dev, args...)...)
		if code != 0 {
			t.Fatalf("ccmr %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
		}
		return out
	}
	refused := func(env map[string]string, wantCode int, want []string, args ...string) {
		t.Helper()
		out, errs, code := ccmrRun(t, env, append(dev, args...)...)
		if code != wantCode {
			t.Fatalf("ccmr %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, wantCode, out, errs)
		}
		for _, w := range want {
			if !strings.Contains(errs, w) {
				t.Fatalf("ccmr %s: error does not say %q:\n%s", strings.Join(args, " "), w, errs)
			}
		}
	}

	// No log folder yet: key and real reads work and create nothing.
	ak := filepath.Join(dir, "ak.pem")
	ok(vars, "key", "-O", ak)
	if out := ok(vars, "read", "pcr14"); !strings.Contains(out, "pcr14 sha256:"+strings.Repeat("0", 64)) {
		t.Fatalf("read pcr14:\n%s", out)
	}
	ok(vars, "read")
	ok(vars, "registers")
	if _, err := os.Stat(logDir); !os.IsNotExist(err) {
		t.Fatalf("reading created the log folder: %v", err)
	}

	// The first virtual extend picks pcr14 and records it.
	ok(vars, "extend", "mr_app", "--data", "main.go")
	if b, err := os.ReadFile(filepath.Join(logDir, "backing")); err != nil || string(b) != "pcr14\n" {
		t.Fatalf("backing file %q, %v", b, err)
	}
	ok(vars, "extend", "mr_app", "--data", "main.go")
	list := ok(vars, "vmr", "list")
	if !strings.HasPrefix(list, "mr_app sha384:") {
		t.Fatalf("vmr list:\n%s", list)
	}
	if out := ok(vars, "read"); !strings.Contains(out, list) {
		t.Fatalf("read without names lacks the virtual registers:\n%s", out)
	}
	if out := ok(vars, "read", "pcr14"); strings.Contains(out, "pcr14 sha384:"+strings.Repeat("0", 96)) || !strings.Contains(out, "pcr14 sha384:") {
		t.Fatalf("pcr14 (sha384, the backing bank) not extended:\n%s", out)
	}
	ok(map[string]string{"CCMR_BACKING": "pcr14"}, "vmr", "list")

	// Disagreeing --backing or CCMR_BACKING: exit 2 naming both, nothing
	// written.
	refused(vars, 2, []string{"pcr15", "pcr14", logDir}, "--backing", "pcr15", "extend", "mr_app", "--data", "main.go")
	refused(map[string]string{"CCMR_BACKING": "pcr15"}, 2, []string{"pcr15", "pcr14"}, "vmr", "list")
	refused(map[string]string{"CCMR_BACKING": "pcr15"}, 2, []string{"pcr15", "pcr14"}, "quote", "-O", filepath.Join(dir, "x.zip"))
	if _, err := os.Stat(filepath.Join(logDir, "pcr15.log")); !os.IsNotExist(err) {
		t.Fatalf("a refused command wrote pcr15.log: %v", err)
	}
	if got := ok(vars, "vmr", "list"); got != list {
		t.Fatalf("values changed by refused commands:\n%s\nwant\n%s", got, list)
	}

	// quote finds the recorded register; the bundle verifies with the
	// log's start proven (pcr14 was zero).
	bundle := filepath.Join(dir, "e.zip")
	ok(vars, "quote", "--nonce", "c0ffee", "-O", bundle, "--ima-log", "")
	out, _, code := ccmrRun(t, vars, "verify", bundle, "--trust-ak", ak, "--nonce", "c0ffee")
	if code != 0 || !strings.Contains(out, "the runtime log of pcr14 starts at the reset value of pcr14") || strings.Contains(out, "weakened") {
		t.Fatalf("verify: exit %d\n%s", code, out)
	}

	// A hostile folder: key and real reads still work (they never open it).
	if err := os.WriteFile(filepath.Join(logDir, "backing"), []byte("pcr23\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok(vars, "key")
	ok(vars, "read", "pcr0", "pcr14")
	// A record naming a resettable PCR without the acknowledgment.
	refused(vars, 2, []string{"pcr23", "recorded in", "--accept-resettable-backing"}, "vmr", "list")
	// Planted by another user.
	if os.Geteuid() == 0 {
		os.WriteFile(filepath.Join(logDir, "backing"), []byte("pcr14\n"), 0o600)
		if err := os.Chown(filepath.Join(logDir, "backing"), 4242, 4242); err != nil {
			t.Fatal(err)
		}
		refused(vars, 1, []string{"belongs to uid 4242"}, "extend", "mr_app", "--data", "main.go")
		refused(vars, 1, []string{"belongs to uid 4242"}, "vmr", "list")
		ok(vars, "key")
		ok(vars, "read", "pcr14")
	}

	// A resettable register: refused unless acknowledged, on every command;
	// its bundle fails verification, and passes weakened, saying why,
	// with --accept-unverified-history.
	dev = []string{"--device", "tcp://" + tp.Addr, "--log-dir", filepath.Join(dir, "run23")}
	refused(vars, 2, []string{"pcr23", "can be reset from the guest", "--accept-resettable-backing"}, "--backing", "pcr23", "extend", "mr_app", "--data", "main.go")
	ok(vars, "--backing", "pcr23", "--accept-resettable-backing", "extend", "mr_app", "--data", "main.go")
	refused(vars, 2, []string{"pcr23", "--accept-resettable-backing"}, "vmr", "list")
	ok(vars, "--accept-resettable-backing", "vmr", "list")
	bundle23 := filepath.Join(dir, "e23.zip")
	ok(vars, "--accept-resettable-backing", "quote", "--nonce", "c0ffee", "-O", bundle23, "--ima-log", "")
	out, _, code = ccmrRun(t, vars, "verify", bundle23, "--trust-ak", ak, "--nonce", "c0ffee")
	if code != 1 || !strings.Contains(out, "pcr23, which the guest can reset") {
		t.Fatalf("verify of a pcr23 log: exit %d, want 1\n%s", code, out)
	}
	out, _, code = ccmrRun(t, vars, "verify", bundle23, "--trust-ak", ak, "--nonce", "c0ffee", "--accept-unverified-history")
	if code != 0 || !strings.Contains(out, "weakened: pcr23: resettable by the guest") {
		t.Fatalf("verify --accept-unverified-history of a pcr23 log: exit %d\n%s", code, out)
	}
}
