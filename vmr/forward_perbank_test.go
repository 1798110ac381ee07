package vmr

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/mr"
)

// Forwarding from a per-bank list (Linux 6.10+) reads it as its file name
// says and gives the mr_ima the SHA-1 list gives: sha384(template data) of
// each entry, which is the sha384 list's own template hash. Nothing of sha1
// is read: the sha384 list is the only list there. The same list under a
// name that says nothing is read as a SHA-1 list and refused, not
// misread.
func TestForwardPerBankList(t *testing.T) {
	ctx := context.Background()
	b384, err := os.ReadFile("../eventlog/ima/testdata/perbank/binary_runtime_measurements_sha384")
	if err != nil {
		t.Fatal(err)
	}
	dir384, dir1 := t.TempDir(), t.TempDir()
	list384 := filepath.Join(dir384, "binary_runtime_measurements_sha384")
	list1 := filepath.Join(dir1, "binary_runtime_measurements")
	if err := os.WriteFile(list384, b384, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(list1, realList(t), 0o600); err != nil {
		t.Fatal(err)
	}
	_, s384 := openSim(t, dir384)
	_, s1 := openSim(t, dir1)
	n384, err := s384.Forward(ctx, ForwardOptions{List: list384, Batch: 5})
	if err != nil {
		t.Fatal(err)
	}
	n1, err := s1.Forward(ctx, ForwardOptions{List: list1})
	if err != nil || n1 != n384 {
		t.Fatalf("sha1 list: %d entries (%v), sha384 list %d", n1, err, n384)
	}
	v384, _ := s384.Read(ctx, "mr_ima")
	v1, _ := s1.Read(ctx, "mr_ima")
	// The fold of the sha384 list's listed hashes, by hand.
	ext := mr.NewExtender(mr.Zero(mr.SHA384))
	rd := ima.NewBinaryReader(bytes.NewReader(b384), ima.Options{Bank: mr.SHA384})
	for {
		e, err := rd.Next()
		if err != nil {
			break
		}
		ext.Extend(e.TemplateHash)
	}
	if !v384.Equal(v1) || !v384.Equal(ext.Value()) {
		t.Fatalf("mr_ima from the sha384 list %v, from the sha1 list %v, listed sha384 hashes fold to %v", v384, v1, ext.Value())
	}
	// Forwarding again adds nothing (the resume path reads it the same way).
	if n, err := s384.Forward(ctx, ForwardOptions{List: list384}); err != nil || n != 0 {
		t.Fatalf("second Forward = %d, %v", n, err)
	}
	anon := filepath.Join(t.TempDir(), "ima.bin")
	if err := os.WriteFile(anon, b384, 0o600); err != nil {
		t.Fatal(err)
	}
	_, s := openSim(t, t.TempDir())
	if n, err := s.Forward(ctx, ForwardOptions{List: anon}); err == nil {
		t.Fatalf("a sha384 list under a neutral name forwarded %d entries as a SHA-1 list", n)
	}
}
