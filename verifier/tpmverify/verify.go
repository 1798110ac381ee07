// Package tpmverify checks TPM 2.0 quotes without a TPM: TPMS_ATTEST and
// TPMT_SIGNATURE parsing (through go-tpm's tpm2.Unmarshal, held to the
// canonical encoding), AK public keys, the PCR digest, and the serialized
// PCR file of tpm2-tools. It touches no device, so the offline verifier
// builds on every system; backend/tpm imports it, never the reverse.
package tpmverify

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"sort"

	"github.com/google/go-tpm/tpm2"

	"github.com/ccmr-dev/ccmr/mr"
)

// Errors of quote verification, for callers that must tell them apart.
var (
	// ErrBadSignature: the signature does not verify with the AK.
	ErrBadSignature = errors.New("TPM quote signature does not verify")
	// ErrNonceMismatch: the quote's qualifying data is not the nonce.
	ErrNonceMismatch = errors.New("TPM quote qualifying data is not the nonce")
	// ErrPCRMismatch: the PCR values do not hash to the quote's PCR digest,
	// or do not match its selection.
	ErrPCRMismatch = errors.New("PCR values do not match the TPM quote")
)

// Structure tags and constants of TPM 2.0 Part 2.
const (
	tpmGenerated     = 0xff544347 // TPM_GENERATED_VALUE
	tpmSTAttestQuote = 0x8018     // TPM_ST_ATTEST_QUOTE
	algRSASSA        = 0x0014
	algRSAPSS        = 0x0016
	algECDSA         = 0x0018
)

// PCRSelection is one TPMS_PCR_SELECTION: a bank and the PCRs selected in it,
// ascending.
type PCRSelection struct {
	Alg  mr.Alg
	PCRs []int
}

// QuoteInfo is a parsed TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE.
type QuoteInfo struct {
	QualifiedSigner []byte
	ExtraData       []byte // the qualifying data: ccmr's nonce
	Clock           uint64
	ResetCount      uint32
	RestartCount    uint32
	Safe            bool
	FirmwareVersion uint64
	Selection       []PCRSelection
	PCRDigest       []byte
}

// Signature is a parsed TPMT_SIGNATURE.
type Signature struct {
	Scheme uint16 // TPM_ALG_RSASSA, TPM_ALG_RSAPSS or TPM_ALG_ECDSA
	Hash   mr.Alg
	RSA    []byte   // RSASSA, RSAPSS
	R, S   *big.Int // ECDSA
}

// unmarshal decodes b as one T with go-tpm and refuses every input that is
// not exactly the canonical encoding of what it decodes to: bytes after the
// structure, and the encodings go-tpm tolerates (a size field cut short),
// would otherwise pass unnoticed. what names the structure in errors.
func unmarshal[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](b []byte, what string) (*T, error) {
	v, err := tpm2.Unmarshal[T, P](b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s of %d bytes: %v", mr.ErrMalformed, what, len(b), err)
	}
	re := tpm2.Marshal(*v)
	switch {
	case len(re) < len(b) && bytes.Equal(re, b[:len(re)]):
		return nil, fmt.Errorf("%w: %s at byte %d: %d bytes after the end of the structure", mr.ErrMalformed, what, len(re), len(b)-len(re))
	case !bytes.Equal(re, b):
		n := 0
		for n < len(re) && n < len(b) && re[n] == b[n] {
			n++
		}
		return nil, fmt.Errorf("%w: %s at byte %d: not the canonical encoding of a %s (%d bytes, it re-encodes to %d)", mr.ErrMalformed, what, n, what, len(b), len(re))
	}
	return v, nil
}

