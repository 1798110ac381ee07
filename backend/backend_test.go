package backend

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/internal/tsmfake"
)

// Auto-detection picks the right backend on each emulated machine, in
// the order of docs/design.md ("Registers and devices"), and falls back to
// sim with one warning line.
func TestAutoDetect(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	env := func(k string) string {
		if k == "XDG_STATE_HOME" {
			return state
		}
		return ""
	}
	noTPM := func(context.Context) bool { return false }
	for _, c := range []struct {
		name string
		mk   func(root string) error
		tpm  bool
		want string
	}{
		{"tdx", func(r string) error { _, err := tsmfake.NewTDX(r, tsmfake.TDXOptions{}); return err }, false, "tdx"},
		{"tdx before tpm", func(r string) error { _, err := tsmfake.NewTDX(r, tsmfake.TDXOptions{}); return err }, true, "tdx"},
		{"snp", func(r string) error { _, err := tsmfake.NewSNP(r, tsmfake.SNPOptions{}); return err }, false, "snp"},
		{"nothing", func(string) error { return nil }, false, "sim"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			if err := c.mk(root); err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			probe := noTPM
			if c.tpm {
				probe = func(context.Context) bool { return true }
			}
			dev, err := Open(ctx, "auto", Options{Stderr: &stderr, Getenv: env, Root: root, ProbeTPM: probe})
			if err != nil {
				t.Fatal(err)
			}
			defer dev.Close()
			if dev.Kind() != c.want {
				t.Fatalf("auto picked %s, want %s", dev.Kind(), c.want)
			}
			warn := stderr.String()
			if c.want == "sim" {
				if strings.Count(warn, "\n") != 1 || !strings.Contains(warn, state) {
					t.Fatalf("warning %q should be one line naming %s", warn, state)
				}
			} else if warn != "" {
				t.Fatalf("unexpected warning %q", warn)
			}
		})
	}
	// A TPM that the probe finds comes before sim: Open tries it.
	// (There is no /dev/tpmrm0 here, so opening it fails, naming it.)
	dev, err := Open(ctx, "auto", Options{Getenv: env, Root: t.TempDir(), ProbeTPM: func(context.Context) bool { return true }})
	switch {
	case err == nil && dev.Kind() != "tpm":
		t.Fatalf("auto with a TPM picked %s", dev.Kind())
	case err != nil && !strings.Contains(err.Error(), "tpm"):
		t.Fatalf("auto with a TPM: %v", err)
	}
}
