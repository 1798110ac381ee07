//go:build unix

package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// log show -, log replay - and ima aggregate - with a standard input nobody
// writes to must end at SIGTERM, naming standard input, as verify - does.
func TestStdinLogSIGTERM(t *testing.T) {
	for _, args := range [][]string{
		{"log", "show", "-"},
		{"log", "replay", "-"},
		{"log", "export", "-"},
		{"ima", "aggregate", "-"},
	} {
		stderr := runUntilSIGTERM(t, t.TempDir(), args...)
		if !strings.Contains(stderr, "standard input") {
			t.Errorf("ccmr %v: stderr %q does not name standard input", args, stderr)
		}
	}
}

// A standard input that never ends (/dev/zero) is read up to maxInput and
// refused with exit 2, not held whole.
func TestStdinLogBounded(t *testing.T) {
	bin, err := exec.LookPath("ccmr")
	if err != nil {
		t.Fatalf("ccmr not on $PATH (TestMain puts it there): %v", err)
	}
	dir := t.TempDir()
	for _, args := range [][]string{{"log", "show", "-"}, {"ima", "aggregate", "-"}} {
		zero, err := os.Open("/dev/zero")
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "CCMR_DEVICE=sim:"+filepath.Join(dir, "sim"), "XDG_STATE_HOME="+dir)
		cmd.Stdin = zero
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err = cmd.Run()
		zero.Close()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitUsage {
			t.Fatalf("ccmr %v < /dev/zero: %v, want exit %d (stderr %q)", args, err, exitUsage, stderr.String())
		}
		if !strings.Contains(stderr.String(), "standard input: more than") {
			t.Errorf("ccmr %v < /dev/zero: stderr %q", args, stderr.String())
		}
		if ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage); ru != nil && ru.Maxrss > maxRSSKiB {
			t.Errorf("ccmr %v < /dev/zero peaked at %d MiB", args, ru.Maxrss>>10)
		}
	}
}