// ParseQuoteInfo parses a marshalled TPMS_ATTEST (what tpm2_quote -m writes)
// and checks that it is a TPM-generated quote.
func ParseQuoteInfo(attest []byte) (*QuoteInfo, error) {
	// The magic and the type come first: checked before go-tpm decodes the
	// rest, so that an error names them rather than what follows.
	if len(attest) >= 4 {
		if m := binary.BigEndian.Uint32(attest); m != tpmGenerated {
			return nil, fmt.Errorf("%w: TPMS_ATTEST at byte 0: magic 0x%08x is not TPM_GENERATED_VALUE", mr.ErrMalformed, m)
		}
	}
	if len(attest) >= 6 {
		if t := binary.BigEndian.Uint16(attest[4:]); t != tpmSTAttestQuote {
			return nil, fmt.Errorf("%w: TPMS_ATTEST at byte 4: type 0x%04x is not TPM_ST_ATTEST_QUOTE", mr.ErrMalformed, t)
		}
	}
	a, err := unmarshal[tpm2.TPMSAttest](attest, "TPMS_ATTEST")
	if err != nil {
		return nil, err
	}
	qi, err := a.Attested.Quote()
	if err != nil || a.Magic != tpmGenerated || a.Type != tpm2.TPMSTAttestQuote {
		return nil, fmt.Errorf("%w: TPMS_ATTEST is not a TPM-generated quote", mr.ErrMalformed)
	}
	sels := qi.PCRSelect.PCRSelections
	if len(sels) > 16 {
		// Offset of the count: magic, type, two TPM2Bs, clock info, firmware.
		off := 4 + 2 + 2 + len(a.QualifiedSigner.Buffer) + 2 + len(a.ExtraData.Buffer) + 17 + 8
		return nil, fmt.Errorf("%w: TPMS_ATTEST at byte %d: %d PCR selections (at most 16)", mr.ErrMalformed, off, len(sels))
	}
	q := QuoteInfo{
		QualifiedSigner: a.QualifiedSigner.Buffer,
		ExtraData:       a.ExtraData.Buffer,
		Clock:           a.ClockInfo.Clock,
		ResetCount:      a.ClockInfo.ResetCount,
		RestartCount:    a.ClockInfo.RestartCount,
		Safe:            bool(a.ClockInfo.Safe),
		FirmwareVersion: a.FirmwareVersion,
		PCRDigest:       qi.PCRDigest.Buffer,
	}
	for _, sel := range sels {
		s := PCRSelection{Alg: mr.Alg(sel.Hash)}
		for j := 0; j < 8*len(sel.PCRSelect); j++ {
			if sel.PCRSelect[j/8]&(1<<(j%8)) != 0 {
				s.PCRs = append(s.PCRs, j)
			}
		}
		q.Selection = append(q.Selection, s)
	}
	return &q, nil
}

// ParseSignature parses a marshalled TPMT_SIGNATURE (what tpm2_quote -s
// writes) of scheme RSASSA, RSAPSS or ECDSA.
func ParseSignature(sig []byte) (*Signature, error) {
	// The scheme is read first so that a signature of another scheme is
	// reported as unsupported, not as malformed.
	if len(sig) >= 4 {
		switch sc := binary.BigEndian.Uint16(sig); sc {
		case algRSASSA, algRSAPSS, algECDSA:
		default:
			return nil, fmt.Errorf("%w: TPMT_SIGNATURE scheme 0x%04x (want RSASSA, RSAPSS or ECDSA)", mr.ErrUnsupported, sc)
		}
	}
	t, err := unmarshal[tpm2.TPMTSignature](sig, "TPMT_SIGNATURE")
	if err != nil {
		return nil, err
	}
	s := Signature{Scheme: uint16(t.SigAlg)}
	switch s.Scheme {
	case algRSASSA, algRSAPSS:
		var r *tpm2.TPMSSignatureRSA
		if s.Scheme == algRSASSA {
			r, err = t.Signature.RSASSA()
		} else {
			r, err = t.Signature.RSAPSS()
		}
		if err != nil {
			return nil, fmt.Errorf("%w: TPMT_SIGNATURE: %v", mr.ErrMalformed, err)
		}
		s.Hash, s.RSA = mr.Alg(r.Hash), r.Sig.Buffer
	case algECDSA:
		e, err := t.Signature.ECDSA()
		if err != nil {
			return nil, fmt.Errorf("%w: TPMT_SIGNATURE: %v", mr.ErrMalformed, err)
		}
		s.Hash = mr.Alg(e.Hash)
		s.R = new(big.Int).SetBytes(e.SignatureR.Buffer)
		s.S = new(big.Int).SetBytes(e.SignatureS.Buffer)
	default: // a signature under 4 bytes that go-tpm still decoded (TPM_ALG_NULL)
		return nil, fmt.Errorf("%w: TPMT_SIGNATURE scheme 0x%04x (want RSASSA, RSAPSS or ECDSA)", mr.ErrUnsupported, s.Scheme)
	}
	if s.Hash.Hash() == 0 {
		return nil, fmt.Errorf("%w: TPMT_SIGNATURE hash %v", mr.ErrUnsupported, s.Hash)
	}
	return &s, nil
}

