package tpm

import (
	"bytes"
	"context"
	"crypto"
	"encoding/asn1"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
)

// NV indices of the EK certificates (TCG EK Credential Profile 2.0, 2.2.1.4).
const (
	EKCertRSAIndex = 0x01c00002 // RSA 2048, low range
	EKCertECCIndex = 0x01c0000a // ECC NIST P-256, low range
)

// EKCertIndices lists the NV indices Attest looks for EK certificates at, in
// this order: the low range (RSA 2048, ECC P-256) and the high range
// (RSA 2048, P-256, P-384, P-521, SM2, RSA 3072, RSA 4096).
var EKCertIndices = [...]uint32{EKCertRSAIndex, EKCertECCIndex,
	0x01c00012, 0x01c00014, 0x01c00016, 0x01c00018, 0x01c0001a, 0x01c0001c, 0x01c0001e}

// MaxNonce is the largest nonce a quote carries (TPM2B_DATA holds a TPMT_HA).
const MaxNonce = 64

// akTemplate returns the public template of the AK ccmr creates: a primary,
// restricted, fixed signing key with a SHA-256 scheme.
func akTemplate(a AKAlg) tpm2.TPMTPublic {
	attrs := tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
		Restricted:          true,
		SignEncrypt:         true,
	}
	null := tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull}
	if a == AKRSA {
		return tpm2.TPMTPublic{
			Type: tpm2.TPMAlgRSA, NameAlg: tpm2.TPMAlgSHA256, ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
				Symmetric: null,
				Scheme: tpm2.TPMTRSAScheme{
					Scheme:  tpm2.TPMAlgRSASSA,
					Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
				},
				KeyBits: 2048,
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
		}
	}
	return tpm2.TPMTPublic{
		Type: tpm2.TPMAlgECC, NameAlg: tpm2.TPMAlgSHA256, ObjectAttributes: attrs,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: null,
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
}

// ak is a loaded attestation key.
type ak struct {
	h     tpm2.AuthHandle
	pub   crypto.PublicKey
	flush bool
}

func (d *Device) loadAK() (*ak, error) {
	if d.cfg.akHandle != 0 {
		h := tpm2.TPMHandle(d.cfg.akHandle)
		rsp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(d.c)
		if err != nil {
			return nil, fmt.Errorf("tpm: reading the AK at 0x%08x: %w", d.cfg.akHandle, err)
		}
		pub, err := rsp.OutPublic.Contents()
		if err != nil {
			return nil, fmt.Errorf("tpm: AK at 0x%08x: %w: %v", d.cfg.akHandle, ErrBadResponse, err)
		}
		if !pub.ObjectAttributes.Restricted || !pub.ObjectAttributes.SignEncrypt {
			return nil, fmt.Errorf("tpm: the key at 0x%08x is not a restricted signing key", d.cfg.akHandle)
		}
		k, err := tpm2.Pub(*pub)
		if err != nil {
			return nil, fmt.Errorf("tpm: AK at 0x%08x: %w", d.cfg.akHandle, err)
		}
		return &ak{h: tpm2.AuthHandle{Handle: h, Name: rsp.Name, Auth: tpm2.PasswordAuth(nil)}, pub: k}, nil
	}
	hier := tpm2.TPMRHEndorsement
	if d.cfg.akHierarchy == Owner {
		hier = tpm2.TPMRHOwner
	}
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: hier, Auth: tpm2.PasswordAuth(d.cfg.hierAuth)},
		InPublic:      tpm2.New2B(akTemplate(d.cfg.akAlg)),
	}.Execute(d.c)
	if err != nil {
		return nil, fmt.Errorf("tpm: creating the %s AK under the %s hierarchy (TPM2_CreatePrimary): %w", d.cfg.akAlg, d.cfg.akHierarchy, err)
	}
	a := &ak{h: tpm2.AuthHandle{Handle: rsp.ObjectHandle, Name: rsp.Name, Auth: tpm2.PasswordAuth(nil)}, flush: true}
	pub, err := rsp.OutPublic.Contents()
	if err == nil {
		a.pub, err = tpm2.Pub(*pub)
	}
	if err != nil {
		d.flush(a)
		return nil, fmt.Errorf("tpm: AK public key: %w", err)
	}
	return a, nil
}

func (d *Device) flush(a *ak) error {
	if !a.flush {
		return nil
	}
	_, err := tpm2.FlushContext{FlushHandle: a.h.Handle}.Execute(d.c)
	return err
}

// AKPublic returns the attestation key's public key as PEM (creating the
// AK, or reading the persistent one).
func (d *Device) AKPublic(ctx context.Context) ([]byte, error) {
	var out []byte
	err := d.op(ctx, func() error {
		a, err := d.loadAK()
		if err != nil {
			return err
		}
		defer d.flush(a)
		out, err = tpmverify.MarshalAKPublic(a.pub)
		return err
	})
	return out, err
}

