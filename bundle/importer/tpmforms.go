package importer

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"

	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
)

// The other file forms of tpm2_quote (tpm2-tools 5.x):
//
//   - -F values writes the PCR file as the bare digests, in the quote's
//     selection order (bank by bank as selected, ascending PCR), with no
//     selection list: its length is the sum of the selected digest sizes.
//     The selection comes from the quote's TPMS_ATTEST.
//   - -f plain writes the signature without its TPMT_SIGNATURE header: the
//     DER ECDSA-Sig-Value SEQUENCE { r, s } for an ECC key (hence "scheme
//     0x3044": the SEQUENCE tag and length read as a scheme), the raw
//     signature of modulus size for an RSA key. The scheme comes from the
//     AK (ECDSA; RSASSA or RSAPSS, told apart by which one the AK
//     verifies) and the hash from the quote: TPM2_Quote computes its PCR
//     digest with the signing scheme's hash, so the digest's size names it.
//
// Both are converted to the forms a bundle holds (the serialized PCR file,
// TPMT_SIGNATURE); nothing else changes and `ccmr verify` checks the result
// as usual.

// pcrFileFor returns the PCR file of the quote described by info in the
// serialized form: b itself when it is one, or b read as -F values.
func pcrFileFor(info *tpmverify.QuoteInfo, b []byte) ([]byte, error) {
	ser, serErr := tpmverify.ParsePCRFile(b)
	if serErr == nil && selectionOf(ser) == selectionString(info.Selection) {
		return b, nil
	}
	want, err := valuesSize(info.Selection)
	if err != nil {
		if serErr != nil {
			return nil, fmt.Errorf("not a serialized PCR file: %w", serErr)
		}
		return b, nil
	}
	if len(b) != want {
		if serErr != nil {
			return nil, fmt.Errorf("not a serialized PCR file (tpm2_quote -F serialized, the default), nor the %d bytes of -F values the quote's selection %s needs: %w",
				want, selectionString(info.Selection), serErr)
		}
		return b, nil // serialized, of another selection: sameSelection names it
	}
	vals := map[mr.Alg]map[int][]byte{}
	off := 0
	for _, s := range info.Selection {
		for _, i := range s.PCRs {
			if vals[s.Alg] == nil {
				vals[s.Alg] = map[int][]byte{}
			}
			vals[s.Alg][i] = bytes.Clone(b[off : off+s.Alg.Size()])
			off += s.Alg.Size()
		}
	}
	if serErr == nil {
		// It reads both ways (a serialized file of another selection whose
		// length happens to fit): the values are taken only when they are
		// what the quote signed.
		h := digestHash(info)
		d, err := tpmverify.PCRDigest(h, info.Selection, vals)
		if err != nil || !bytes.Equal(d, info.PCRDigest) {
			return b, nil
		}
	}
	out, err := tpmverify.MarshalPCRValues(vals)
	if err != nil {
		return nil, fmt.Errorf("-F values: %w", err)
	}
	return out, nil
}

// valuesSize is the length of a -F values file for the selection.
func valuesSize(sel []tpmverify.PCRSelection) (int, error) {
	n := 0
	for _, s := range sel {
		if s.Alg.Size() == 0 {
			return 0, fmt.Errorf("%w: bank %v", mr.ErrUnsupported, s.Alg)
		}
		n += len(s.PCRs) * s.Alg.Size()
	}
	if n == 0 {
		return 0, fmt.Errorf("%w: the quote selects no PCR", mr.ErrMalformed)
	}
	return n, nil
}

func selectionString(sel []tpmverify.PCRSelection) string {
	var b bytes.Buffer
	for _, s := range sel {
		if len(s.PCRs) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('+')
		}
		fmt.Fprintf(&b, "%v:%v", s.Alg, s.PCRs)
	}
	return b.String()
}

func selectionOf(vals map[mr.Alg]map[int][]byte) string {
	// Serialized files list banks in the order written; compare as sets
	// in TPM_ALG_ID order, as selectionString of a sorted selection.
	var sel []tpmverify.PCRSelection
	for a := mr.Alg(0); a < 0x100; a++ {
		m, ok := vals[a]
		if !ok {
			continue
		}
		s := tpmverify.PCRSelection{Alg: a}
		for i := 0; i < 32; i++ {
			if _, ok := m[i]; ok {
				s.PCRs = append(s.PCRs, i)
			}
		}
		sel = append(sel, s)
	}
	return selectionString(sel)
}