// ParseAKPublic parses a PEM "PUBLIC KEY" (PKIX) as written into evidence
// and by tpm2_readpublic -f pem.
func ParseAKPublic(pemBytes []byte) (crypto.PublicKey, error) {
	b, _ := pem.Decode(pemBytes)
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%w: AK public key is not a PEM PUBLIC KEY block", mr.ErrMalformed)
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: AK public key: %v", mr.ErrMalformed, err)
	}
	return k, nil
}

// MarshalAKPublic returns the PEM "PUBLIC KEY" form of an AK public key.
func MarshalAKPublic(k crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return nil, fmt.Errorf("tpmverify: AK public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// VerifySignature checks that sig (a marshalled TPMT_SIGNATURE) is ak's
// signature over attest.
func VerifySignature(ak crypto.PublicKey, attest, sig []byte) error {
	s, err := ParseSignature(sig)
	if err != nil {
		return err
	}
	h := s.Hash.Hash().New()
	h.Write(attest)
	digest := h.Sum(nil)
	switch k := ak.(type) {
	case *rsa.PublicKey:
		switch s.Scheme {
		case algRSASSA:
			err = rsa.VerifyPKCS1v15(k, s.Hash.Hash(), digest, s.RSA)
		case algRSAPSS:
			err = rsa.VerifyPSS(k, s.Hash.Hash(), digest, s.RSA, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
		default:
			return fmt.Errorf("%w: an RSA AK with signature scheme 0x%04x", ErrBadSignature, s.Scheme)
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadSignature, err)
		}
	case *ecdsa.PublicKey:
		if s.Scheme != algECDSA {
			return fmt.Errorf("%w: an ECC AK with signature scheme 0x%04x", ErrBadSignature, s.Scheme)
		}
		if !ecdsa.Verify(k, digest, s.R, s.S) {
			return ErrBadSignature
		}
	default:
		return fmt.Errorf("%w: AK key type %T", mr.ErrUnsupported, ak)
	}
	return nil
}

// PCRDigest returns the digest a quote signed with hash h carries for the
// PCR values of the selection: h over the selected values, in selection
// order and ascending index within a bank.
func PCRDigest(h mr.Alg, sel []PCRSelection, pcrs map[mr.Alg]map[int][]byte) ([]byte, error) {
	if h.Hash() == 0 && h != mr.SM3256 || !h.Valid() {
		return nil, fmt.Errorf("%w: PCR digest hash %v", mr.ErrUnsupported, h)
	}
	w := h.New()
	for _, s := range sel {
		for _, i := range s.PCRs {
			v, ok := pcrs[s.Alg][i]
			if !ok {
				return nil, fmt.Errorf("%w: the quote covers pcr%d of %v, no value given", ErrPCRMismatch, i, s.Alg)
			}
			if len(v) != s.Alg.Size() {
				return nil, fmt.Errorf("%w: pcr%d of %v has %d bytes, want %d", ErrPCRMismatch, i, s.Alg, len(v), s.Alg.Size())
			}
			w.Write(v)
		}
	}
	return w.Sum(nil), nil
}

// VerifyQuote checks one quote without a TPM: the AK's signature over
// q.Attest, that q.Attest is a TPM-generated quote whose qualifying data is
// nonce, that it covers exactly the PCRs of bank q.Alg listed in q.PCRs, and
// that their values hash to its PCR digest. On success q.PCRs are values the
// TPM vouched for. Errors wrap ErrBadSignature, ErrNonceMismatch,
// ErrPCRMismatch or mr.ErrMalformed.
func VerifyQuote(ak crypto.PublicKey, q mr.TPMQuote, nonce []byte) error {
	if err := VerifySignature(ak, q.Attest, q.Signature); err != nil {
		return fmt.Errorf("%v quote: %w", q.Alg, err)
	}
	info, err := ParseQuoteInfo(q.Attest)
	if err != nil {
		return fmt.Errorf("%v quote: %w", q.Alg, err)
	}
	if !bytes.Equal(info.ExtraData, nonce) {
		return fmt.Errorf("%v quote: %w: quote has %x, nonce is %x", q.Alg, ErrNonceMismatch, info.ExtraData, nonce)
	}
	covered := map[int]bool{}
	for _, s := range info.Selection {
		if len(s.PCRs) == 0 {
			continue
		}
		if s.Alg != q.Alg {
			return fmt.Errorf("%v quote: %w: it covers bank %v", q.Alg, ErrPCRMismatch, s.Alg)
		}
		for _, i := range s.PCRs {
			if covered[i] {
				return fmt.Errorf("%v quote: %w: pcr%d selected twice", q.Alg, ErrPCRMismatch, i)
			}
			covered[i] = true
		}
	}
	var extra []int
	for i := range q.PCRs {
		if !covered[i] {
			extra = append(extra, i)
		}
	}
	if len(extra) > 0 {
		sort.Ints(extra)
		return fmt.Errorf("%v quote: %w: values claimed for PCRs %v the quote does not cover", q.Alg, ErrPCRMismatch, extra)
	}
	s, _ := ParseSignature(q.Signature) // parsed fine above
	want, err := PCRDigest(s.Hash, info.Selection, map[mr.Alg]map[int][]byte{q.Alg: q.PCRs})
	if err != nil {
		return fmt.Errorf("%v quote: %w", q.Alg, err)
	}
	if !bytes.Equal(want, info.PCRDigest) {
		return fmt.Errorf("%v quote: %w: the values hash to %x, the quote signs %x", q.Alg, ErrPCRMismatch, want, info.PCRDigest)
	}
	return nil
}

// VerifyQuotePEM is VerifyQuote with the AK as PEM (mr.Evidence.PublicKey).
func VerifyQuotePEM(akPEM []byte, q mr.TPMQuote, nonce []byte) error {
	k, err := ParseAKPublic(akPEM)
	if err != nil {
		return err
	}
	return VerifyQuote(k, q, nonce)
}

// NewQuote builds an mr.TPMQuote from the files tpm2_quote writes: the
// TPMS_ATTEST (-m), the TPMT_SIGNATURE (-s) and the serialized PCR file (-o,
// see ParsePCRFile). The quote must cover one bank. Nothing is verified.
func NewQuote(attest, sig, pcrFile []byte) (mr.TPMQuote, error) {
	info, err := ParseQuoteInfo(attest)
	if err != nil {
		return mr.TPMQuote{}, err
	}
	if _, err := ParseSignature(sig); err != nil {
		return mr.TPMQuote{}, err
	}
	var alg mr.Alg
	for _, s := range info.Selection {
		if len(s.PCRs) == 0 {
			continue
		}
		if alg != 0 && s.Alg != alg {
			return mr.TPMQuote{}, fmt.Errorf("%w: the quote covers banks %v and %v; ccmr wants one quote per bank", mr.ErrUnsupported, alg, s.Alg)
		}
		alg = s.Alg
	}
	if alg == 0 {
		return mr.TPMQuote{}, fmt.Errorf("%w: the quote covers no PCR", mr.ErrMalformed)
	}
	q := mr.TPMQuote{Alg: alg, Attest: attest, Signature: sig, PCRs: map[int][]byte{}}
	if pcrFile != nil {
		vals, err := ParsePCRFile(pcrFile)
		if err != nil {
			return mr.TPMQuote{}, err
		}
		for a, m := range vals {
			if a != alg {
				return mr.TPMQuote{}, fmt.Errorf("%w: the PCR file has bank %v, the quote covers %v", ErrPCRMismatch, a, alg)
			}
			q.PCRs = m
		}
	}
	return q, nil
}
