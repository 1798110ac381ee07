package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/mr"
)

// log replay --tpm starts a runtime log on PCRs 17-22 (no INIT entry) at
// all ones, the TPM's reset value there, and at zeros on the others.
func TestLogReplayDRTMResetValue(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		pcr  uint32
		name string
	}{{17, "pcr17"}, {22, "pcr22"}, {14, "pcr14"}} {
		b, d, err := aael.AppendEntry(nil, c.pcr, mr.SHA256, aael.Record{Domain: "mr_a", Operation: "extend", Content: "sha256/" + strings.Repeat("ab", 32)})
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, c.name+".log")
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
		want := mr.NewExtender(mr.ResetValue(c.name, mr.SHA256))
		want.Extend(d.Bytes)
		wrong := mr.NewExtender(mr.Zero(mr.SHA256))
		if c.pcr == 14 {
			wrong = mr.NewExtender(mr.TPMResetValue(17, mr.SHA256))
		}
		wrong.Extend(d.Bytes)
		out, errs, code := ccmrRun(t, nil, "log", "replay", "--tpm", "--format", "runtime", file)
		if code != 0 || !strings.Contains(out, want.Value().Hex()) || strings.Contains(out, wrong.Value().Hex()) {
			t.Fatalf("log replay --tpm of %s: exit %d, want %s\n%s%s", c.name, code, want.Value(), out, errs)
		}
		if _, errs, code := ccmrRun(t, nil, "log", "replay", "--tpm", "--format", "runtime", file, "--expect", c.name+"="+wrong.Value().String()); code != 1 {
			t.Fatalf("--expect the value from the wrong start: exit %d\n%s", code, errs)
		}
	}
}
