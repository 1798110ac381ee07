package ima

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/internal/imatest"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	decredecdsa "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
)

// TestKeylimeSignatures verifies the two real signatures of keylime's
// OpenPOWER fragment (RSA-2048 keyid f3452d23, secp256k1 keyid 531f4025,
// as SOURCES.md states), and requires the tampered signature to fail.
func TestKeylimeSignatures(t *testing.T) {
	dir := filepath.Join(corpus.Require(t), "keylime")
	keys, err := LoadKeys(filepath.Join(dir, "ima-key-rsa2048-pub.pem"), filepath.Join(dir, "ima-key-ec-pub.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[uint32]string{}
	for _, k := range keys {
		ids[k.ID] = filepath.Base(k.Source)
	}
	if ids[0xf3452d23] != "ima-key-rsa2048-pub.pem" || ids[0x531f4025] != "ima-key-ec-pub.pem" {
		t.Fatalf("key IDs %x", ids)
	}
	if _, ok := keys[1].Public.(*secp256k1.PublicKey); !ok {
		t.Fatalf("ec key is %T", keys[1].Public)
	}
	es, err := readAll(t, openList(t, filepath.Join(dir, "ima-sig-openpower-fragment.ascii"), eventlog.FormatAuto))
	if err != nil {
		t.Fatal(err)
	}
	verified := map[string]bool{}
	for _, e := range es {
		err := VerifySignature(e, keys)
		switch {
		case len(e.Signature()) == 0:
			if !errors.Is(err, ErrNoSignature) {
				t.Errorf("%s: %v", e.FileName(), err)
			}
		case err != nil:
			t.Errorf("%s: %v", e.FileName(), err)
		default:
			verified[e.FileName()] = true
		}
		// Each key alone: the other signature's key is unknown.
		if len(e.Signature()) > 0 {
			if err := VerifySignature(e, keys[:0]); !errors.Is(err, ErrUnknownKey) {
				t.Errorf("%s without keys: %v", e.FileName(), err)
			}
		}
	}
	if !verified["/usr/bin/dd"] || !verified["/usr/bin/zmore"] {
		t.Fatalf("verified %v, want /usr/bin/dd (RSA) and /usr/bin/zmore (secp256k1)", verified)
	}

	// A signature over another digest fails.
	for _, e := range es {
		if len(e.Signature()) == 0 {
			continue
		}
		c := e.Clone()
		_, d, _ := c.FileDigest()
		d[0] ^= 1
		if err := VerifySignature(c, keys); !errors.Is(err, ErrBadSignature) || !errors.Is(err, eventlog.ErrMismatch) {
			t.Errorf("%s with a changed digest: %v", e.FileName(), err)
		}
	}
	bad, err := readAll(t, openList(t, filepath.Join(dir, "ima-sig-bad-signature-length.ascii"), eventlog.FormatAuto))
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifySignature(bad[0], keys); !errors.Is(err, mr.ErrMalformed) {
		t.Fatalf("bad signature length: %v", err)
	}
}

// sigField builds an IMA v2 signature.
func sigField(hashAlgo uint8, keyID uint32, sig []byte) []byte {
	b := []byte{3, 2, hashAlgo, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[3:], keyID)
	binary.BigEndian.PutUint16(b[7:], uint16(len(sig)))
	return append(b, sig...)
}

// TestSignatureKinds signs generated entries with RSA, P-256, P-384 and
// secp256k1 keys (keys marshalled to PEM and read back, so the key IDs are
// the ones ParseKeys computes, checked against keyIDByHand) and verifies them, in ima-sig and ima-modsig entries.
func TestSignatureKinds(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	k1, _ := secp256k1.GeneratePrivateKey()

	digest := sha256.Sum256([]byte("file"))
	signers := map[string]struct {
		pub  []byte // SubjectPublicKeyInfo DER
		sign func() []byte
	}{
		"rsa": {must(x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)), func() []byte {
			s, _ := rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA256, digest[:])
			return s
		}},
		"p256": {must(x509.MarshalPKIXPublicKey(&p256.PublicKey)), func() []byte {
			s, _ := ecdsa.SignASN1(rand.Reader, p256, digest[:])
			return s
		}},
		"p384": {must(x509.MarshalPKIXPublicKey(&p384.PublicKey)), func() []byte {
			s, _ := ecdsa.SignASN1(rand.Reader, p384, digest[:])
			return s
		}},
		"secp256k1": {secp256k1SPKI(k1.PubKey()), func() []byte {
			return decredecdsa.Sign(k1, digest[:]).Serialize()
		}},
	}
	for name, s := range signers {
		t.Run(name, func(t *testing.T) {
			keys, err := ParseKeys(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: s.pub}), name)
			if err != nil {
				t.Fatal(err)
			}
			id := keyIDByHand(t, s.pub)
			if keys[0].ID != id {
				t.Fatalf("key ID %08x, want %08x", keys[0].ID, id)
			}
			for _, tmpl := range []string{"ima-sig", "ima-modsig"} {
				spec := imatest.Spec{Template: tmpl, FileAlg: "sha256", Digest: digest[:], Name: "/bin/x", Sig: sigField(4, id, s.sign())}
				list := imatest.Binary([]imatest.Spec{spec}, binary.LittleEndian)
				es, err := readAll(t, NewBinaryReader(bytes.NewReader(list), Options{}))
				if err != nil {
					t.Fatal(err)
				}
				if err := VerifySignature(es[0], keys); err != nil {
					t.Fatalf("%s: %v", tmpl, err)
				}
				wrong := spec
				wrong.Sig = sigField(4, id, signers["rsa"].sign())
				if name == "rsa" {
					wrong.Sig = sigField(4, id, signers["p256"].sign())
				}
				es, _ = readAll(t, NewBinaryReader(bytes.NewReader(imatest.Binary([]imatest.Spec{wrong}, binary.LittleEndian)), Options{}))
				if err := VerifySignature(es[0], keys); !errors.Is(err, ErrBadSignature) {
					t.Fatalf("%s with another key's signature: %v", tmpl, err)
				}
			}
		})
	}
}

