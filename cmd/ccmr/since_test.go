package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/verifier"
)

// A state without an entry for the machine (a weakened first verdict does
// not advance it) writes no since file: an error, not an empty point.
func TestWriteSinceNoEntry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "since.json")
	err := writeSince(path, verifier.NewState(), "m1", nil)
	if err == nil || !strings.Contains(err.Error(), "no entry for m1") {
		t.Fatalf("want no entry, got %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("a since file was written: %v", err)
	}
}
