package ear

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"

	"github.com/ccmr-dev/ccmr/mr"
)

// Key is a signing key for results: ES256 (P-256), ES384 (P-384) or EdDSA
// (Ed25519).
type Key struct {
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

// Algorithm is the JWS algorithm the key signs with.
func (k *Key) Algorithm() string { return string(k.alg) }

// Public is the key's public half, what a relying party verifies with.
func (k *Key) Public() crypto.PublicKey { return k.priv.Public() }

// ParseKey reads a private key from PEM: one "PRIVATE KEY" (PKCS #8) or
// "EC PRIVATE KEY" (SEC 1) block, after an optional "EC PARAMETERS" block,
// and nothing after it. Other key types and
// curves are refused, naming what was found: a result signed with a key a
// relying party does not expect is no result.
func ParseKey(data []byte) (*Key, error) {
	blk, rest := pem.Decode(data)
	if blk != nil && blk.Type == "EC PARAMETERS" {
		// openssl ecparam -genkey writes the curve's OID before the key;
		// the key names its curve itself.
		blk, rest = pem.Decode(rest)
	}
	if blk == nil {
		return nil, fmt.Errorf("%w: no PEM block", mr.ErrMalformed)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		// A second key would be ignored without a word.
		return nil, fmt.Errorf("%w: data after the first PEM block (one key per file)", mr.ErrMalformed)
	}
	if _, enc := blk.Headers["Proc-Type"]; enc {
		return nil, fmt.Errorf("%w: encrypted PEM key: give an unencrypted one", mr.ErrMalformed)
	}
	var key any
	var err error
	switch blk.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("%w: PEM block %q: want PRIVATE KEY or EC PRIVATE KEY", mr.ErrMalformed, blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", mr.ErrMalformed, blk.Type, err)
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			return &Key{alg: jose.ES256, priv: k}, nil
		case elliptic.P384():
			return &Key{alg: jose.ES384, priv: k}, nil
		}
		return nil, fmt.Errorf("%w: ECDSA key on %s: want P-256 (ES256) or P-384 (ES384)", mr.ErrMalformed, k.Curve.Params().Name)
	case ed25519.PrivateKey:
		return &Key{alg: jose.EdDSA, priv: k}, nil
	}
	return nil, fmt.Errorf("%w: %T key: want ECDSA P-256, P-384 or Ed25519", mr.ErrMalformed, key)
}

// Sign returns the result as a JWS compact serialization (a JWT: header
// typ "JWT", kid the key's RFC 7638 SHA-256 thumbprint).
func Sign(r *Result, k *Key) (string, error) {
	if r == nil || k == nil {
		return "", errors.New("ear: nothing to sign")
	}
	payload, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("ear: claims: %w", err)
	}
	pub := jose.JSONWebKey{Key: k.Public()}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("ear: key thumbprint: %w", err)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), base64.RawURLEncoding.EncodeToString(tp))
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv}, opts)
	if err != nil {
		return "", fmt.Errorf("ear: signer: %w", err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("ear: signing: %w", err)
	}
	return jws.CompactSerialize()
}
