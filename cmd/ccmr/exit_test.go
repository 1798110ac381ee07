package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog"
)

// TestInputErrorExit2 checks that an input the user may not read, or a
// folder read as a file, exits 2 like a missing one, whichever reader met
// it, while a device's other failures stay 1.
func TestInputErrorExit2(t *testing.T) {
	denied := &fs.PathError{Op: "open", Path: "secret.json", Err: syscall.EACCES}
	if os.Geteuid() != 0 {
		// Not root: a real denial, not a made-up one.
		p := filepath.Join(t.TempDir(), "secret.json")
		if err := os.WriteFile(p, []byte("{}"), 0o000); err != nil {
			t.Fatal(err)
		}
		_, err := os.Open(p)
		if !errors.As(err, &denied) {
			t.Fatalf("open of a mode 000 file: %v", err)
		}
	}
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"permission denied", inputError(denied), exitUsage},
		{"permission denied, wrapped", fmt.Errorf("log: %w", inputError(denied)), exitUsage},
		{"missing", inputError(&fs.PathError{Op: "open", Path: "x", Err: syscall.ENOENT}), exitUsage},
		{"folder read", fmt.Errorf("reading d: %w", &fs.PathError{Op: "read", Path: "d", Err: syscall.EISDIR}), exitUsage},
		{"device i/o error", inputError(&fs.PathError{Op: "read", Path: "/dev/tpmrm0", Err: syscall.EIO}), exitFail},
		{"not trusted", errors.New("b.json: not trusted"), exitFail},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("%s: exit %d, want %d (%v)", tc.name, got, tc.want, tc.err)
		}
	}
	if inputError(nil) != nil {
		t.Error("inputError(nil) is not nil")
	}
}

// TestWriteErrorJSON checks the one-object form of an error under -o json:
// valid JSON on one line, the exit code, a log's place only where it
// applies (no record -1, no offset 0 when no byte is named).
func TestWriteErrorJSON(t *testing.T) {
	for _, tc := range []struct {
		name       string
		err        error
		wantRecord bool
		wantOffset bool
	}{
		{"plain", errors.New("bad \"thing\"\n\x1b[2J"), false, false},
		{"record", &eventlog.Error{File: "a.log", Record: 3, Offset: 120, Err: errors.New("bad digest")}, true, true},
		{"whole file", &eventlog.Error{File: "a.log", Record: -1, Offset: 0, Err: errors.New("empty")}, false, false},
		{"joined", errors.Join(errors.New("one"), errors.New("two")), false, false},
	} {
		var b bytes.Buffer
		writeError(&b, tc.err, 2, true)
		out := b.Bytes()
		if bytes.Count(out, []byte("\n")) != 1 || out[len(out)-1] != '\n' {
			t.Errorf("%s: not one line: %q", tc.name, out)
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("%s: %v: %q", tc.name, err, out)
		}
		if m["error"] != tc.err.Error() || m["exit"] != float64(2) {
			t.Errorf("%s: %v", tc.name, m)
		}
		if _, ok := m["record"]; ok != tc.wantRecord {
			t.Errorf("%s: record present %v, want %v: %s", tc.name, ok, tc.wantRecord, out)
		}
		if _, ok := m["offset"]; ok != tc.wantOffset {
			t.Errorf("%s: offset present %v, want %v: %s", tc.name, ok, tc.wantOffset, out)
		}
	}
	var b bytes.Buffer
	writeError(&b, errors.Join(errors.New("one"), errors.New("two")), 1, true)
	if !bytes.Contains(b.Bytes(), []byte(`"errors":["one","two"]`)) {
		t.Errorf("joined: %s", b.Bytes())
	}
}
