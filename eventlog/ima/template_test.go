package ima

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/internal/imatest"
	"github.com/ccmr-dev/ccmr/mr"
)

func firstEntry(t *testing.T, s imatest.Spec) (*Entry, error) {
	t.Helper()
	return NewBinaryReader(bytes.NewReader(imatest.Binary([]imatest.Spec{s}, binary.LittleEndian)), Options{}).Next()
}

// rawEntry reads one binary entry of template tmpl made of fields.
func rawEntry(tmpl string, fields ...[]byte) (*Entry, error) {
	var td []byte
	for _, f := range fields {
		td = binary.LittleEndian.AppendUint32(td, uint32(len(f)))
		td = append(td, f...)
	}
	b := binary.LittleEndian.AppendUint32(nil, 10)
	b = append(b, make([]byte, 20)...)
	b[4] = 1 // not a violation
	b = binary.LittleEndian.AppendUint32(b, uint32(len(tmpl)))
	b = append(b, tmpl...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(td)))
	b = append(b, td...)
	return NewBinaryReader(bytes.NewReader(b), Options{}).Next()
}

// The template name is not hashed: a d-ngv2 field ("type:alg:") read under
// ima-ng, or a d-ng field under ima-ngv2, is a relabelled entry.
func TestAttack12_DigestFieldRelabel(t *testing.T) {
	ngv2 := append([]byte("verity:sha256:\x00"), make([]byte, 32)...)
	ng := append([]byte("sha256:\x00"), make([]byte, 32)...)
	name := []byte("/usr/bin/x\x00")
	for _, c := range []struct {
		tmpl  string
		field []byte
		ok    bool
	}{
		{"ima-ng", ng, true},
		{"ima-ngv2", ngv2, true},
		{"ima-ng", ngv2, false},
		{"ima-ngv2", ng, false},
		{"ima-ngv2", append([]byte("evil:sha256:\x00"), make([]byte, 32)...), false},
	} {
		_, err := rawEntry(c.tmpl, c.field, name)
		if (err == nil) != c.ok {
			t.Errorf("%s with %q: %v", c.tmpl, c.field[:bytes.IndexByte(c.field, 0)], err)
		}
	}
}

func TestKnownTemplate(t *testing.T) {
	for _, n := range []string{"ima", "ima-ng", "ima-sig", "ima-buf", "ima-modsig", "ima-ngv2", "ima-sigv2", "evm-sig"} {
		if !KnownTemplate(n) {
			t.Errorf("%s not known", n)
		}
	}
	for _, n := range []string{"ima-nx", "", "d-ng|n-ng", "IMA-SIG"} {
		if KnownTemplate(n) {
			t.Errorf("%q known", n)
		}
	}
}

// An ima-buf entry's digest is the hash of its buffer; an ima-sig entry
// relabelled ima-buf (its signature read as the buffer) is not.
func TestCheckBufDigest(t *testing.T) {
	good, err := firstEntry(t, imatest.Spec{Template: "ima-buf", FileAlg: "sha256", Name: "kexec-cmdline", Buf: []byte("root=/dev/vda ro")})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckBufDigest("l", good); err != nil {
		t.Errorf("kernel's ima-buf entry: %v", err)
	}
	sig := []byte{3, 2, 4, 1, 2, 3, 4, 0, 2, 0xaa, 0xbb}
	relabelled, err := firstEntry(t, imatest.Spec{Template: "ima-buf", FileAlg: "sha256", Name: "/usr/bin/x",
		Digest: mr.SHA256.Sum([]byte("file")).Bytes, Buf: sig})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckBufDigest("l", relabelled); !errors.Is(err, eventlog.ErrMismatch) {
		t.Errorf("relabelled ima-sig: %v", err)
	}
	file, err := firstEntry(t, imatest.Spec{Template: "ima-sig", FileAlg: "sha256", Name: "/usr/bin/x", Sig: sig})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckBufDigest("l", file); err != nil {
		t.Errorf("ima-sig entry has no buffer to check: %v", err)
	}
}
