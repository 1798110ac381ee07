package mr

import (
	"context"
	"strings"
	"time"
)

// Flags say what can be done with a register.
type Flags uint8

// Register flags.
const (
	// Readable: the current value can be read from inside the guest.
	Readable Flags = 1 << iota
	// Extendable: the guest can extend it at run time.
	Extendable
	// Reported: the value is covered by the device's attestation evidence.
	Reported
	// Virtual: a virtual register derived from a runtime log (package vmr).
	Virtual
)

// String lists the set flags, e.g. "read,extend,report".
func (f Flags) String() string {
	var s []string
	for _, n := range []struct {
		f Flags
		n string
	}{{Readable, "read"}, {Extendable, "extend"}, {Reported, "report"}, {Virtual, "virtual"}} {
		if f&n.f != 0 {
			s = append(s, n.n)
		}
	}
	return strings.Join(s, ",")
}

// Register describes one measurement register. A TPM PCR exists once per
// active bank: pcr10 in sha1 and pcr10 in sha256 are two Registers with the
// same Name and different Alg.
type Register struct {
	// Name is lowercase: mrtd, rtmr0..rtmr3, pcr0..pcr23, measurement, mr_ima.
	Name string
	// Alg is the register's hash algorithm. For registers that are not
	// extended (mrconfigid, host_data, report_data) it is the algorithm whose
	// size the field has, or 0 when the field is opaque bytes.
	Alg Alg
	// Size is the value's size in bytes.
	Size int
	// Flags say what the register supports.
	Flags Flags
	// Index is the hardware index: the PCR number, or the CC MR index
	// (0 = MRTD, 1..4 = RTMR0..3) on TDX; -1 when there is none.
	Index int
}

// Value is a register's value at one moment.
type Value struct {
	Register Register
	Digest   Digest
}

// Device is one source of measurement registers: a TPM, TDX, SNP or the
// software device. Implementations are safe for use by one goroutine at a time
// unless they say otherwise; backends that share state across processes
// (the software device) serialise themselves.
type Device interface {
	// Kind names the backend: "sim", "tpm", "tdx", "snp".
	Kind() string
	// Registers lists every register the device has, TPM banks included.
	Registers(ctx context.Context) ([]Register, error)
	// Read returns the values of the named registers (every bank of each
	// name on a TPM), or of every readable register when names is empty.
	// An unknown name fails with ErrUnknownRegister.
	Read(ctx context.Context, names ...string) ([]Value, error)
	// Extend extends register name with d. On a multi-bank device d.Alg
	// selects the bank. Fails with ErrUnknownRegister, ErrNotExtendable
	// or ErrDigestSize, in which case nothing changed.
	Extend(ctx context.Context, name string, d Digest) error
	// ExtendData extends every bank of register name with that bank's hash
	// of data (one PCR_Extend on a TPM).
	ExtendData(ctx context.Context, name string, data []byte) error
	// Close releases the device.
	Close() error
}

// Attester is a Device that can produce signed evidence of its registers.
type Attester interface {
	// Attest returns evidence binding nonce to the current register values.
	Attest(ctx context.Context, nonce []byte) (*Evidence, error)
}

// Platform names the kind of hardware evidence.
type Platform string

// Platforms.
const (
	PlatformSim Platform = "sim"
	PlatformTPM Platform = "tpm"
	PlatformTDX Platform = "tdx"
	PlatformSNP Platform = "snp"
)

// Evidence is what a device's attestation yields. The verifier package turns
// it into a ccmr-evidence/v1 bundle together with the logs.
type Evidence struct {
	Platform Platform
	Nonce    []byte
	Time     time.Time
	// Report is the raw hardware evidence: a TDX quote, an SNP attestation
	// report, or the sim device's signed statement.
	Report []byte
	// Signature over Report where the format keeps them apart (sim).
	Signature []byte
	// PublicKey is the PEM public key that signed (sim key, TPM AK).
	PublicKey []byte
	// TPMQuotes holds one quote per PCR bank.
	TPMQuotes []TPMQuote
	// Certificates: EK certificate, VCEK/VLEK, PCK chain (DER).
	Certificates [][]byte
	// FirmwareLog is the TCG2 log (TPM) or CCEL (TDX), when readable.
	FirmwareLog       []byte
	FirmwareLogFormat string
	// Registers are the values claimed at the time of the evidence.
	Registers []Value
}

// TPMQuote is one TPM2_Quote: the TPMS_ATTEST and TPMT_SIGNATURE in their
// marshalled TPM forms (as tpm2_quote writes them), and the PCR values it covers.
type TPMQuote struct {
	Alg       Alg
	Attest    []byte
	Signature []byte
	// PCRs holds the quoted PCR values of this bank, by index.
	PCRs map[int][]byte
}

// IsVirtualName reports whether name is a valid virtual register name:
// "mr_" followed by 1 to 60 of [a-z0-9_.-]. (A loop, not a regular
// expression: log replay calls it for every record.)
func IsVirtualName(name string) bool {
	rest, ok := strings.CutPrefix(name, "mr_")
	if !ok || len(rest) < 1 || len(rest) > 60 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// MultiExtender is a Device that can extend one register with several
// digests, in order, in a single update: the result equals Extend called for
// each digest in turn, and either all are applied or none. The software
// device implements it so that a batch of virtual extends does not rewrite
// its state file once per record; callers fall back to Extend otherwise.
type MultiExtender interface {
	ExtendMany(ctx context.Context, name string, ds []Digest) error
}
