package mr

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
)

// Digest is a hash value together with its algorithm.
type Digest struct {
	Alg   Alg
	Bytes []byte
}

// NewDigest checks that b has a's size and returns the digest (b is not copied).
func NewDigest(a Alg, b []byte) (Digest, error) {
	if !a.Valid() {
		return Digest{}, fmt.Errorf("%w: algorithm %v", ErrUnsupported, a)
	}
	if len(b) != a.Size() {
		return Digest{}, fmt.Errorf("%w: %v digest must be %d bytes, got %d", ErrDigestSize, a, a.Size(), len(b))
	}
	return Digest{Alg: a, Bytes: b}, nil
}

// Zero returns the all-zero digest of a: the value of a register after reset.
func Zero(a Alg) Digest { return Digest{Alg: a, Bytes: make([]byte, a.Size())} }

// ParseDigest parses "ALG:HEX" (CLI and JSON) or "ALG/HEX" (runtime log
// records). The hex must be lowercase or uppercase, of exactly the algorithm's size.
func ParseDigest(s string) (Digest, error) {
	i := strings.IndexAny(s, ":/")
	if i < 0 {
		return Digest{}, fmt.Errorf("%w: digest %q is not ALG:HEX", ErrMalformed, s)
	}
	a, err := ParseAlg(s[:i])
	if err != nil {
		return Digest{}, err
	}
	return ParseHex(a, s[i+1:])
}

// ParseHex parses hex digits as a digest of algorithm a.
func ParseHex(a Alg, h string) (Digest, error) {
	if len(h) != 2*a.Size() {
		if _, err := hex.DecodeString(h); err != nil {
			return Digest{}, fmt.Errorf("%w: hex %q: %v", ErrMalformed, h, err)
		}
		return Digest{}, fmt.Errorf("%w: %v digest must be %d bytes (%d hex digits), got %d hex digits",
			ErrDigestSize, a, a.Size(), 2*a.Size(), len(h))
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return Digest{}, fmt.Errorf("%w: hex %q: %v", ErrMalformed, h, err)
	}
	return Digest{Alg: a, Bytes: b}, nil
}

// String returns "ALG:HEX", the CLI and JSON form.
func (d Digest) String() string { return d.Alg.String() + ":" + hex.EncodeToString(d.Bytes) }

// LogString returns "ALG/HEX", the form inside runtime log records.
func (d Digest) LogString() string { return d.Alg.String() + "/" + hex.EncodeToString(d.Bytes) }

// Hex returns the lowercase hex of the digest bytes.
func (d Digest) Hex() string { return hex.EncodeToString(d.Bytes) }

// Equal reports whether d and o have the same algorithm and bytes.
func (d Digest) Equal(o Digest) bool { return d.Alg == o.Alg && bytes.Equal(d.Bytes, o.Bytes) }

// IsZero reports whether d is unset (no bytes).
func (d Digest) IsZero() bool { return len(d.Bytes) == 0 }

// MarshalText implements encoding.TextMarshaler as ALG:HEX; an unset
// Digest (IsZero) is the empty string.
func (d Digest) MarshalText() ([]byte, error) {
	if d.IsZero() && d.Alg == 0 {
		return []byte{}, nil
	}
	return []byte(d.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler for ALG:HEX and ALG/HEX;
// the empty string is an unset Digest.
func (d *Digest) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*d = Digest{}
		return nil
	}
	v, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ExtendInto is the extend of every register in ccmr: it returns
// H(v || d), computed with h (a hash of the register's algorithm, reset
// first) and written over v's storage. Extend, Extender and the replays of
// the log formats all fold through it, so the register math is in one
// place. The caller has checked that d has the algorithm's size.
func ExtendInto(h hash.Hash, v, d []byte) []byte {
	h.Reset()
	h.Write(v)
	h.Write(d)
	return h.Sum(v[:0])
}

// Extend returns H(old || d), the new value of a register holding old after
// extending it with d. d must have old's size.
func Extend(old Digest, d []byte) (Digest, error) {
	if !old.Alg.Valid() {
		return Digest{}, fmt.Errorf("%w: algorithm %v", ErrUnsupported, old.Alg)
	}
	if len(d) != old.Alg.Size() {
		return Digest{}, fmt.Errorf("%w: extending a %v register needs %d bytes, got %d",
			ErrDigestSize, old.Alg, old.Alg.Size(), len(d))
	}
	v := append(make([]byte, 0, 64), old.Bytes...)
	return Digest{Alg: old.Alg, Bytes: ExtendInto(old.Alg.New(), v, d)}, nil
}

// Extender folds extends into a register value without allocating per step;
// log replay uses it on hot paths.
type Extender struct {
	alg Alg
	h   hash.Hash
	v   []byte
}

// NewExtender starts from value start (which is copied).
func NewExtender(start Digest) *Extender {
	return &Extender{alg: start.Alg, h: start.Alg.New(), v: append(make([]byte, 0, 64), start.Bytes...)}
}

// Extend folds d in; d must have the algorithm's size.
func (e *Extender) Extend(d []byte) error {
	if len(d) != len(e.v) {
		return fmt.Errorf("%w: extending a %v register needs %d bytes, got %d", ErrDigestSize, e.alg, len(e.v), len(d))
	}
	e.v = ExtendInto(e.h, e.v, d)
	return nil
}

// Value returns a copy of the current value.
func (e *Extender) Value() Digest {
	return Digest{Alg: e.alg, Bytes: append([]byte(nil), e.v...)}
}

// AppendValue appends the current value's bytes to b: a copy without an
// allocation when b has room (a replay keeping the value before each step).
func (e *Extender) AppendValue(b []byte) []byte { return append(b, e.v...) }

// TPMExtendable reports whether PCR i of a PC Client TPM can be extended
// from locality 0, the only one a guest has: PCRs 0..16 and 23. PCRs
// 17..22 need localities 2..4 (D-RTM).
func TPMExtendable(i int) bool { return (i >= 0 && i <= 16) || i == 23 }

// TPMResetValue is the value PCR i of a PC Client TPM holds after a TPM
// reset, in bank a: all ones for the D-RTM PCRs 17..22 (they read zero only
// after a D-RTM launch), zeros for the others. Every replay of a TPM log
// starts from it.
func TPMResetValue(i int, a Alg) Digest {
	if i >= 17 && i <= 22 {
		return Digest{Alg: a, Bytes: bytes.Repeat([]byte{0xFF}, a.Size())}
	}
	return Zero(a)
}

// PCRNumber returns N for a TPM PCR name "pcrN" (0..23, no leading zeros);
// ok is false for any other name.
func PCRNumber(name string) (n int, ok bool) {
	s, found := strings.CutPrefix(name, "pcr")
	if !found || s == "" || len(s) > 2 || (len(s) == 2 && s[0] == '0') {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n <= 23
}

// ResetValue is the value register name holds at reset in bank a: what a
// replay of a log of that register starts from when the log carries no
// INIT value. It is TPMResetValue for a TPM PCR ("pcr17" starts at all
// ones) and zeros for every other register (RTMRs, virtual registers).
func ResetValue(name string, a Alg) Digest {
	if i, ok := PCRNumber(name); ok {
		return TPMResetValue(i, a)
	}
	return Zero(a)
}

// GuestResettable reports whether software in the guest can reset register
// name to its reset value at any time: TPM PCRs 16 (debug) and 23
// (application) are resettable from locality 0 (PC Client platform TPM
// profile). Such a register proves nothing about what happened before its
// last reset, so a log on it has no provable start.
func GuestResettable(name string) bool {
	i, ok := PCRNumber(name)
	return ok && (i == 16 || i == 23)
}
