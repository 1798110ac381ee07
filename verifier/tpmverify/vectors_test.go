package tpmverify_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
)

// Vectors made by tpm2-tools against swtpm (testdata/tpm2-tools/README.md);
// these tests need no TPM.

var vectorNonce, _ = hex.DecodeString("0011223344556677")

func vec(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "tpm2-tools", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// expectedPCR is the value the README's extends give, computed with mr.
func expectedPCR(a mr.Alg, i int) []byte {
	z := mr.Zero(a)
	switch {
	case i == 0 && (a == mr.SHA1 || a == mr.SHA256):
		v, _ := mr.Extend(z, a.Sum([]byte("fw")).Bytes)
		return v.Bytes
	case i == 4 && a == mr.SHA256:
		v, _ := mr.Extend(z, a.Sum([]byte("boot")).Bytes)
		return v.Bytes
	case i >= 17 && i <= 22:
		return bytes.Repeat([]byte{0xff}, a.Size()) // PC Client: locality 4..1 PCRs start at all ones
	}
	return z.Bytes
}

func TestVectors(t *testing.T) {
	for _, c := range []struct {
		set, ak string
		alg     mr.Alg
		n       int
	}{{"ecc-sha256", "ecc-ak.pem", mr.SHA256, 24}, {"rsa-sha1", "rsa-ak.pem", mr.SHA1, 8}} {
		t.Run(c.set, func(t *testing.T) {
			q, err := tpmverify.NewQuote(vec(t, c.set+".attest"), vec(t, c.set+".sig"), vec(t, c.set+".pcrs"))
			if err != nil {
				t.Fatal(err)
			}
			if q.Alg != c.alg || len(q.PCRs) != c.n {
				t.Fatalf("quote of %v with %d PCRs", q.Alg, len(q.PCRs))
			}
			for i, v := range q.PCRs {
				if want := expectedPCR(c.alg, i); !bytes.Equal(v, want) {
					t.Errorf("pcr%d: %x, want %x", i, v, want)
				}
			}
			ak := vec(t, c.ak)
			if err := tpmverify.VerifyQuotePEM(ak, q, vectorNonce); err != nil {
				t.Fatalf("VerifyQuote: %v", err)
			}
			if err := tpmverify.VerifyQuotePEM(ak, q, vectorNonce[:7]); !errors.Is(err, tpmverify.ErrNonceMismatch) {
				t.Errorf("short nonce: %v", err)
			}
			// Round trip of the PCR file: our writer gives tpm2_quote's bytes.
			pf, err := tpmverify.MarshalPCRFile(q)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pf, vec(t, c.set+".pcrs")) {
				t.Error("MarshalPCRFile differs from tpm2_quote's PCR file")
			}
			// Tampering.
			other := vec(t, "rsa-ak.pem")
			if c.ak == "rsa-ak.pem" {
				other = vec(t, "ecc-ak.pem")
			}
			if err := tpmverify.VerifyQuotePEM(other, q, vectorNonce); !errors.Is(err, tpmverify.ErrBadSignature) {
				t.Errorf("other AK: %v", err)
			}
			bad := q
			bad.Attest = append([]byte(nil), q.Attest...)
			bad.Attest[len(bad.Attest)-1] ^= 1
			if err := tpmverify.VerifyQuotePEM(ak, bad, vectorNonce); !errors.Is(err, tpmverify.ErrBadSignature) {
				t.Errorf("changed attest: %v", err)
			}
			bad = q
			bad.PCRs = map[int][]byte{}
			for i, v := range q.PCRs {
				bad.PCRs[i] = v
			}
			delete(bad.PCRs, 3)
			if err := tpmverify.VerifyQuotePEM(ak, bad, vectorNonce); !errors.Is(err, tpmverify.ErrPCRMismatch) {
				t.Errorf("missing PCR: %v", err)
			}
			bad.PCRs[3] = q.PCRs[3]
			if c.n < 24 {
				bad.PCRs[c.n] = q.PCRs[0] // a value for a PCR the quote does not cover
			} else {
				bad.Alg = mr.SHA1 // values claimed for a bank the quote does not cover
			}
			if err := tpmverify.VerifyQuotePEM(ak, bad, vectorNonce); !errors.Is(err, tpmverify.ErrPCRMismatch) {
				t.Errorf("claim outside the quote: %v", err)
			}
		})
	}
}

