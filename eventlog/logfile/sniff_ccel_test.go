package logfile_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/logfile"
	"github.com/ccmr-dev/ccmr/eventlog/tcg"
	"github.com/ccmr-dev/ccmr/internal/corpus"
)

// Red team 4, format confusion: an unpadded CCEL of more than 64 KiB (the
// cos-113 log with its events repeated) was sniffed from the head Open
// reads as TCG2, tcg.Sniff naming every crypto-agile log it cannot read to
// its end TCG2, so `ccmr log show|replay` read a TDX log with PCR names.
// Rule: a cut head is judged by the records before the cut one only.
func TestSniffLongUnpaddedCCEL(t *testing.T) {
	dir, err := corpus.Dir()
	if err != nil {
		t.Skipf("public corpus absent: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "go-eventlog", "ccel", "cos-113-intel-tdx-dupe-separator-unpadded.bin"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := tcg.Parse("ccel", raw, eventlog.FormatCCEL)
	if err != nil {
		t.Fatal(err)
	}
	big := append(bytes.Clone(raw), bytes.Repeat(raw[l.Events[1].Offset:], 4)...)
	if len(big) <= logfile.SniffSize {
		t.Fatalf("the log is %d bytes, want more than %d", len(big), logfile.SniffSize)
	}
	if f, ok := logfile.Sniff(big); !ok || f != eventlog.FormatCCEL {
		t.Fatalf("the whole log sniffed as %q, want ccel", f)
	}
	if f, ok := logfile.Sniff(big[:logfile.SniffSize]); !ok || f != eventlog.FormatCCEL {
		t.Fatalf("its 64 KiB head sniffed as %q, want ccel", f)
	}
	p := filepath.Join(t.TempDir(), "ccel.bin")
	if err := os.WriteFile(p, big, 0o600); err != nil {
		t.Fatal(err)
	}
	lf, err := logfile.Open(p, eventlog.FormatAuto)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if lf.Format != eventlog.FormatCCEL {
		t.Fatalf("Open sniffed %s, want ccel", lf.Format)
	}
}
