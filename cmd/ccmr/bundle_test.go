//go:build unix

package main

import (
	"strings"
	"testing"
)

// verify - with a standard input nobody writes to blocked in the read,
// deaf to SIGTERM: it must end at once.
func TestVerifyStdinSIGTERM(t *testing.T) {
	stderr := runUntilSIGTERM(t, t.TempDir(), "verify", "-", "--allow-sim")
	if !strings.Contains(stderr, "standard input") {
		t.Errorf("stderr %q does not name standard input", stderr)
	}
}