func TestVectorTwoBanks(t *testing.T) {
	attest, sig := vec(t, "rsa-twobank.attest"), vec(t, "rsa-twobank.sig")
	ak, err := tpmverify.ParseAKPublic(vec(t, "rsa-ak.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := tpmverify.VerifySignature(ak, attest, sig); err != nil {
		t.Fatal(err)
	}
	info, err := tpmverify.ParseQuoteInfo(attest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(info.ExtraData, vectorNonce) || len(info.Selection) != 2 {
		t.Fatalf("quote info: %+v", info)
	}
	vals, err := tpmverify.ParsePCRFile(vec(t, "rsa-twobank.pcrs"))
	if err != nil {
		t.Fatal(err)
	}
	for a, m := range vals {
		for i, v := range m {
			if !bytes.Equal(v, expectedPCR(a, i)) {
				t.Errorf("%v pcr%d: %x", a, i, v)
			}
		}
	}
	d, err := tpmverify.PCRDigest(mr.SHA256, info.Selection, vals)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d, info.PCRDigest) {
		t.Errorf("PCR digest %x, quote has %x", d, info.PCRDigest)
	}
	pf, err := tpmverify.MarshalPCRValues(vals)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pf, vec(t, "rsa-twobank.pcrs")) {
		t.Error("MarshalPCRValues differs from tpm2_quote's two-bank file")
	}
}

func TestParseErrors(t *testing.T) {
	attest := vec(t, "ecc-sha256.attest")
	for n := 0; n < len(attest); n++ {
		if _, err := tpmverify.ParseQuoteInfo(attest[:n]); !errors.Is(err, mr.ErrMalformed) {
			t.Fatalf("attest cut at %d: %v", n, err)
		}
	}
	if _, err := tpmverify.ParseQuoteInfo(append(attest, 0)); !errors.Is(err, mr.ErrMalformed) {
		t.Errorf("trailing byte: %v", err)
	}
	m := append([]byte(nil), attest...)
	m[0] = 0
	if _, err := tpmverify.ParseQuoteInfo(m); !errors.Is(err, mr.ErrMalformed) {
		t.Errorf("bad magic: %v", err)
	}
	sig := vec(t, "ecc-sha256.sig")
	for n := 0; n < len(sig); n++ {
		if _, err := tpmverify.ParseSignature(sig[:n]); err == nil {
			t.Fatalf("signature cut at %d parses", n)
		}
	}
	pcrs := vec(t, "ecc-sha256.pcrs")
	for _, n := range []int{0, 10, 135, 136, 137, len(pcrs) - 1} {
		if _, err := tpmverify.ParsePCRFile(pcrs[:n]); !errors.Is(err, mr.ErrMalformed) {
			t.Errorf("PCR file cut at %d: %v", n, err)
		}
	}
	if _, err := tpmverify.ParseAKPublic([]byte("nope")); !errors.Is(err, mr.ErrMalformed) {
		t.Errorf("bad PEM: %v", err)
	}
}

func seeds(f *testing.F, suffix string) {
	ms, _ := filepath.Glob(filepath.Join("testdata", "tpm2-tools", "*"+suffix))
	if len(ms) == 0 {
		f.Fatalf("no seed testdata/tpm2-tools/*%s", suffix)
	}
	for _, m := range ms {
		b, err := os.ReadFile(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzParseQuoteInfo(f *testing.F) {
	seeds(f, ".attest")
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := tpmverify.ParseQuoteInfo(b)
		if err == nil && q == nil {
			t.Fatal("nil without error")
		}
	})
}

func FuzzParseSignature(f *testing.F) {
	seeds(f, ".sig")
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := tpmverify.ParseSignature(b)
		if err == nil && s == nil {
			t.Fatal("nil without error")
		}
	})
}

func FuzzParsePCRFile(f *testing.F) {
	seeds(f, ".pcrs")
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := tpmverify.ParsePCRFile(b)
		if err != nil {
			return
		}
		// What parses marshals and parses back to the same values.
		out, err := tpmverify.MarshalPCRValues(v)
		if err != nil {
			return // e.g. a bank of an unknown algorithm
		}
		v2, err := tpmverify.ParsePCRFile(out)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		for a, m := range v {
			for i, d := range m {
				if !bytes.Equal(v2[a][i], d) {
					t.Fatalf("%v pcr%d changed", a, i)
				}
			}
		}
	})
}

func FuzzVerifyQuote(f *testing.F) {
	f.Add(vec(f, "ecc-sha256.attest"), vec(f, "ecc-sha256.sig"), vec(f, "ecc-sha256.pcrs"))
	f.Add(vec(f, "rsa-sha1.attest"), vec(f, "rsa-sha1.sig"), vec(f, "rsa-sha1.pcrs"))
	eccAK, rsaAK := vec(f, "ecc-ak.pem"), vec(f, "rsa-ak.pem")
	f.Fuzz(func(t *testing.T, attest, sig, pcrs []byte) {
		q, err := tpmverify.NewQuote(attest, sig, pcrs)
		if err != nil {
			return
		}
		for _, ak := range [][]byte{eccAK, rsaAK} {
			tpmverify.VerifyQuotePEM(ak, q, vectorNonce)
		}
	})
}
