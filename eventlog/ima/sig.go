package ima

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	decredecdsa "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
)

// Signature errors. ErrBadSignature also satisfies errors.Is(err,
// eventlog.ErrMismatch): a list whose signature fails is untrusted, not unusable.
var (
	// ErrNoSignature: the entry carries no signature (not ima-sig /
	// ima-modsig, or an empty sig field).
	ErrNoSignature = errors.New("no IMA signature")
	// ErrUnknownKey: no given key has the signature's key ID.
	ErrUnknownKey = errors.New("IMA signature key not given")
	// ErrBadSignature: the signature does not verify.
	ErrBadSignature = fmt.Errorf("%w: IMA signature does not verify", eventlog.ErrMismatch)
)

// Key is a public key that IMA signatures are checked against.
type Key struct {
	// ID is the key ID signatures carry: the last 4 bytes of the
	// certificate's subject key identifier, or, for a bare public key, of
	// sha1(subjectPublicKey) (as evmctl computes it).
	ID uint32
	// Public is a *rsa.PublicKey, *ecdsa.PublicKey (NIST curves) or
	// *secp256k1.PublicKey.
	Public crypto.PublicKey
	// Source names where the key came from.
	Source string
}

var (
	oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidSecp256k1   = asn1.ObjectIdentifier{1, 3, 132, 0, 10}
)

type spki struct {
	Algorithm pkix.AlgorithmIdentifier
	PublicKey asn1.BitString
}

// ParseKeys parses public keys from PEM ("PUBLIC KEY", "CERTIFICATE",
// several blocks allowed) or from one DER SubjectPublicKeyInfo or
// certificate. source names the input in errors and in Key.Source.
func ParseKeys(data []byte, source string) ([]Key, error) {
	var keys []Key
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case "PUBLIC KEY", "CERTIFICATE":
			k, err := parseDERKey(b.Bytes, b.Type == "CERTIFICATE")
			if err != nil {
				return nil, fmt.Errorf("%s: %w", source, err)
			}
			k.Source = source
			keys = append(keys, k)
		}
	}
	if len(keys) > 0 {
		return keys, nil
	}
	if bytes.Contains(data, []byte("-----BEGIN")) {
		return nil, fmt.Errorf("%w: %s: no PUBLIC KEY or CERTIFICATE block", mr.ErrMalformed, source)
	}
	k, err := parseDERKey(data, false)
	if err != nil {
		if k2, err2 := parseDERKey(data, true); err2 == nil {
			k2.Source = source
			return []Key{k2}, nil
		}
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	k.Source = source
	return []Key{k}, nil
}

// LoadKeys reads keys from files (see ParseKeys).
func LoadKeys(paths ...string) ([]Key, error) {
	var keys []Key
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		k, err := ParseKeys(b, p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k...)
	}
	return keys, nil
}

func parseDERKey(der []byte, cert bool) (Key, error) {
	var skid []byte
	if cert {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			// Go refuses certificates of secp256k1 keys; read the
			// SubjectPublicKeyInfo out of the TBSCertificate ourselves.
			var raw struct {
				TBS struct {
					Raw asn1.RawContent
					// fields up to the SPKI; the rest is ignored
					Version   int `asn1:"optional,explicit,default:0,tag:0"`
					Serial    asn1.RawValue
					Sig       asn1.RawValue
					Issuer    asn1.RawValue
					Validity  asn1.RawValue
					Subject   asn1.RawValue
					PublicKey asn1.RawValue
				}
			}
			if _, err2 := asn1.Unmarshal(der, &raw); err2 != nil {
				return Key{}, fmt.Errorf("%w: certificate: %v", mr.ErrMalformed, err)
			}
			der = raw.TBS.PublicKey.FullBytes
		} else {
			der = c.RawSubjectPublicKeyInfo
			skid = c.SubjectKeyId
		}
	}
	var s spki
	if rest, err := asn1.Unmarshal(der, &s); err != nil || len(rest) > 0 {
		return Key{}, fmt.Errorf("%w: not a SubjectPublicKeyInfo", mr.ErrMalformed)
	}
	var id uint32
	if len(skid) >= 4 {
		id = binary.BigEndian.Uint32(skid[len(skid)-4:])
	} else {
		h := sha1.Sum(s.PublicKey.RightAlign())
		id = binary.BigEndian.Uint32(h[16:])
	}
	var params asn1.ObjectIdentifier
	if s.Algorithm.Algorithm.Equal(oidECPublicKey) {
		if _, err := asn1.Unmarshal(s.Algorithm.Parameters.FullBytes, &params); err == nil && params.Equal(oidSecp256k1) {
			pub, err := secp256k1.ParsePubKey(s.PublicKey.RightAlign())
			if err != nil {
				return Key{}, fmt.Errorf("%w: secp256k1 key: %v", mr.ErrMalformed, err)
			}
			return Key{ID: id, Public: pub}, nil
		}
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return Key{}, fmt.Errorf("%w: public key: %v", mr.ErrMalformed, err)
	}
	switch pub.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
	default:
		return Key{}, fmt.Errorf("%w: %T keys (IMA signs with RSA or ECDSA)", mr.ErrUnsupported, pub)
	}
	return Key{ID: id, Public: pub}, nil
}

