package logfile_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/eventlog/logfile"
	"github.com/ccmr-dev/ccmr/mr"
)

// perBankDir holds the real kernel's entries written as per-bank lists
// (eventlog/ima's TestPerBankTestdata keeps them right).
var perBankDir = filepath.Join("..", "ima", "testdata", "perbank")

func realPCR10(t *testing.T) []mr.Value {
	t.Helper()
	var out []mr.Value
	for _, a := range []mr.Alg{mr.SHA1, mr.SHA256} {
		f, err := os.Open(filepath.Join("..", "..", "testdata", "real-kernel-ima-sig", "pcrs.txt"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := ima.ParsePCRFile(bufio.NewReader(f), a)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, mr.Value{Register: mr.Register{Name: "pcr10", Alg: a, Size: a.Size(), Index: 10}, Digest: m[10]})
	}
	return out
}

// Every per-bank list is detected as its bank's format, by its contents
// alone and with its kernel file name, and replays to the real PCR 10 of
// the sha1 and sha256 banks, through the same File every reader uses.
func TestPerBankOpenReplay(t *testing.T) {
	tmp := t.TempDir()
	for _, enc := range []string{"binary", "ascii"} {
		for _, bank := range []string{"sha1", "sha256", "sha384", "sm3"} {
			name := enc + "_runtime_measurements_" + bank
			b, err := os.ReadFile(filepath.Join(perBankDir, name))
			if err != nil {
				t.Fatal(err)
			}
			a, _ := mr.ParseAlg(bank)
			want := ima.BankFormat(enc == "ascii", a)
			anon := filepath.Join(tmp, enc+"-"+bank+".list")
			if err := os.WriteFile(anon, b, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{filepath.Join(perBankDir, name), anon} {
				lf, err := logfile.Open(p, eventlog.FormatAuto)
				if err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				if lf.Format != want {
					t.Fatalf("%s: format %s, want %s", p, lf.Format, want)
				}
				res, err := lf.Replay(context.Background(), logfile.Options{Expect: realPCR10(t)})
				lf.Close()
				if err != nil || res.Events == 0 {
					t.Fatalf("%s: replay %v", p, err)
				}
			}
		}
	}
}

// Hostile: a sha256 list under a sha384 list's name is refused (exit 2),
// and one given --format of another bank of its size is a mismatch at its
// first entry, never a pass.
func TestPerBankMislabelledFile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(perBankDir, "binary_runtime_measurements_sha256"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "binary_runtime_measurements_sha384")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := logfile.Open(p, eventlog.FormatAuto); !errors.Is(err, mr.ErrMalformed) || !strings.Contains(err.Error(), "ima-binary-sha384") {
		t.Fatalf("sha256 list named sha384: %v", err)
	}
	lf, err := logfile.Open(p, "ima-binary-sm3")
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	_, err = lf.Replay(context.Background(), logfile.Options{Expect: realPCR10(t)})
	var m *eventlog.Mismatch
	if !errors.As(err, &m) || m.Record != 0 {
		t.Fatalf("sha256 list read as sm3: %v", err)
	}
	if f, err := logfile.ParseFormat("ima-binary-sha384"); err != nil || f != "ima-binary-sha384" {
		t.Fatalf("ParseFormat: %s %v", f, err)
	}
}
