package mr

import (
	"bytes"
	"crypto/sha256"
	"testing"
)

// Extend, Extender and ExtendInto are one computation: H(old || d), and
// neither Extend nor Value lets the caller's bytes be overwritten.
func TestExtendOnePath(t *testing.T) {
	old := Digest{Alg: SHA256, Bytes: bytes.Repeat([]byte{7}, 32)}
	keep := bytes.Clone(old.Bytes)
	d := bytes.Repeat([]byte{9}, 32)
	want := sha256.Sum256(append(bytes.Clone(old.Bytes), d...))
	got, err := Extend(old, d)
	if err != nil || !bytes.Equal(got.Bytes, want[:]) {
		t.Fatalf("Extend = %v, %v; want %x", got, err, want)
	}
	if !bytes.Equal(old.Bytes, keep) {
		t.Fatal("Extend overwrote its input")
	}
	e := NewExtender(old)
	if err := e.Extend(d); err != nil {
		t.Fatal(err)
	}
	v := e.Value()
	if !v.Equal(got) || !bytes.Equal(e.AppendValue(nil), got.Bytes) || !bytes.Equal(old.Bytes, keep) {
		t.Fatalf("Extender = %v, want %v", v, got)
	}
	if err := e.Extend(d); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(v.Bytes, want[:]) {
		t.Fatal("a Value was overwritten by the next extend")
	}
	if err := e.Extend(d[:31]); err == nil {
		t.Fatal("a 31-byte digest extended a sha256 register")
	}
	h := SHA256.New()
	if got := ExtendInto(h, bytes.Clone(old.Bytes), d); !bytes.Equal(got, want[:]) {
		t.Fatalf("ExtendInto = %x", got)
	}
	h.Write([]byte("left over")) // ExtendInto resets the hash first
	if got := ExtendInto(h, bytes.Clone(old.Bytes), d); !bytes.Equal(got, want[:]) {
		t.Fatalf("ExtendInto with a used hash = %x", got)
	}
}

// The PC Client rules of which PCRs a guest extends and what they reset to.
func TestTPMRules(t *testing.T) {
	for i := -1; i <= 24; i++ {
		ext := i >= 0 && i <= 16 || i == 23
		if TPMExtendable(i) != ext {
			t.Errorf("TPMExtendable(%d) = %v", i, !ext)
		}
		v := TPMResetValue(i, SHA384)
		fill := byte(0)
		if i >= 17 && i <= 22 {
			fill = 0xFF
		}
		if v.Alg != SHA384 || !bytes.Equal(v.Bytes, bytes.Repeat([]byte{fill}, 48)) {
			t.Errorf("TPMResetValue(%d) = %v", i, v)
		}
	}
}
