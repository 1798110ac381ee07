package collect

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// The kernel's SHA-1 list path gives way to the per-bank list of the bank
// the evidence needs when the kernel has one (6.10+): the quoted bank on a
// TPM (sha256 when quoted), sha384 (mr_ima) elsewhere; the bundle names
// its format. Without per-bank lists, and for any other path, the path
// given is kept.
func TestBankList(t *testing.T) {
	dir := t.TempDir()
	sha1 := filepath.Join(dir, "binary_runtime_measurements")
	write := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("binary_runtime_measurements")
	tpm := &mr.Evidence{Platform: mr.PlatformTPM, TPMQuotes: []mr.TPMQuote{{Alg: mr.SHA1}, {Alg: mr.SHA256}}}
	tdx := &mr.Evidence{Platform: mr.PlatformTDX}
	if got := bankList(tpm, sha1); got != sha1 {
		t.Fatalf("no per-bank lists: %s", got)
	}
	p256, p384 := write("binary_runtime_measurements_sha256"), write("binary_runtime_measurements_sha384")
	if got := bankList(tpm, sha1); got != p256 {
		t.Fatalf("sha256 quoted: %s", got)
	}
	if got := bankList(&mr.Evidence{Platform: mr.PlatformTPM, TPMQuotes: []mr.TPMQuote{{Alg: mr.SHA1}}}, sha1); got != sha1 {
		t.Fatalf("sha1 quoted: %s", got)
	}
	if got := bankList(tdx, sha1); got != p384 {
		t.Fatalf("mr_ima: %s", got)
	}
	other := filepath.Join(dir, "copy.bin")
	if got := bankList(tdx, other); got != other {
		t.Fatalf("another path: %s", got)
	}
	for p, want := range map[string]eventlog.Format{sha1: "ima-binary", p256: "ima-binary-sha256", p384: "ima-binary-sha384", other: "ima-binary",
		filepath.Join(dir, "ascii_runtime_measurements_sha256"): "ima-binary"} {
		if got := listFormat(p); got != want {
			t.Errorf("listFormat(%s) = %s, want %s", p, got, want)
		}
	}
	// The per-bank list is attached under its format.
	if err := os.WriteFile(p384, []byte("entries"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, c, err := imaLog(context.Background(), tdx, sha1)
	if err != nil {
		t.Fatal(err)
	}
	if c != nil {
		c.Close()
	}
	if l == nil || l.Format != "ima-binary-sha384" || l.Source != p384 {
		t.Fatalf("attached: %+v", l)
	}
}
