package sim

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/ccmr-dev/ccmr/internal/flock"
	"github.com/ccmr-dev/ccmr/internal/safefs"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/simverify"
)

// MaxNonce is the longest nonce Attest accepts, in bytes.
const MaxNonce = simverify.MaxNonce

// Attest returns evidence binding nonce (at most MaxNonce bytes) to the
// current values of every reported register: the canonical Statement as
// Report, its ECDSA P-384 signature, and the signing key as PEM. The key is
// created in the state folder on first use.
func (d *Device) Attest(ctx context.Context, nonce []byte) (*mr.Evidence, error) {
	if len(nonce) > MaxNonce {
		return nil, fmt.Errorf("%w: nonce is %d bytes, at most %d", mr.ErrMalformed, len(nonce), MaxNonce)
	}
	key, err := d.key(ctx)
	if err != nil {
		return nil, err
	}
	st, err := d.State(ctx)
	if err != nil {
		return nil, err
	}
	s := &simverify.Statement{Layout: st.Layout, Nonce: append([]byte{}, nonce...), Time: d.now().UTC()}
	for _, v := range st.Values {
		if v.Register.Flags&mr.Reported != 0 {
			s.Values = append(s.Values, v)
		}
	}
	report := s.Marshal()
	h := sha512.Sum384(report)
	sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
	if err != nil {
		return nil, fmt.Errorf("sim: sign: %w", err)
	}
	pub, err := publicPEM(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	return &mr.Evidence{Platform: mr.PlatformSim, Nonce: s.Nonce, Time: s.Time, Report: report,
		Signature: sig, PublicKey: pub, Registers: s.Values}, nil
}

// PublicKeyPEM returns the attestation public key as PEM "PUBLIC KEY",
// creating the key pair on first use. This is the key a verifier pins.
func (d *Device) PublicKeyPEM(ctx context.Context) ([]byte, error) {
	key, err := d.key(ctx)
	if err != nil {
		return nil, err
	}
	return publicPEM(&key.PublicKey)
}

func publicPEM(k *ecdsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return nil, fmt.Errorf("sim: public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// key loads the attestation key, or creates it under the exclusive lock
// when it is missing, so that processes attesting at once agree on one key.
func (d *Device) key(ctx context.Context) (*ecdsa.PrivateKey, error) {
	p := filepath.Join(d.dir, keyFile)
	k, err := loadKey(p)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	lk, err := openLock(ctx, filepath.Join(d.dir, lockFile), flock.Exclusive)
	if err != nil {
		return nil, err
	}
	defer lk.Close()
	k, err = loadKey(p)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sim: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("sim: key: %w", err)
	}
	var buf bytes.Buffer
	if err := pem.Encode(&buf, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		return nil, fmt.Errorf("sim: key: %w", err)
	}
	if err := replaceFile(d.dir, keyTemp, keyFile, buf.Bytes(), true); err != nil {
		return nil, fmt.Errorf("sim: write key: %w", err)
	}
	return k, nil
}

// loadKey reads a PKCS#8 PEM P-384 private key, refusing a file that group
// or others may read.
func loadKey(p string) (*ecdsa.PrivateKey, error) {
	f, err := safefs.Open(p)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("sim: key %s has mode %04o, want 0600 (chmod 600 it or remove it)", p, fi.Mode().Perm())
	}
	b := make([]byte, 0, 512)
	buf := bytes.NewBuffer(b)
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	blk, _ := pem.Decode(buf.Bytes())
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w: sim key %s: no PEM PRIVATE KEY block", mr.ErrMalformed, p)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: sim key %s: %v", mr.ErrMalformed, p, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P384() {
		return nil, fmt.Errorf("%w: sim key %s: want ECDSA P-384, got %T", mr.ErrUnsupported, p, k)
	}
	return ek, nil
}
