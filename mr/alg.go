// Package mr holds what every part of ccmr shares about measurement registers:
// hash algorithms, digests and their text forms, register descriptors, the
// extend operation, the Device and Attester interfaces and the sentinel errors
// callers tell apart with errors.Is. It does no I/O.
package mr

import (
	"crypto"
	_ "crypto/sha1" // registers SHA-1 for crypto.Hash.New
	_ "crypto/sha256"
	_ "crypto/sha512"
	"fmt"
	"hash"
	"strings"

	"github.com/ccmr-dev/ccmr/internal/sm3"
)

// Alg is a hash algorithm, identified by its TPM_ALG_ID (TCG Algorithm Registry),
// the same number TCG2 event logs and the CC event log carry.
type Alg uint16

// The algorithms ccmr knows. Their values are the TPM_ALG_IDs.
const (
	SHA1   Alg = 0x0004
	SHA256 Alg = 0x000B
	SHA384 Alg = 0x000C
	SHA512 Alg = 0x000D
	SM3256 Alg = 0x0012
)

// Algs lists every supported algorithm, in TPM_ALG_ID order.
var algs = [...]Alg{SHA1, SHA256, SHA384, SHA512, SM3256}

// Algs returns every supported algorithm, in TPM_ALG_ID order.
func Algs() []Alg { return append([]Alg(nil), algs[:]...) }

// String returns the lowercase name used in ALG:HEX (sha1, sha256, sha384,
// sha512, sm3_256), or alg_0xNNNN for an algorithm ccmr does not know.
func (a Alg) String() string {
	switch a {
	case SHA1:
		return "sha1"
	case SHA256:
		return "sha256"
	case SHA384:
		return "sha384"
	case SHA512:
		return "sha512"
	case SM3256:
		return "sm3_256"
	}
	return fmt.Sprintf("alg_0x%04x", uint16(a))
}

// Valid reports whether ccmr can hash with a.
func (a Alg) Valid() bool { return a.Size() > 0 }

// Size returns the digest size in bytes, or 0 for an unknown algorithm.
func (a Alg) Size() int {
	switch a {
	case SHA1:
		return 20
	case SHA256, SM3256:
		return 32
	case SHA384:
		return 48
	case SHA512:
		return 64
	}
	return 0
}

// Hash returns the crypto.Hash for a, or 0 for SM3 (which the standard library
// lacks) and unknown algorithms.
func (a Alg) Hash() crypto.Hash {
	switch a {
	case SHA1:
		return crypto.SHA1
	case SHA256:
		return crypto.SHA256
	case SHA384:
		return crypto.SHA384
	case SHA512:
		return crypto.SHA512
	}
	return 0
}

// New returns a new hash.Hash for a. It panics on an unknown algorithm, as
// crypto.Hash.New does; check Valid first when a comes from input.
func (a Alg) New() hash.Hash {
	if a == SM3256 {
		return sm3.New()
	}
	h := a.Hash()
	if h == 0 {
		panic("mr: New of unknown algorithm " + a.String())
	}
	return h.New()
}

// Sum returns the digest of data under a.
func (a Alg) Sum(data []byte) Digest {
	h := a.New()
	h.Write(data)
	return Digest{Alg: a, Bytes: h.Sum(nil)}
}

// ParseAlg parses an algorithm name. It accepts the names String returns,
// case-insensitively, plus "sha-256"-style spellings and "sm3".
func ParseAlg(s string) (Alg, error) {
	switch strings.ReplaceAll(strings.ToLower(s), "-", "") {
	case "sha1":
		return SHA1, nil
	case "sha256":
		return SHA256, nil
	case "sha384":
		return SHA384, nil
	case "sha512":
		return SHA512, nil
	case "sm3_256", "sm3", "sm3256":
		return SM3256, nil
	}
	return 0, fmt.Errorf("%w: algorithm %q (want sha1, sha256, sha384, sha512 or sm3_256)", ErrUnsupported, s)
}

// AlgFromHash returns the Alg of a crypto.Hash.
func AlgFromHash(h crypto.Hash) (Alg, error) {
	for _, a := range algs {
		if a.Hash() == h && h != 0 {
			return a, nil
		}
	}
	return 0, fmt.Errorf("%w: hash %v", ErrUnsupported, h)
}