// SigHeader is the header of an IMA signature (struct signature_v2_hdr).
type SigHeader struct {
	Type    uint8  // 3: EVM_IMA_XATTR_DIGSIG
	Version uint8  // 2
	HashAlg uint8  // kernel enum hash_algo: 2 sha1, 4 sha256, 5 sha384, 6 sha512, 7 sha224
	KeyID   uint32 // last 4 bytes of the signing key's subject key identifier
	Sig     []byte // the signature: PKCS#1 v1.5 (RSA) or DER ECDSA
}

// ParseSignature parses an IMA signature (the sig field): type,
// version, hash algorithm, big-endian key ID, big-endian size, signature.
func ParseSignature(b []byte) (SigHeader, error) {
	if len(b) < 9 {
		return SigHeader{}, fmt.Errorf("%w: IMA signature of %d bytes is shorter than its header", mr.ErrMalformed, len(b))
	}
	h := SigHeader{Type: b[0], Version: b[1], HashAlg: b[2], KeyID: binary.BigEndian.Uint32(b[3:7])}
	n := int(binary.BigEndian.Uint16(b[7:9]))
	if n != len(b)-9 {
		return h, fmt.Errorf("%w: IMA signature size field says %d bytes, %d follow", mr.ErrMalformed, n, len(b)-9)
	}
	h.Sig = b[9:]
	return h, nil
}

// kernelHash maps the kernel's enum hash_algo to a crypto.Hash.
func kernelHash(a uint8) (crypto.Hash, string) {
	switch a {
	case 2:
		return crypto.SHA1, "sha1"
	case 4:
		return crypto.SHA256, "sha256"
	case 5:
		return crypto.SHA384, "sha384"
	case 6:
		return crypto.SHA512, "sha512"
	case 7:
		return crypto.SHA224, "sha224"
	}
	return 0, fmt.Sprintf("hash_algo %d", a)
}

// VerifySignature checks the signature in e's sig field (ima-sig,
// ima-modsig, ima-sigv2) over e's file digest, against keys. It returns nil
// when a key with the signature's key ID verifies it; ErrNoSignature,
// ErrUnknownKey, ErrBadSignature (with the reason), mr.ErrMalformed for a
// signature that does not parse, or mr.ErrUnsupported (signature versions
// other than 2, hash algorithms without a Go implementation). Appended
// PKCS#7 signatures (the modsig field) are not verified.
func VerifySignature(e *Entry, keys []Key) error {
	raw := e.Signature()
	if len(raw) == 0 {
		return ErrNoSignature
	}
	h, err := ParseSignature(raw)
	if err != nil {
		return err
	}
	if h.Type != 3 {
		return fmt.Errorf("%w: IMA signature type %d (want 3, EVM_IMA_XATTR_DIGSIG)", mr.ErrUnsupported, h.Type)
	}
	if h.Version != 2 {
		return fmt.Errorf("%w: IMA signature version %d (want 2)", mr.ErrUnsupported, h.Version)
	}
	ch, name := kernelHash(h.HashAlg)
	if ch == 0 || !ch.Available() {
		return fmt.Errorf("%w: IMA signature hash %s", mr.ErrUnsupported, name)
	}
	alg, digest, ok := e.FileDigest()
	if !ok {
		return fmt.Errorf("%w: entry has no file digest", mr.ErrMalformed)
	}
	if alg != name || len(digest) != ch.Size() {
		return fmt.Errorf("%w: signature is over a %s digest, the entry holds %s", ErrBadSignature, name, alg)
	}
	var tried bool
	for _, k := range keys {
		if k.ID != h.KeyID {
			continue
		}
		tried = true
		if verify(k.Public, ch, digest, h.Sig) {
			return nil
		}
	}
	if !tried {
		return fmt.Errorf("%w: key ID %08x", ErrUnknownKey, h.KeyID)
	}
	return fmt.Errorf("%w: key ID %08x", ErrBadSignature, h.KeyID)
}

