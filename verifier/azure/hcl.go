// Package azure verifies the chain that binds the vTPM of an Azure
// confidential VM (SEV-SNP or TDX) to the hardware: the HCL report the
// paravisor (HCL) stores in vTPM NV index 0x01400001 holds a hardware
// report whose report data is a hash of the HCL runtime data, a JSON
// document that carries the vTPM's attestation key as the JWK "HCLAkPub".
// When the hardware report verifies and the hash matches, a TPM quote
// signed by HCLAkPub is as trustworthy as the hardware report.
//
// The layout is hand-written here because no maintained Go library parses
// it: Microsoft documents it only through its C headers and the Rust
// crates az-snp-vtpm / az-tdx-vtpm (confidential-containers/trustee,
// kinvolk/azure-cvm-tooling), which this package follows:
//
//	offset  size  field (little-endian)
//	0       4     signature "HCLA"
//	4       4     version (1 or 2)
//	8       4     report size: header, hardware report and IGVM request data
//	12      4     request type (2: key release)
//	16      4     status
//	20      12    reserved
//	32      1184  hardware report: an SNP attestation report (1184 bytes) or
//	              a TD report (1024 bytes, zero-padded)
//	1216    4     data size: the 20-byte header below + the runtime data
//	1220    4     version
//	1224    4     report type: 2 SNP, 4 TDX
//	1228    4     report data hash type: 1 sha256, 2 sha384, 3 sha512
//	1232    4     runtime data size N
//	1236    N     HCL runtime data (JSON)
//
// The hardware report's report data starts with hash(runtime data) (the
// rest is zero). An SNP report is signed by the chip (VCEK or VLEK) and is
// verified with snpverify; a TD report is only MACed, so its binding comes
// from a TD quote of the same TD whose body must agree with it, verified
// with tdxverify.
package azure

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"

	"github.com/ccmr-dev/ccmr/mr"
)

// Sizes and constants of the HCL report.
const (
	HeaderSize       = 32
	HWReportSize     = 1184 // the hardware report area: an SNP report's size
	RequestDataStart = HeaderSize + HWReportSize
	requestHdrSize   = 20
	TDReportSize     = 1024
	// ReportTypeSNP and ReportTypeTDX are the IGVM request data's report
	// types.
	ReportTypeSNP = 2
	ReportTypeTDX = 4
	// Hash types of the runtime data hash in the report data.
	HashSHA256 = 1
	HashSHA384 = 2
	HashSHA512 = 3
	maxRuntime = 1 << 20
)

// Errors that name a break of the chain. Each wraps into a *ChainError.
var (
	// ErrRuntimeDataHash: hash(runtime data) is not the hardware report's
	// report data.
	ErrRuntimeDataHash = errors.New("HCL runtime data hash does not match report_data")
	// ErrNoAKPub: the runtime data holds no usable HCLAkPub.
	ErrNoAKPub = errors.New("HCL runtime data holds no HCLAkPub")
	// ErrAKMismatch: the TPM quote's AK is not HCLAkPub.
	ErrAKMismatch = errors.New("the TPM AK is not the HCL report's HCLAkPub")
	// ErrTDReportMismatch: the TD report in the HCL report and the TD
	// quote's body disagree.
	ErrTDReportMismatch = errors.New("the TD report in the HCL report differs from the TD quote")
	// ErrNoTDQuote: a TDX HCL report came without a TD quote.
	ErrNoTDQuote = errors.New("a TDX HCL report needs a TD quote (a TD report is not signed)")
)

// Report is a parsed HCL report. Slices point into the parsed buffer.
type Report struct {
	Version     uint32
	RequestType uint32
	Status      uint32
	// ReportType is ReportTypeSNP or ReportTypeTDX.
	ReportType uint32
	HashType   uint32
	// HWReport is the hardware report: 1184 bytes for SNP, the 1024-byte
	// TD report for TDX.
	HWReport []byte
	// RuntimeData is the HCL runtime data (JSON) as hashed.
	RuntimeData []byte
}

func malformed(off int, format string, a ...any) error {
	return fmt.Errorf("%w: HCL report at byte %d: %s", mr.ErrMalformed, off, fmt.Sprintf(format, a...))
}

