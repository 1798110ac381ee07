package tpmverify_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
)

// attestOffsets returns where the safe flag and the PCR selection count sit
// in a TPMS_ATTEST quote: after magic, type, the two TPM2Bs, clock,
// resetCount and restartCount; the count follows safe and firmwareVersion.
func attestOffsets(t *testing.T, a []byte) (safe, count int) {
	t.Helper()
	off := 6
	for range 2 { // qualifiedSigner, extraData
		off += 2 + int(binary.BigEndian.Uint16(a[off:]))
	}
	safe = off + 8 + 4 + 4
	return safe, safe + 1 + 8
}

// go-tpm's tpm2.Unmarshal is lenient where ccmr is not: every hostile
// variant below decodes with go-tpm alone or is a structure of another
// kind, and each must be refused, naming the structure.
func TestParseHostile(t *testing.T) {
	attest := vec(t, "ecc-sha256.attest")
	safe, count := attestOffsets(t, attest)
	if q, err := tpmverify.ParseQuoteInfo(attest); err != nil || !q.Safe {
		t.Fatalf("the vector: %v (safe %v)", err, q != nil && q.Safe)
	}
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(attest)) }
	for name, b := range map[string][]byte{
		// TPMI_YES_NO is 0 or 1; 2 decodes as true in go-tpm.
		"safe=2": mod(func(b []byte) []byte { b[safe] = 2; return b }),
		// A TPMS_ATTEST of type certify, not quote.
		"type certify": mod(func(b []byte) []byte { binary.BigEndian.PutUint16(b[4:], 0x8017); return b }),
		// 17 selections: one more than TPML_PCR_SELECTION holds.
		"17 selections": mod(func(b []byte) []byte {
			tail := b[count+4:]
			sel := tail[:2+1+3] // the vector's one selection: hash, size 3, bitmap
			out := append(b[:count:count], 0, 0, 0, 17)
			for range 17 {
				out = append(out, sel...)
			}
			return append(out, tail[6:]...)
		}),
		// A pcrDigest whose size says one byte more than there is.
		"digest size +1": mod(func(b []byte) []byte {
			n := len(b)
			sz := binary.BigEndian.Uint16(b[n-32-2:])
			binary.BigEndian.PutUint16(b[n-32-2:], sz+1)
			return b
		}),
		"trailing": append(bytes.Clone(attest), 0),
	} {
		_, err := tpmverify.ParseQuoteInfo(b)
		t.Logf("%s: %v", name, err)
		if !errors.Is(err, mr.ErrMalformed) || !strings.Contains(err.Error(), "TPMS_ATTEST") {
			t.Errorf("%s: %v, want a malformed TPMS_ATTEST", name, err)
		}
	}

	sig := vec(t, "ecc-sha256.sig")
	if _, err := tpmverify.ParseSignature(sig); err != nil {
		t.Fatal(err)
	}
	hmac := bytes.Clone(sig)
	binary.BigEndian.PutUint16(hmac, 0x0005) // TPM_ALG_HMAC: go-tpm decodes it
	if _, err := tpmverify.ParseSignature(hmac); !errors.Is(err, mr.ErrUnsupported) {
		t.Errorf("HMAC signature: %v, want mr.ErrUnsupported", err)
	}
	rsa := bytes.Clone(sig)
	binary.BigEndian.PutUint16(rsa, 0x0014) // RSASSA over ECDSA's fields
	if _, err := tpmverify.ParseSignature(rsa); err == nil {
		t.Error("an ECDSA signature relabelled RSASSA parses")
	}
	if _, err := tpmverify.ParseSignature(append(bytes.Clone(sig), 0)); !errors.Is(err, mr.ErrMalformed) || !strings.Contains(err.Error(), "after the end") {
		t.Errorf("signature with a trailing byte: %v", err)
	}
	badHash := bytes.Clone(sig)
	binary.BigEndian.PutUint16(badHash[2:], 0x0099)
	if _, err := tpmverify.ParseSignature(badHash); err == nil {
		t.Error("a signature with hash 0x0099 parses")
	}
}