func verify(pub crypto.PublicKey, h crypto.Hash, digest, sig []byte) bool {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, h, digest, sig) == nil
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(k, digest, sig)
	case *secp256k1.PublicKey:
		s, err := decredecdsa.ParseDERSignature(sig)
		if err != nil {
			return false
		}
		return s.Verify(digest, k)
	}
	return false
}

// SignatureReport counts what CheckSignatures saw.
type SignatureReport struct {
	Verified int // signatures that verified with a given key
	Unsigned int // entries without a signature (or violations)
}

// CheckSignatures verifies the signature of every entry of src that has one
// (ima-sig, ima-modsig) against keys, up to limit entries (all when limit <
// 0). The first entry whose signature does not verify, or whose key is not
// given, is a *eventlog.Mismatch naming it; a signature that does not parse is a
// *eventlog.Error. With requireAll, an unsigned entry (other than a violation or
// the boot_aggregate) is a mismatch too. The report counts the entries
// before the first failure. With more than one core the signatures are
// verified on all of them; the result is the same. src is consumed.
func CheckSignatures(src Source, file string, keys []Key, limit int, requireAll bool) (SignatureReport, error) {
	if runtime.GOMAXPROCS(0) == 1 {
		return checkSignaturesSeq(src, file, keys, limit, requireAll)
	}
	o, rep, err := runPipeline(context.Background(), src, pipeOptions{file: file, sigs: true, keys: keys, requireAll: requireAll, limit: limit})
	if err != nil {
		return rep, err
	}
	_, first := o.stopAt()
	return rep, first
}

// checkSignaturesSeq is CheckSignatures on one core.
func checkSignaturesSeq(src Source, file string, keys []Key, limit int, requireAll bool) (SignatureReport, error) {
	var rep SignatureReport
	for n := 0; limit < 0 || n < limit; n++ {
		e, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return rep, err
		}
		if err := judgeSignature(file, e, keys, requireAll, &rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// judgeSignature verifies e's signature, counts it in rep, and returns the
// failure CheckSignatures reports for it.
func judgeSignature(file string, e *Entry, keys []Key, requireAll bool, rep *SignatureReport) error {
	err := VerifySignature(e, keys)
	switch {
	case err == nil:
		rep.Verified++
	case errors.Is(err, ErrNoSignature):
		rep.Unsigned++
		if requireAll && !e.IsViolation() && e.FileName() != "boot_aggregate" {
			return &eventlog.Mismatch{File: file, Register: "pcr10", Record: e.Index, Offset: e.Offset,
				Reason: fmt.Sprintf("IMA entry %d (%q) carries no signature", e.Index, e.FileName())}
		}
	case errors.Is(err, ErrBadSignature), errors.Is(err, ErrUnknownKey):
		return &eventlog.Mismatch{File: file, Register: "pcr10", Record: e.Index, Offset: e.Offset,
			Reason: fmt.Sprintf("IMA entry %d (%q): %v", e.Index, e.FileName(), err)}
	default:
		return &eventlog.Error{File: file, Record: e.Index, Offset: e.Offset, Err: err}
	}
	return nil
}
