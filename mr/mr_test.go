package mr

import (
	"bufio"
	"errors"
	"os"
	"strings"
	"testing"
)

func TestExtendVectors(t *testing.T) {
	f, err := os.Open("testdata/extend-vectors.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fs := strings.Fields(line)
		a, err := ParseAlg(fs[0])
		if err != nil {
			t.Fatal(err)
		}
		old, err := ParseHex(a, fs[1])
		if err != nil {
			t.Fatal(err)
		}
		d, err := ParseHex(a, fs[2])
		if err != nil {
			t.Fatal(err)
		}
		want, _ := ParseHex(a, fs[3])
		got, err := Extend(old, d.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Equal(want) {
			t.Errorf("Extend(%v, %x) = %v, want %v", old, d.Bytes, got, want)
		}
		e := NewExtender(old)
		if err := e.Extend(d.Bytes); err != nil {
			t.Fatal(err)
		}
		if !e.Value().Equal(want) {
			t.Errorf("Extender = %v, want %v", e.Value(), want)
		}
		n++
	}
	if n < 2 {
		t.Fatalf("only %d vectors read", n)
	}
}

func TestParseDigest(t *testing.T) {
	good := "sha256:" + strings.Repeat("ab", 32)
	d, err := ParseDigest(good)
	if err != nil {
		t.Fatal(err)
	}
	if d.String() != good || d.LogString() != "sha256/"+strings.Repeat("ab", 32) {
		t.Errorf("round trip: %s / %s", d.String(), d.LogString())
	}
	if d2, err := ParseDigest(d.LogString()); err != nil || !d2.Equal(d) {
		t.Errorf("ALG/HEX: %v %v", d2, err)
	}
	for _, c := range []struct {
		in   string
		want error
	}{
		{"sha256:" + strings.Repeat("ab", 31), ErrDigestSize},
		{"sha384:zz" + strings.Repeat("ab", 47), ErrMalformed},
		{"md5:" + strings.Repeat("ab", 16), ErrUnsupported},
		{"noalg", ErrMalformed},
		{"sha256:abc", ErrMalformed},
	} {
		_, err := ParseDigest(c.in)
		if !errors.Is(err, c.want) {
			t.Errorf("ParseDigest(%q) = %v, want %v", c.in, err, c.want)
		}
	}
	_, err = ParseDigest("sha384:" + strings.Repeat("00", 47))
	if err == nil || !strings.Contains(err.Error(), "48 bytes") {
		t.Errorf("size error should name the expected size: %v", err)
	}
}

func TestExtendWrongSize(t *testing.T) {
	if _, err := Extend(Zero(SHA384), make([]byte, 32)); !errors.Is(err, ErrDigestSize) {
		t.Errorf("got %v", err)
	}
}

func TestAlgs(t *testing.T) {
	for _, a := range Algs() {
		b, err := ParseAlg(a.String())
		if err != nil || b != a {
			t.Errorf("%v: %v %v", a, b, err)
		}
		if got := len(a.Sum([]byte("x")).Bytes); got != a.Size() {
			t.Errorf("%v: size %d want %d", a, got, a.Size())
		}
	}
	if SM3256.Hash() != 0 || SHA384.Hash() == 0 {
		t.Error("Hash mapping")
	}
}

func TestVirtualNames(t *testing.T) {
	for _, ok := range []string{"mr_ima", "mr_ctr.abc-1", "mr_a"} {
		if !IsVirtualName(ok) {
			t.Errorf("%q should be valid", ok)
		}
	}
	for _, bad := range []string{"mr_", "rtmr3", "mr_IMA", "mr_a b", "mr_a\nmr_b extend", "mr_" + strings.Repeat("a", 61)} {
		if IsVirtualName(bad) {
			t.Errorf("%q should be invalid", bad)
		}
	}
}

func FuzzParseDigest(f *testing.F) {
	f.Add("sha384:" + strings.Repeat("00", 48))
	f.Add("sha1/" + strings.Repeat("ff", 20))
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDigest(s)
		if err != nil {
			return
		}
		if len(d.Bytes) != d.Alg.Size() {
			t.Fatalf("parsed %q to %d bytes for %v", s, len(d.Bytes), d.Alg)
		}
		d2, err := ParseDigest(d.String())
		if err != nil || !d2.Equal(d) {
			t.Fatalf("round trip of %q failed", s)
		}
	})
}
