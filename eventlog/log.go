// Package eventlog holds what every measurement-log format in ccmr shares: the
// format names of the CLI's --format flag, the event shape `ccmr log show`
// prints, the result of a replay, and the error that names the file, record
// and byte offset of bad input. The formats themselves live in eventlog/tcg,
// eventlog/ima, eventlog/aael, eventlog/cel and eventlog/dstack; the
// registry every reader of a log goes through is eventlog/logfile.
package eventlog

import (
	"errors"
	"fmt"

	"github.com/ccmr-dev/ccmr/mr"
)

// Format names a log encoding, as given to --format.
type Format string

// The formats of the CLI's --format flag.
const (
	FormatAuto       Format = "auto"
	FormatTCG2       Format = "tcg2"
	FormatCCEL       Format = "ccel"
	FormatIMABinary  Format = "ima-binary"
	FormatIMAASCII   Format = "ima-ascii"
	FormatRuntime    Format = "runtime"
	FormatAAELText   Format = "aael-text"
	FormatCELJSON    Format = "cel-json"
	FormatCELTLV     Format = "cel-tlv"
	FormatDstackJSON Format = "dstack-json"
	FormatSystemd    Format = "systemd" // systemd's tpm2-measure.log (CEL-JSON)
)

// Event is one record of a log, as `ccmr log show` prints it.
type Event struct {
	// Index is the record number, counting from 0.
	Index int `json:"index"`
	// Offset is the byte offset of the record's first byte in the file.
	Offset int64 `json:"offset"`
	// Register is the register the record extends: pcr10, rtmr3, mrtd, mr_ima.
	Register string `json:"register"`
	// Type is the event type: EV_POST_CODE, an IMA template name, AAEL.
	Type string `json:"type"`
	// Digests are the digests the record extends, one per bank.
	Digests []mr.Digest `json:"digests"`
	// Text describes the record for people: a file path, an AAEL record.
	Text string `json:"text"`
	// Problems lists what is wrong with the record without making the log
	// unreadable, e.g. event data that does not hash to its digest.
	Problems []string `json:"problems,omitempty"`
	// DigestOnly marks a record whose digest is replayed but not
	// recomputed from what the record shows (a dstack boot event, a CEL
	// record of a foreign content type): its text is vouched for by
	// nothing. The verifier reports such records as not checked.
	DigestOnly bool `json:"-"`
}

// Replay is the outcome of replaying a log.
type Replay struct {
	// Registers are the computed values of every register the log touches
	// (one per bank for TPM logs), in a stable order.
	Registers []mr.Value `json:"registers"`
	// Virtual are the virtual registers derived from a runtime log.
	Virtual []mr.Value `json:"virtual,omitempty"`
	// Events is the number of records replayed.
	Events int `json:"events"`
}

// Error is bad input at a known place. Every parser returns one (wrapping
// mr.ErrMalformed or a more specific cause) so messages name the file, the
// record number and the byte offset.
type Error struct {
	File   string
	Record int   // record number from 0; -1 when the error is not about one record
	Offset int64 // byte offset in the file
	Err    error
}

// Error names the file, the record number and the byte offset.
func (e *Error) Error() string {
	f := e.File
	if f == "" {
		f = "<input>"
	}
	if e.Record < 0 {
		return fmt.Sprintf("%s: at byte %d: %v", f, e.Offset, e.Err)
	}
	return fmt.Sprintf("%s: record %d at byte %d: %v", f, e.Record, e.Offset, e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// ErrMismatch marks a log that parses but does not replay to the expected
// value, or whose record does not match its own data. Callers tell it apart
// from bad input (exit 1 against exit 2).
var ErrMismatch = errors.New("replay mismatch")

// Mismatch is a replay failure at a known place. Record is the first record
// known to be bad, or -1 when only the final value disagrees and no record
// can be blamed (a TPM PCR holds only the end of the chain).
type Mismatch struct {
	File     string
	Register string
	Record   int
	Offset   int64
	Expected mr.Digest
	Computed mr.Digest
	Reason   string
}

// Error names the file, the record, the register and the values.
func (m *Mismatch) Error() string {
	f := m.File
	if f == "" {
		f = "<input>"
	}
	where := ""
	if m.Record >= 0 {
		where = fmt.Sprintf(" record %d at byte %d:", m.Record, m.Offset)
	}
	s := fmt.Sprintf("%s:%s %s", f, where, m.Register)
	if m.Reason != "" {
		s += ": " + m.Reason
	}
	if !m.Expected.IsZero() || !m.Computed.IsZero() {
		s += fmt.Sprintf(" (expected %v, computed %v)", m.Expected, m.Computed)
	}
	return s
}

// Unwrap makes errors.Is(m, ErrMismatch) true.
func (m *Mismatch) Unwrap() error { return ErrMismatch }
