//go:build unix

// Hostile inputs (fifos, endless streams, memory peaks through rusage):
// Unix process semantics.

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Attacks with unbounded input (issue 15, item 23), run on the ccmr
// process testscript puts on $PATH (the same entry as main, with its
// SIGINT/SIGTERM context). Each case failed before its fix: the old CLI
// read --data whole (24 GB of /dev/zero until the OOM killer), caught
// SIGTERM without looking at it, and blocked forever opening a FIFO.

// maxRSSKiB is far above what streaming needs and far below reading a
// second of /dev/zero whole.
const maxRSSKiB = 200 << 10

// hangLimit only detects a hang; the fixed CLI ends within milliseconds.
const hangLimit = 10 * time.Second

// runUntilSIGTERM starts ccmr with args, sends SIGTERM after ~200 ms and
// requires it to end soon after, with a non-zero status and bounded memory.
func runUntilSIGTERM(t *testing.T, dir string, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("ccmr")
	if err != nil {
		t.Fatalf("ccmr not on $PATH (TestMain puts it there): %v", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "CCMR_DEVICE=sim:"+filepath.Join(dir, "sim"), "XDG_STATE_HOME="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	// A pipe nobody writes to: standard input that never ends.
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdinW.Close()
	cmd.Stdin = stdinR
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stdinR.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	time.Sleep(200 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("ccmr %v exited 0 after SIGTERM", args)
		}
		ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		if ru != nil && ru.Maxrss > maxRSSKiB {
			t.Errorf("ccmr %v peaked at %d MiB of memory", args, ru.Maxrss>>10)
		}
		return stderr.String()
	case <-time.After(hangLimit):
		cmd.Process.Kill()
		<-done
		t.Fatalf("ccmr %v still running %v after SIGTERM (stderr %q)", args, hangLimit, stderr.String())
	}
	return ""
}

func TestAttack23_ExtendDevZero(t *testing.T) {
	dir := t.TempDir()
	runUntilSIGTERM(t, dir, "extend", "rtmr3", "--data", "/dev/zero")
}

func TestAttack23_ExtendVirtualDevZero(t *testing.T) {
	dir := t.TempDir()
	runUntilSIGTERM(t, dir, "extend", "mr_app", "--data", "/dev/zero")
}

func TestAttack23_ExtendFIFOWithoutWriter(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	runUntilSIGTERM(t, dir, "extend", "rtmr3", "--data", fifo)
}

func TestAttack23_ExtendStdinNeverEnds(t *testing.T) {
	dir := t.TempDir()
	runUntilSIGTERM(t, dir, "extend", "rtmr3", "--data", "-")
}

func TestAttack23_EvidencePartFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	runUntilSIGTERM(t, dir, "evidence", "import", "-O", filepath.Join(dir, "b.json"), "--tdx-quote", fifo)
}

// A part or application log of /dev/zero ends by itself in exit 2 at the
// size bound, with bounded memory, instead of growing until the OOM killer.
func TestAttack23_EvidencePartDevZero(t *testing.T) {
	dir := t.TempDir()
	bin, err := exec.LookPath("ccmr")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "evidence", "import", "-O", filepath.Join(dir, "b.json"), "--log", "ima-binary=/dev/zero")
	cmd.Env = append(os.Environ(), "CCMR_DEVICE=sim:"+filepath.Join(dir, "sim"))
	timer := time.AfterFunc(hangLimit, func() { cmd.Process.Kill() })
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != exitUsage {
		t.Fatalf("exit %v, want %d: %v\n%s", cmd.ProcessState, exitUsage, err, out)
	}
	if !strings.Contains(string(out), "more than") {
		t.Errorf("no size bound named:\n%s", out)
	}
	if ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage); ru != nil && ru.Maxrss > 2*maxInput>>10+maxRSSKiB {
		t.Errorf("peaked at %d MiB of memory", ru.Maxrss>>10)
	}
}

