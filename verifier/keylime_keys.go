package verifier

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/mr"
)

// keylimeKeyring is Keylime's verification-keys member once its string is
// read as JSON (IMA_KEYRING_JSON_SCHEMA in keylime/ima/file_signatures.py).
type keylimeKeyring struct {
	Meta *struct {
		Version *int64 `json:"version"`
	} `json:"meta,omitempty"`
	KeyIDs  *[]int64  `json:"keyids"`
	PubKeys *[]string `json:"pubkeys"`
}

// parseVerificationKeys reads the verification-keys member: empty, or a
// JSON object string with "pubkeys" (base64 DER SubjectPublicKeyInfo) and
// "keyids" (the IMA key ID of the key at the same index; a missing or zero
// one is computed from the key, as ImaKeyring.add_pubkey does). Keylime
// logs and skips a key it cannot load; ccmr refuses the policy instead.
func parseVerificationKeys(s string) ([]ima.Key, error) {
	if s == "" {
		return nil, nil
	}
	var kr keylimeKeyring
	if err := strictJSONValue([]byte(s), &kr, "runtime policy verification-keys"); err != nil {
		return nil, schemaErr("verification-keys is not a JSON object of keyids and pubkeys: %v", err)
	}
	if kr.KeyIDs == nil || kr.PubKeys == nil {
		return nil, schemaErr("verification-keys needs keyids and pubkeys")
	}
	if kr.Meta != nil && (kr.Meta.Version == nil || *kr.Meta.Version < 1) {
		return nil, schemaErr("verification-keys meta.version must be an integer of at least 1")
	}
	var keys []ima.Key
	for i, b64 := range *kr.PubKeys {
		der, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("%w: runtime policy verification-keys pubkeys[%d]: not base64: %v", mr.ErrMalformed, i, err)
		}
		// Keylime loads each with load_der_public_key: a
		// SubjectPublicKeyInfo, not a certificate (ima.ParseKeys reads
		// both, and secp256k1 keys, which Go's x509 does not).
		if _, err := x509.ParseCertificate(der); err == nil {
			return nil, fmt.Errorf("%w: runtime policy verification-keys pubkeys[%d] is a certificate; Keylime loads DER public keys only", mr.ErrMalformed, i)
		}
		ks, err := ima.ParseKeys(der, fmt.Sprintf("runtime policy verification-keys pubkeys[%d]", i))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", mr.ErrMalformed, err)
		}
		k := ks[0]
		if i < len(*kr.KeyIDs) && (*kr.KeyIDs)[i] != 0 {
			id := (*kr.KeyIDs)[i]
			if id < 0 || id > 0xffffffff {
				return nil, schemaErr("verification-keys keyids[%d] %d is not a 32-bit key ID", i, id)
			}
			k.ID = uint32(id)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// errNotKey: an ima-buf buffer that holds no key.
var errNotKey = errors.New("not a key")

// bufferKey reads an ima-buf buffer as Keylime's get_pubkey does
// (keylime/ima/file_signatures.py): a DER or PEM X.509 certificate (key ID
// from its subject key identifier), a DER or PEM public key, or a DER or
// PEM private key. errNotKey when it is none of these; an error naming the
// type when the key is neither RSA nor EC (Keylime fails the entry then).
func bufferKey(buf []byte, source string) (ima.Key, error) {
	der := buf
	if b, _ := pem.Decode(buf); b != nil {
		der = b.Bytes
	}
	if c, err := x509.ParseCertificate(der); err == nil {
		if !supportedKey(c.PublicKey) {
			return ima.Key{}, fmt.Errorf("%w: %s holds a certificate of a %T key (Keylime loads RSA and EC keys only)", mr.ErrUnsupported, source, c.PublicKey)
		}
		ks, err := ima.ParseKeys(der, source)
		if err != nil {
			return ima.Key{}, err
		}
		return ks[0], nil
	}
	if pub, err := x509.ParsePKIXPublicKey(der); err == nil {
		if !supportedKey(pub) {
			return ima.Key{}, fmt.Errorf("%w: %s holds a %T key (Keylime loads RSA and EC keys only)", mr.ErrUnsupported, source, pub)
		}
		ks, err := ima.ParseKeys(der, source)
		if err != nil {
			return ima.Key{}, err
		}
		return ks[0], nil
	}
	// Go refuses certificates and public keys on secp256k1, which
	// Keylime's cryptography reads: ima.ParseKeys reads them.
	if ks, err := ima.ParseKeys(buf, source); err == nil {
		return ks[0], nil
	}
	var priv any
	var err error
	if priv, err = x509.ParsePKCS8PrivateKey(der); err != nil {
		if priv, err = x509.ParsePKCS1PrivateKey(der); err != nil {
			priv, err = x509.ParseECPrivateKey(der)
		}
	}
	if err != nil {
		return ima.Key{}, errNotKey
	}
	var pub any
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		pub = &k.PublicKey
	case *ecdsa.PrivateKey:
		pub = &k.PublicKey
	default:
		return ima.Key{}, fmt.Errorf("%w: %s holds a %T private key (Keylime loads RSA and EC keys only)", mr.ErrUnsupported, source, priv)
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ima.Key{}, fmt.Errorf("%w: %s: %v", mr.ErrMalformed, source, err)
	}
	ks, err := ima.ParseKeys(spki, source)
	if err != nil {
		return ima.Key{}, err
	}
	return ks[0], nil
}

func supportedKey(pub any) bool {
	switch pub.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
		return true
	}
	return false
}