// Parse parses an HCL report (bytes after the reported size must be zero:
// the NV index is read whole and zero-padded).
func Parse(b []byte) (*Report, error) {
	le := binary.LittleEndian
	if len(b) < RequestDataStart+requestHdrSize {
		return nil, malformed(len(b), "%d bytes, want at least %d", len(b), RequestDataStart+requestHdrSize)
	}
	if !bytes.Equal(b[:4], []byte("HCLA")) {
		return nil, malformed(0, "signature %q is not \"HCLA\"", b[:4])
	}
	r := &Report{Version: le.Uint32(b[4:]), RequestType: le.Uint32(b[12:]), Status: le.Uint32(b[16:])}
	size := int(le.Uint32(b[8:]))
	if size < RequestDataStart+requestHdrSize || size > len(b) {
		return nil, malformed(8, "report size %d (the buffer has %d bytes)", size, len(b))
	}
	p := RequestDataStart
	dataSize := int(le.Uint32(b[p:]))
	r.ReportType = le.Uint32(b[p+8:])
	r.HashType = le.Uint32(b[p+12:])
	n := int(le.Uint32(b[p+16:]))
	if n > maxRuntime || n > size-p-requestHdrSize {
		return nil, malformed(p+16, "runtime data size %d does not fit the report size %d", n, size)
	}
	if dataSize != requestHdrSize+n {
		return nil, malformed(p, "data size %d, want %d (20 + runtime data size %d)", dataSize, requestHdrSize+n, n)
	}
	if end := p + requestHdrSize + n; end != size {
		return nil, malformed(end, "report size %d, but the runtime data ends at %d", size, end)
	}
	if i := bytes.IndexFunc(b[size:], func(r rune) bool { return r != 0 }); i >= 0 {
		return nil, malformed(size+i, "non-zero byte after the report (size %d)", size)
	}
	switch r.ReportType {
	case ReportTypeSNP:
		r.HWReport = b[HeaderSize : HeaderSize+HWReportSize]
	case ReportTypeTDX:
		r.HWReport = b[HeaderSize : HeaderSize+TDReportSize]
	default:
		return nil, malformed(p+8, "report type %d (want 2 SNP or 4 TDX)", r.ReportType)
	}
	if r.HashType < HashSHA256 || r.HashType > HashSHA512 {
		return nil, malformed(p+12, "hash type %d (want 1 sha256, 2 sha384, 3 sha512)", r.HashType)
	}
	r.RuntimeData = b[p+requestHdrSize : p+requestHdrSize+n]
	return r, nil
}

// Platform names the hardware: "snp" or "tdx".
func (r *Report) Platform() mr.Platform {
	if r.ReportType == ReportTypeTDX {
		return mr.PlatformTDX
	}
	return mr.PlatformSNP
}

// RuntimeDataHash is hash(runtime data) with the report's hash type.
func (r *Report) RuntimeDataHash() []byte {
	switch r.HashType {
	case HashSHA384:
		h := sha512.Sum384(r.RuntimeData)
		return h[:]
	case HashSHA512:
		h := sha512.Sum512(r.RuntimeData)
		return h[:]
	}
	h := sha256.Sum256(r.RuntimeData)
	return h[:]
}

// HashName names the hash type.
func (r *Report) HashName() string {
	return [...]string{"", "sha256", "sha384", "sha512"}[r.HashType]
}

// ReportData is the hardware report's 64-byte report data, as the
// hardware report holds it (unverified).
func (r *Report) ReportData() []byte {
	if r.ReportType == ReportTypeTDX {
		return r.HWReport[128:192] // REPORTMACSTRUCT.REPORTDATA
	}
	return r.HWReport[0x50:0x90]
}

// RuntimeData is the HCL runtime data JSON.
type RuntimeData struct {
	Keys            []JWK           `json:"keys"`
	VMConfiguration json.RawMessage `json:"vm-configuration,omitempty"`
	UserData        string          `json:"user-data,omitempty"`
}

// JWK is one key of the runtime data (RFC 7517; RSA only in practice).
type JWK struct {
	Kid    string   `json:"kid"`
	KeyOps []string `json:"key_ops,omitempty"`
	Kty    string   `json:"kty"`
	E      string   `json:"e,omitempty"`
	N      string   `json:"n,omitempty"`
}

// ParseRuntimeData decodes the runtime data JSON.
func ParseRuntimeData(b []byte) (*RuntimeData, error) {
	var rd RuntimeData
	if err := json.Unmarshal(b, &rd); err != nil {
		return nil, fmt.Errorf("%w: HCL runtime data: %v", mr.ErrMalformed, err)
	}
	return &rd, nil
}

// Key returns the public key of the JWK with the given kid ("HCLAkPub",
// "HCLEkPub").
//
// Two keys with that kid are refused: which one a verifier picks must not
// depend on the parser.
func (rd *RuntimeData) Key(kid string) (crypto.PublicKey, error) {
	n := 0
	for _, k := range rd.Keys {
		if k.Kid == kid {
			n++
		}
	}
	if n > 1 {
		return nil, fmt.Errorf("%w: HCL runtime data holds %d keys %q", mr.ErrMalformed, n, kid)
	}
	for _, k := range rd.Keys {
		if k.Kid != kid {
			continue
		}
		if k.Kty != "RSA" {
			return nil, fmt.Errorf("%w: %s has key type %q (want RSA)", mr.ErrUnsupported, kid, k.Kty)
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("%w: %s: bad base64url n or e", mr.ErrMalformed, kid)
		}
		ev := 0
		for _, c := range e {
			ev = ev<<8 | int(c)
		}
		if ev < 3 || ev%2 == 0 {
			return nil, fmt.Errorf("%w: %s: RSA exponent %d", mr.ErrMalformed, kid, ev)
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: ev}, nil
	}
	return nil, fmt.Errorf("%w (kid %q)", ErrNoAKPub, kid)
}

// AKPub returns HCLAkPub from the report's runtime data.
func (r *Report) AKPub() (crypto.PublicKey, error) {
	rd, err := ParseRuntimeData(r.RuntimeData)
	if err != nil {
		return nil, err
	}
	return rd.Key("HCLAkPub")
}