// Attest quotes PCR 0..23 of every allocated bank (one TPM2_Quote per bank)
// with nonce as qualifying data, and returns the evidence: the AK public key
// (PEM), the quotes with the PCR values they cover, the EK certificate when
// the TPM has one in NV, and the firmware event log when readable. The PCR
// values are checked against each quote's PCR digest; should a PCR change
// between reading and quoting, all is done again.
func (d *Device) Attest(ctx context.Context, nonce []byte) (*mr.Evidence, error) {
	if len(nonce) > MaxNonce {
		return nil, fmt.Errorf("%w: nonce of %d bytes (a TPM quote takes at most %d)", mr.ErrMalformed, len(nonce), MaxNonce)
	}
	ev := &mr.Evidence{Platform: mr.PlatformTPM, Nonce: append([]byte(nil), nonce...)}
	err := d.op(ctx, func() error {
		banks, err := d.banksLocked()
		if err != nil {
			return err
		}
		a, err := d.loadAK()
		if err != nil {
			return err
		}
		defer d.flush(a)
		if ev.PublicKey, err = tpmverify.MarshalAKPublic(a.pub); err != nil {
			return err
		}
		all := make([]int, NumPCRs)
		for i := range all {
			all[i] = i
		}
		const attempts = 5
		for attempt := 0; ; attempt++ {
			vals, _, err := d.readLocked(banks, all)
			if err != nil {
				return err
			}
			quotes, err := d.quoteLocked(a, banks, vals, nonce)
			if errors.Is(err, tpmverify.ErrPCRMismatch) && attempt+1 < attempts {
				continue // a PCR changed between read and quote
			}
			if err != nil {
				return err
			}
			ev.TPMQuotes = quotes
			ev.Registers = nil
			for i := 0; i < NumPCRs; i++ {
				for _, b := range banks {
					ev.Registers = append(ev.Registers, mr.Value{Register: pcrRegister(i, b), Digest: mr.Digest{Alg: b, Bytes: vals[b][i]}})
				}
			}
			break
		}
		ev.Time = time.Now().UTC()
		for _, idx := range EKCertIndices {
			cert, err := d.readNVCert(idx)
			if err != nil {
				return err
			}
			if cert != nil {
				ev.Certificates = append(ev.Certificates, cert)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if d.cfg.eventLogPath != "" {
		b, err := os.ReadFile(d.cfg.eventLogPath)
		switch {
		case err == nil:
			ev.FirmwareLog, ev.FirmwareLogFormat = b, string(eventlog.FormatTCG2)
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission):
			// No log: evidence without it is still evidence.
		default:
			return nil, fmt.Errorf("tpm: reading the firmware event log: %w", err)
		}
	}
	return ev, nil
}

func (d *Device) quoteLocked(a *ak, banks []mr.Alg, vals pcrValues, nonce []byte) ([]mr.TPMQuote, error) {
	var quotes []mr.TPMQuote
	for _, b := range banks {
		sel := tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
			Hash: tpm2.TPMIAlgHash(b), PCRSelect: []byte{0xff, 0xff, 0xff}}}}
		rsp, err := tpm2.Quote{
			SignHandle:     a.h,
			QualifyingData: tpm2.TPM2BData{Buffer: nonce},
			InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
			PCRSelect:      sel,
		}.Execute(d.c)
		if err != nil {
			return nil, fmt.Errorf("tpm: TPM2_Quote of bank %v: %w", b, err)
		}
		q := mr.TPMQuote{
			Alg:       b,
			Attest:    append([]byte(nil), rsp.Quoted.Bytes()...),
			Signature: tpm2.Marshal(rsp.Signature),
			PCRs:      map[int][]byte{},
		}
		for i := 0; i < NumPCRs; i++ {
			q.PCRs[i] = vals[b][i]
		}
		// Our own check: signature, nonce and PCR digest.
		if err := tpmverify.VerifyQuote(a.pub, q, nonce); err != nil {
			if errors.Is(err, tpmverify.ErrPCRMismatch) {
				return nil, err
			}
			return nil, fmt.Errorf("tpm: the TPM's own quote does not verify: %w", err)
		}
		quotes = append(quotes, q)
	}
	return quotes, nil
}

// readNVCert reads the certificate at an EK certificate NV index, or
// returns nil when the index is not defined. TPMs pad some certificates;
// the result is cut to the DER length.
func (d *Device) readNVCert(idx uint32) ([]byte, error) {
	h := tpm2.TPMHandle(idx)
	pubRsp, err := tpm2.NVReadPublic{NVIndex: h}.Execute(d.c)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCHandle) {
			return nil, nil // not defined
		}
		return nil, fmt.Errorf("tpm: TPM2_NV_ReadPublic 0x%08x: %w", idx, err)
	}
	pub, err := pubRsp.NVPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("tpm: NV index 0x%08x: %w: %v", idx, ErrBadResponse, err)
	}
	size := int(pub.DataSize)
	const chunk = 512 // below every TPM's TPM_PT_NV_BUFFER_MAX
	var buf bytes.Buffer
	for off := 0; off < size; off += chunk {
		n := min(chunk, size-off)
		var rsp *tpm2.NVReadResponse
		// EK certificate indices allow reads with the index's (empty)
		// authorization or the owner's; try both.
		for _, auth := range []tpm2.TPMHandle{h, tpm2.TPMRHOwner} {
			ah := tpm2.AuthHandle{Handle: auth, Auth: tpm2.PasswordAuth(nil)}
			if auth == h {
				ah.Name = pubRsp.NVName
			}
			rsp, err = tpm2.NVRead{
				AuthHandle: ah,
				NVIndex:    tpm2.NamedHandle{Handle: h, Name: pubRsp.NVName},
				Size:       uint16(n),
				Offset:     uint16(off),
			}.Execute(d.c)
			if err == nil {
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("tpm: reading the EK certificate at NV 0x%08x: %w", idx, err)
		}
		buf.Write(rsp.Data.Buffer)
	}
	b := buf.Bytes()
	var raw asn1.RawValue
	if rest, err := asn1.Unmarshal(b, &raw); err == nil {
		b = b[:len(b)-len(rest)]
	}
	return b, nil
}
