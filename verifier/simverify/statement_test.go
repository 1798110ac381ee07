package simverify

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/mr"
)

// goldenDir holds statements made by OpenSSL and Python, not by this code
// (backend/sim/testdata/mkgolden.sh, which also writes the sim state files).
const goldenDir = "../../backend/sim/testdata"

// fixedTime is the time in the golden statements.
var fixedTime = time.Date(2025, 6, 1, 12, 34, 56, 789000000, time.UTC)

// Statements signed by OpenSSL over bytes Python wrote (testdata/mkgolden.sh)
// verify and parse to what Python put in them.
func TestGoldenStatements(t *testing.T) {
	pub, err := os.ReadFile(goldenDir + "/golden-pub.pem")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []Layout{LayoutTDX, LayoutTPM} {
		rep, err1 := os.ReadFile(goldenDir + "/golden-" + string(l) + ".json")
		sig, err2 := os.ReadFile(goldenDir + "/golden-" + string(l) + ".sig")
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		s, err := VerifyStatement(rep, sig, pub)
		if err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		if s.Layout != l || !s.Time.Equal(fixedTime) || !bytes.Equal(s.Nonce, mr.SHA256.Sum([]byte("golden nonce")).Bytes) {
			t.Errorf("%s: layout %s time %v nonce %x", l, s.Layout, s.Time, s.Nonce)
		}
		first := s.Values[0]
		want := mr.SHA384.Sum([]byte("golden mrtd"))
		if l == LayoutTPM {
			want = mr.SHA1.Sum([]byte("golden pcr0"))
		}
		if !first.Digest.Equal(want) {
			t.Errorf("%s: first register %s = %v, want %v", l, first.Register.Name, first.Digest, want)
		}
		if !bytes.Equal(s.Marshal(), rep) {
			t.Errorf("%s: Marshal differs from Python's bytes", l)
		}
		bad := bytes.Replace(rep, []byte(`"nonce":"`), []byte(`"nonce":"00`), 1)
		if _, err := VerifyStatement(bad[:len(rep)], sig, pub); !errors.Is(err, ErrSignature) {
			t.Errorf("%s: tampered golden: %v", l, err)
		}
	}
}

func TestParseStatementStrict(t *testing.T) {
	good, err := os.ReadFile(goldenDir + "/golden-tdx.json")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"space":     bytes.Replace(good, []byte(`,"layout"`), []byte(`, "layout"`), 1),
		"newline":   append(append([]byte{}, good...), '\n'),
		"order":     bytes.Replace(good, []byte(`"format":"ccmr-sim-attestation/v1","layout":"tdx"`), []byte(`"layout":"tdx","format":"ccmr-sim-attestation/v1"`), 1),
		"dup":       bytes.Replace(good, []byte(`"layout":"tdx"`), []byte(`"layout":"tpm","layout":"tdx"`), 1),
		"unknown":   bytes.Replace(good, []byte(`"layout":"tdx"`), []byte(`"layout":"tdx","x":1`), 1),
		"format":    bytes.Replace(good, []byte(`/v1`), []byte(`/v2`), 1),
		"index":     bytes.Replace(good, []byte(`"index":0`), []byte(`"index":1`), 1),
		"time":      bytes.Replace(good, []byte(`.789Z`), []byte(`.789+00:00`), 1),
		"upper":     bytes.Replace(good, []byte(`"nonce":"a`), []byte(`"nonce":"A`), 1),
		"oddnonce":  bytes.Replace(good, []byte(`"nonce":"a`), []byte(`"nonce":"`), 1),
		"layout":    bytes.Replace(good, []byte(`"layout":"tdx"`), []byte(`"layout":"tpm"`), 1),
		"empty":     {},
		"truncated": good[:len(good)-2],
	} {
		if _, err := ParseStatement(b); !errors.Is(err, mr.ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzParseStatement: no panic, and whatever parses is canonical (re-encodes
// to the same bytes).
func FuzzParseStatement(f *testing.F) {
	for _, n := range []string{"golden-tdx.json", "golden-tpm.json"} {
		b, err := os.ReadFile(goldenDir + "/" + n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStatement(b)
		if err != nil {
			return
		}
		if !bytes.Equal(s.Marshal(), b) {
			t.Fatalf("accepted non-canonical statement %q", b)
		}
	})
}