// digestHash names the hash of the quote's signing scheme by the size of
// its PCR digest (TPM2_Quote digests the PCRs with that hash).
func digestHash(info *tpmverify.QuoteInfo) mr.Alg {
	switch len(info.PCRDigest) {
	case 20:
		return mr.SHA1
	case 32:
		return mr.SHA256
	case 48:
		return mr.SHA384
	case 64:
		return mr.SHA512
	}
	return 0
}

// errPlainScheme: a -f plain RSA signature that verifies under the AK as
// neither RSASSA nor RSAPSS.
var errPlainScheme = errors.New("cannot tell the scheme of a plain signature")

// signatureFor returns the quote's signature as a TPMT_SIGNATURE: b itself
// when it is one, or b read as tpm2_quote -f plain for the AK ak (nil when
// no AK was given).
func signatureFor(info *tpmverify.QuoteInfo, attest, b []byte, ak crypto.PublicKey) ([]byte, error) {
	_, tssErr := tpmverify.ParseSignature(b)
	if tssErr == nil {
		return b, nil
	}
	h := digestHash(info)
	var sig tpm2.TPMTSignature
	switch k := ak.(type) {
	case *ecdsa.PublicKey:
		var es struct{ R, S *big.Int }
		rest, err := asn1.Unmarshal(b, &es)
		if err != nil || len(rest) > 0 {
			return nil, fmt.Errorf("not a TPMT_SIGNATURE (%w), nor a DER ECDSA signature (tpm2_quote -f plain) for the ECC AK", tssErr)
		}
		if re, err := asn1.Marshal(es); err != nil || !bytes.Equal(re, b) {
			return nil, fmt.Errorf("%w: -f plain ECDSA signature is not DER", mr.ErrMalformed)
		}
		if es.R.Sign() <= 0 || es.S.Sign() <= 0 {
			return nil, fmt.Errorf("%w: -f plain ECDSA signature with r or s not positive", mr.ErrMalformed)
		}
		if h == 0 {
			return nil, fmt.Errorf("%w: -f plain: the quote's %d-byte PCR digest names no hash", mr.ErrMalformed, len(info.PCRDigest))
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(es.R.Bytes()) > size || len(es.S.Bytes()) > size {
			return nil, fmt.Errorf("%w: -f plain ECDSA signature larger than the AK's curve", mr.ErrMalformed)
		}
		sig = tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgECDSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
			Hash:       tpm2.TPMIAlgHash(h),
			SignatureR: tpm2.TPM2BECCParameter{Buffer: es.R.FillBytes(make([]byte, size))},
			SignatureS: tpm2.TPM2BECCParameter{Buffer: es.S.FillBytes(make([]byte, size))},
		})}
	case *rsa.PublicKey:
		if len(b) != k.Size() {
			return nil, fmt.Errorf("not a TPMT_SIGNATURE (%w), nor a %d-byte RSA signature (tpm2_quote -f plain) for the RSA AK: %d bytes", tssErr, k.Size(), len(b))
		}
		if h == 0 {
			return nil, fmt.Errorf("%w: -f plain: the quote's %d-byte PCR digest names no hash", mr.ErrMalformed, len(info.PCRDigest))
		}
		// The raw bytes name no scheme: the one the AK verifies is it.
		// Neither is unusable input, not a verdict: the file cannot be
		// read as a signature of this quote.
		for _, alg := range []tpm2.TPMAlgID{tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS} {
			cand := tpm2.TPMTSignature{SigAlg: alg, Signature: tpm2.NewTPMUSignature(alg, &tpm2.TPMSSignatureRSA{
				Hash: tpm2.TPMIAlgHash(h), Sig: tpm2.TPM2BPublicKeyRSA{Buffer: bytes.Clone(b)}})}
			if tpmverify.VerifySignature(k, attest, tpm2.Marshal(cand)) == nil {
				return tpm2.Marshal(cand), nil
			}
		}
		return nil, fmt.Errorf("not a TPMT_SIGNATURE (%v), and %w (tpm2_quote -f plain): it verifies under %s as neither RSASSA nor RSAPSS with %v; give the TPMT_SIGNATURE (tpm2_quote -f tss, the default)",
			tssErr, errPlainScheme, PartAK, h)
	case nil:
		return nil, fmt.Errorf("not a TPMT_SIGNATURE (%w); a plain signature (tpm2_quote -f plain) is read only with %s, which names its scheme, or give -f tss (the default)", tssErr, PartAK)
	default:
		return nil, fmt.Errorf("not a TPMT_SIGNATURE: %w", tssErr)
	}
	out := tpm2.Marshal(sig)
	if _, err := tpmverify.ParseSignature(out); err != nil {
		return nil, fmt.Errorf("-f plain: %w", err)
	}
	return out, nil
}
