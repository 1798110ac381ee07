package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog/tcg"
	"github.com/ccmr-dev/ccmr/mr"
)

// verify --allow-unquoted-log-registers: a quote of PCR 0-5 (the selection
// tpm2_quote was given) next to the real SeaBIOS log, whose PCR 6 and 7
// events it does not cover, exits 1 naming them; with the flag it exits 0
// and the verdict line says what was taken on trust.
func TestVerifyUnquotedLogRegisters(t *testing.T) {
	f, err := os.Open("../../testdata/e2e/guest/bundle.json")
	if err != nil {
		t.Fatal(err)
	}
	e2e, err := bundle.Read(f, "bundle.json")
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	var fw []byte
	for _, l := range e2e.Logs {
		if l.Format == "tcg2" {
			fw = l.Data
		}
	}
	l, err := tcg.Parse("fw", fw, "tcg2")
	if err != nil {
		t.Fatal(err)
	}
	res, err := l.Replay()
	if err != nil {
		t.Fatal(err)
	}
	pcrs := map[int][]byte{}
	for _, v := range res.Registers {
		var i int
		if _, err := fmt.Sscanf(v.Register.Name, "pcr%d", &i); err == nil && v.Digest.Alg == mr.SHA256 && i < 6 {
			pcrs[i] = v.Digest.Bytes
		}
	}
	nonce := []byte("cli coverage")
	q, ak := softQuote(t, nonce, pcrs)
	b := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTPM, Nonce: nonce,
		Evidence: bundle.Evidence{PublicKey: string(ak), TPMQuotes: []bundle.TPMQuote{q}},
		Logs:     []bundle.Log{{Format: "tcg2", Source: "firmware", Data: fw}}}
	dir := t.TempDir()
	bundle, akFile := filepath.Join(dir, "b.json"), filepath.Join(dir, "ak.pem")
	bf, err := os.Create(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Write(bf); err != nil {
		t.Fatal(err)
	}
	bf.Close()
	if err := os.WriteFile(akFile, ak, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"verify", bundle, "--trust-ak", akFile, "--nonce", hex.EncodeToString(nonce)}
	out, _, code := ccmrRun(t, nil, args...)
	if code != 1 || !strings.Contains(out, "events on pcr6, pcr7, which the evidence does not cover") {
		t.Fatalf("without the flag: exit %d\n%s", code, out)
	}
	out, _, code = ccmrRun(t, nil, append(args, "--allow-unquoted-log-registers")...)
	if code != 0 || !strings.Contains(out, "TRUSTED (weakened: logs[0] (tcg2): 2 events on pcr6, pcr7, which the evidence does not cover, taken on trust)") {
		t.Fatalf("with --allow-unquoted-log-registers: exit %d\n%s", code, out)
	}
}

// softQuote signs, with a software ECDSA P-256 key standing in for a pinned
// TPM AK, a TPMS_ATTEST quoting the given sha256 PCRs with nonce as the
// qualifying data (what `tpm2_quote -l sha256:<those PCRs>` returns).
func softQuote(t *testing.T, nonce []byte, pcrs map[int][]byte) (bundle.TPMQuote, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	be16 := func(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
	be32 := func(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
	sized := func(b, v []byte) []byte { return append(be16(b, uint16(len(v))), v...) }
	var sel [3]byte
	h := sha256.New()
	for i := 0; i < 24; i++ {
		if v, ok := pcrs[i]; ok {
			sel[i/8] |= 1 << (i % 8)
			h.Write(v)
		}
	}
	a := be32(nil, 0xff544347) // TPM_GENERATED_VALUE
	a = be16(a, 0x8018)        // TPM_ST_ATTEST_QUOTE
	a = sized(a, nil)          // qualifiedSigner
	a = sized(a, nonce)        // extraData
	a = binary.BigEndian.AppendUint64(a, 1000)
	a = be32(a, 1)
	a = be32(a, 0)
	a = append(a, 1)
	a = binary.BigEndian.AppendUint64(a, 0x2000)
	a = be32(a, 1)
	a = be16(a, 0x000b) // sha256 bank
	a = append(a, 3)
	a = append(a, sel[:]...)
	a = sized(a, h.Sum(nil))
	dg := sha256.Sum256(a)
	r, s, err := ecdsa.Sign(rand.Reader, key, dg[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := be16(nil, 0x0018)
	sig = be16(sig, 0x000b)
	sig = sized(sig, r.FillBytes(make([]byte, 32)))
	sig = sized(sig, s.FillBytes(make([]byte, 32)))
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	q := bundle.TPMQuote{Alg: "sha256", Attest: a, Signature: sig, PCRs: map[string]string{}}
	for i, v := range pcrs {
		q.PCRs[fmt.Sprint(i)] = hex.EncodeToString(v)
	}
	return q, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}
