package fleet

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	sevabi "github.com/google/go-sev-guest/abi"
	"github.com/google/go-tdx-guest/pcs"

	"github.com/ccmr-dev/ccmr/internal/strictjson"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tdxverify"
)

// A TDX or SEV-SNP guest has no key of its own in its evidence (a TPM has
// its AK, the sim its device key): what the fleet pins for such a machine
// is the hardware its evidence must come from (docs/fleet.md, "TDX and
// SNP machines"):
//
//   - SEV-SNP: the report's CHIP_ID, 64 bytes, signed in the report by the
//     VCEK, whose certificate's HWID the verifier checks equals it. The
//     VCEK itself changes with every TCB update, CHIP_ID does not.
//   - TDX: the PPID (Platform Provisioning ID, 16 bytes) in the SGX
//     extensions of the PCK certificate the quote carries, which the
//     verifier chains to Intel's root and checks signed the quoting
//     enclave's report that binds the attestation key. A quote without
//     the PCK chain (certification data type 5) has no identity.
//
// Both name the host platform, not the guest: another guest on the same
// host has the same identity. The pin stops evidence from another
// machine's hardware being posted as this machine's; the nonce, the policy
// and the monitor state do the rest.

// ErrIdentity: the evidence comes from other hardware than the machine was
// enrolled with (403, nothing written).
var ErrIdentity = errors.New("the evidence comes from other hardware than the machine's enrolled identity")

// Identity prefixes: an identity names its kind, so that a CHIP_ID can
// never be compared with a PPID.
const (
	snpChipPrefix = "snp-chip-id:"
	tdxPPIDPrefix = "tdx-ppid:"
)

// snpChipID locates CHIP_ID in an SEV-SNP attestation report (AMD SEV-SNP
// ABI, table 22: offset 0x1A0, 64 bytes), and the signer info that says
// which key signed it (offset 0x48, SIGNING_KEY in bits 4:2), in the
// signed part, which ends at 0x2A0.
const (
	snpSignerInfoOffset = 0x48
	snpChipIDOffset     = 0x1A0
	snpChipIDSize       = 64
	snpSignedEnd        = 0x2A0
)

// Identity is the hardware identity a TDX quote or SEV-SNP report names, as
// the fleet stores it: "snp-chip-id:HEX" or "tdx-ppid:HEX". It parses the
// evidence and proves nothing: the identity counts only for evidence the
// verifier then accepts.
func Identity(platform mr.Platform, evidence []byte) (string, error) {
	switch platform {
	case mr.PlatformSNP:
		if len(evidence) < snpSignedEnd {
			return "", fmt.Errorf("%w: SEV-SNP report: %d bytes, want at least %d", mr.ErrMalformed, len(evidence), snpSignedEnd)
		}
		// Only a VCEK, the chip's own key, binds CHIP_ID: the verifier
		// compares it with the VCEK's HWID. A VLEK is the cloud
		// provider's key, shared by its chips, and under it CHIP_ID is
		// compared with nothing: such a report names no chip, whatever
		// its CHIP_ID field holds.
		info, err := sevabi.ParseSignerInfo(binary.LittleEndian.Uint32(evidence[snpSignerInfoOffset:]))
		if err != nil {
			return "", fmt.Errorf("%w: SEV-SNP report: offset %#x: signer info: %v", mr.ErrMalformed, snpSignerInfoOffset, err)
		}
		if info.SigningKey != sevabi.VcekReportSigner {
			return "", fmt.Errorf("SEV-SNP report: offset %#x: signed by the %v, not a VCEK: the report names no chip", snpSignerInfoOffset, info.SigningKey)
		}
		id := evidence[snpChipIDOffset : snpChipIDOffset+snpChipIDSize]
		if bytes.Count(id, []byte{0}) == len(id) {
			// MASK_CHIP_ID: nothing to pin.
			return "", errors.New("SEV-SNP report: CHIP_ID is zero (MASK_CHIP_ID): the report names no chip")
		}
		return snpChipPrefix + hex.EncodeToString(id), nil
	case mr.PlatformTDX:
		q, err := tdxverify.ParseQuote(evidence)
		if err != nil {
			return "", fmt.Errorf("TDX quote: %w", err)
		}
		blk, _ := pem.Decode(q.PCKChain)
		if blk == nil || blk.Type != "CERTIFICATE" {
			return "", errors.New("TDX quote: no PCK certificate chain (certification data type 5): the quote names no platform")
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return "", fmt.Errorf("TDX quote: PCK certificate: %w", err)
		}
		ext, err := pcs.PckCertificateExtensions(c)
		if err != nil {
			return "", fmt.Errorf("TDX quote: PCK certificate: %w", err)
		}
		ppid, err := hex.DecodeString(ext.PPID)
		if err != nil || len(ppid) != 16 || bytes.Count(ppid, []byte{0}) == len(ppid) {
			return "", fmt.Errorf("TDX quote: PCK certificate: PPID %q is no 16-byte identity", ext.PPID)
		}
		return tdxPPIDPrefix + hex.EncodeToString(ppid), nil
	}
	return "", fmt.Errorf("platform %q: no hardware identity (sim and TPM machines pin a key)", platform)
}

// ParseIdentity checks an identity given by hand (`--hw-id`): HEX of
// CHIP_ID (64 bytes) for SNP, of the PPID (16 bytes) for TDX, with or
// without its prefix; it returns it as Identity writes it.
func ParseIdentity(platform mr.Platform, s string) (string, error) {
	var prefix string
	var size int
	switch platform {
	case mr.PlatformSNP:
		prefix, size = snpChipPrefix, snpChipIDSize
	case mr.PlatformTDX:
		prefix, size = tdxPPIDPrefix, 16
	default:
		return "", fmt.Errorf("platform %q: no hardware identity", platform)
	}
	b, err := hex.DecodeString(strings.TrimPrefix(s, prefix))
	if err != nil || len(b) != size || bytes.Count(b, []byte{0}) == len(b) {
		return "", fmt.Errorf("%s identity %q: want %d non-zero bytes in hex", platform, s, size)
	}
	return prefix + hex.EncodeToString(b), nil
}

// Trust is the trust material a TDX or SNP machine is judged with, as
// `ccmr verify`'s flags give it, stored with the machine at enrolment.
type Trust struct {
	// AllowedTCB are TDX TCB statuses trusted besides UpToDate (--allow-tcb).
	AllowedTCB []string `json:"allowed_tcb,omitempty"`
	// AllowMissingCollateral lets a TDX quote without collateral pass,
	// weakened (--allow-missing-collateral).
	AllowMissingCollateral bool `json:"allow_missing_collateral,omitempty"`
	// TDXCollateral replaces the bundles' collateral (--collateral).
	TDXCollateral []byte `json:"tdx_collateral,omitempty"`
	// SNPCRL is AMD's CRL for the machine's product line (--snp-crl).
	SNPCRL []byte `json:"snp_crl,omitempty"`
}

// parseTrust reads a machine's stored trust strictly (empty: none).
func parseTrust(b []byte) (*Trust, error) {
	var t Trust
	if len(b) == 0 {
		return &t, nil
	}
	if err := strictjson.Decode(b, &t); err != nil {
		return nil, fmt.Errorf("stored trust: %w", err)
	}
	return &t, nil
}

// Marshal encodes t as the store keeps it.
func (t *Trust) Marshal() ([]byte, error) { return json.Marshal(t) }
