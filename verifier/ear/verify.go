package ear

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// algorithms are the JWS algorithms Sign signs with (ParseKey's keys).
var algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.EdDSA}

// ParsePublicKey reads the public half of a signing key: one PEM "PUBLIC
// KEY" block (PKIX) and nothing after it, ECDSA P-256 or P-384 or Ed25519,
// the keys ParseKey accepts.
func ParsePublicKey(data []byte) (crypto.PublicKey, error) {
	blk, rest := pem.Decode(data)
	if blk == nil || blk.Type != "PUBLIC KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("want one PEM PUBLIC KEY block")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, errors.New("an ECDSA key that is not P-256 or P-384")
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("a %T key: want ECDSA P-256, P-384 or Ed25519", k)
	}
	return k, nil
}

// Verify checks token's signature under pub (one of the algorithms Sign
// uses) and returns its claims. It judges nothing they say: the caller
// compares the nonce, the appraisals and their status with what it asked.
func Verify(token string, pub crypto.PublicKey) (*Result, error) {
	jws, err := jose.ParseSigned(token, algorithms)
	if err != nil {
		return nil, fmt.Errorf("EAR: %w", err)
	}
	payload, err := jws.Verify(pub)
	if err != nil {
		return nil, fmt.Errorf("EAR: not signed by the key: %w", err)
	}
	var claims Result
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, fmt.Errorf("EAR: claims: %w", err)
	}
	return &claims, nil
}