// keyIDByHand computes the key ID as evmctl does (calc_keyid_v2: the last
// 4 bytes of sha1 over the public key bits of the SPKI), walking the DER by
// hand rather than through ParseKeys' asn1 code. (The keylime test checks
// the rule itself against published key IDs.)
func keyIDByHand(t *testing.T, spki []byte) uint32 {
	t.Helper()
	// Walk the DER by hand: SEQUENCE { SEQUENCE alg, BIT STRING key }.
	b := spki
	skip := func(b []byte) (content, rest []byte) {
		l := int(b[1])
		h := 2
		if l&0x80 != 0 {
			n := l & 0x7f
			l = 0
			for i := range n {
				l = l<<8 | int(b[2+i])
			}
			h = 2 + n
		}
		return b[h : h+l], b[h+l:]
	}
	body, _ := skip(b)
	_, rest := skip(body)
	bits, _ := skip(rest)
	h := sha1Sum(bits[1:]) // drop the unused-bits byte
	return binary.BigEndian.Uint32(h[16:])
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func secp256k1SPKI(pub *secp256k1.PublicKey) []byte {
	// SEQUENCE { SEQUENCE { ecPublicKey, secp256k1 }, BIT STRING uncompressed point }
	alg := []byte{0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a}
	pt := pub.SerializeUncompressed()
	bits := append([]byte{0x03, byte(len(pt) + 1), 0}, pt...)
	body := append(alg, bits...)
	return append([]byte{0x30, byte(len(body))}, body...)
}

// TestBootAggregate checks boot_aggregate entries under both kernel rules:
// the real kernel list against its TPM's PCRs (PCR 0-9), and ima-evm-utils'
// samples against the PCR values of their firmware logs from EXPECTED.json
// (one PCR 0-9, one PCR 0-7).
func TestBootAggregate(t *testing.T) {
	_, es := realBinary(t)
	pcrs := map[mr.Alg]map[int]mr.Digest{mr.SHA1: pcrsTxt(t, mr.SHA1), mr.SHA256: pcrsTxt(t, mr.SHA256)}
	rule, err := CheckBootAggregate("real", es[0], pcrs)
	if err != nil || rule != PCRs0to9 {
		t.Fatalf("real kernel boot_aggregate: %v, %v", rule, err)
	}
	bad := map[mr.Alg]map[int]mr.Digest{mr.SHA256: {}}
	for k, v := range pcrs[mr.SHA256] {
		bad[mr.SHA256][k] = v
	}
	bad[mr.SHA256][4] = mr.SHA256.Sum([]byte("other"))
	var m *eventlog.Mismatch
	if _, err := CheckBootAggregate("real", es[0], bad); !errors.As(err, &m) || m.Record != 0 {
		t.Fatalf("changed PCR 4: %v", err)
	}

	dir := filepath.Join(corpus.Require(t), "ima-evm-utils")
	raw, err := os.ReadFile(filepath.Join(dir, "EXPECTED.json"))
	if err != nil {
		t.Fatal(err)
	}
	var exp map[string]struct {
		Final map[string]string `json:"replayed_final"`
	}
	var loose map[string]json.RawMessage
	if err := json.Unmarshal(raw, &loose); err != nil {
		t.Fatal(err)
	}
	exp = map[string]struct {
		Final map[string]string `json:"replayed_final"`
	}{}
	for k, v := range loose {
		var x struct {
			Final map[string]string `json:"replayed_final"`
		}
		if json.Unmarshal(v, &x) == nil && x.Final != nil {
			exp[k] = x
		}
	}
	for _, c := range []struct {
		list, bios string
		rule       BootAggregateRule
	}{
		{"sample-ascii_runtime_measurements-pcrs-8-9", "sample-binary_bios_measurements-pcrs-8-9", PCRs0to9},
		{"test_ascii_runtime_measurements", "test_binary_bios_measurements", PCRs0to7},
	} {
		bank := map[int]mr.Digest{}
		for k, v := range exp[c.bios].Final {
			if idx, ok := strings.CutPrefix(k, "sha256:"); ok {
				p, _ := parsePCRName("pcr" + idx)
				bank[p], _ = mr.ParseHex(mr.SHA256, v)
			}
		}
		if len(bank) < 8 {
			t.Fatalf("%s: %d sha256 PCRs in EXPECTED.json", c.bios, len(bank))
		}
		es, err := readAll(t, openList(t, filepath.Join(dir, c.list), eventlog.FormatAuto))
		if err != nil {
			t.Fatal(err)
		}
		rule, err := CheckBootAggregate(c.list, es[0], map[mr.Alg]map[int]mr.Digest{mr.SHA256: bank})
		if err != nil || rule != c.rule {
			t.Errorf("%s: rule %v, %v; want %v", c.list, rule, err, c.rule)
		}
	}
}

func sha1Sum(b []byte) [20]byte { return sha1.Sum(b) }