// runBounded runs ccmr with args under a 2 GiB address-space limit (so the
// old code's unbounded read fails fast instead of filling the machine) and
// kills it after hangLimit. It returns the exit code, stderr and peak RSS.
func runBounded(t *testing.T, dir string, args ...string) (int, string, int64) {
	t.Helper()
	bin, err := exec.LookPath("ccmr")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", append([]string{"-c", `ulimit -v 2097152 && exec "$0" "$@"`, bin}, args...)...)
	cmd.Env = append(os.Environ(), "CCMR_DEVICE=sim:"+filepath.Join(dir, "sim"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(hangLimit, func() { cmd.Process.Kill() })
	defer timer.Stop()
	cmd.Wait()
	if !timer.Stop() {
		t.Fatalf("ccmr %v still running after %v", args, hangLimit)
	}
	var rss int64
	if ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage); ru != nil {
		rss = ru.Maxrss
	}
	return cmd.ProcessState.ExitCode(), stderr.String(), rss
}

// log show of a firmware log format read /dev/zero whole: 24 GB until the
// OOM killer. Refused at once: a log must be a regular file.
func TestAttack23_LogShowDevZero(t *testing.T) {
	code, stderr, rss := runBounded(t, t.TempDir(), "log", "show", "--format", "tcg2", "/dev/zero")
	if code != exitUsage || !strings.Contains(stderr, "not a regular file") || rss > maxRSSKiB {
		t.Fatalf("exit %d, peak %d MiB, stderr %q; want exit 2 naming a device, small memory", code, rss>>10, stderr)
	}
}

// log show of a FIFO blocked in open, deaf to SIGTERM. Refused at once.
func TestAttack23_LogShowFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	code, stderr, _ := runBounded(t, dir, "log", "replay", fifo)
	if code != exitUsage || !strings.Contains(stderr, "FIFO") {
		t.Fatalf("exit %d, stderr %q; want exit 2 naming a FIFO", code, stderr)
	}
}

// ima forward --ima-log FIFO blocked opening the list, deaf to SIGTERM.
func TestAttack23_ForwardFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	runUntilSIGTERM(t, dir, "ima", "forward", "--once", "--ima-log", fifo)
}

// quote --ima-log FIFO blocked reading the list after the quote.
func TestAttack23_QuoteIMAListFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	runUntilSIGTERM(t, dir, "quote", "--nonce", "0a", "-O", filepath.Join(dir, "b.json"), "--ima-log", fifo)
}

// ima aggregate of a FIFO blocked in open, deaf to SIGTERM: exit 2 at once.
func TestAttack23_AggregateFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	code, stderr, _ := runBounded(t, dir, "ima", "aggregate", fifo)
	if code != exitUsage || !strings.Contains(stderr, "not a regular file") {
		t.Fatalf("exit %d, stderr %q; want exit 2, not a regular file", code, stderr)
	}
}

// verify of a bundle that is a FIFO blocked in open: exit 2 at once.
func TestAttack23_VerifyBundleFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	code, stderr, _ := runBounded(t, dir, "verify", fifo)
	if code != exitUsage || !strings.Contains(stderr, "not a regular file") {
		t.Fatalf("exit %d, stderr %q; want exit 2, not a regular file", code, stderr)
	}
}

// verify's key, roots, collateral and policy files read a FIFO (blocked in
// open) or /dev/zero (until the OOM killer) whole: exit 2 at once.
func TestAttack23_VerifyInputFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// A sound sim bundle, so that each flag's file is what fails.
	bundle := filepath.Join(dir, "b.json")
	if code, stderr, _ := runBounded(t, dir, "quote", "--nonce", "0a", "-O", bundle); code != 0 {
		t.Fatalf("quote: exit %d: %s", code, stderr)
	}
	for _, flag := range []string{"--trust-ak", "--ak-roots", "--collateral", "--policy"} {
		for _, file := range []string{fifo, "/dev/zero"} {
			t.Run(flag+" "+filepath.Base(file), func(t *testing.T) {
				code, stderr, rss := runBounded(t, dir, "verify", bundle, flag, file)
				if code != exitUsage || !strings.Contains(stderr, "not a regular file") || rss > maxRSSKiB {
					t.Errorf("verify %s %s: exit %d, peak %d MiB, stderr %q; want exit 2, not a regular file", flag, file, code, rss>>10, stderr)
				}
			})
		}
	}
}
