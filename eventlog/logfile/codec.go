package logfile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/eventlog/dstack"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/eventlog/tcg"
	"github.com/ccmr-dev/ccmr/mr"
)

// A Codec is one log format. Every reader of logs in ccmr — `ccmr log
// show|replay|export`, the conformance tests, `ccmr evidence import` and the
// verifier — reaches a format through the registry (Lookup, Sniff, the
// methods of File), never through a switch of its own, so a format `ccmr log
// replay` reads is one the verifier reads too, by the same code.
//
// The methods follow go-eventlog's layers:
//
//   - Detect recognises the format from a file's first bytes (at most
//     64 KiB). It must be cheap and must never match another registered
//     format's input: Sniff asks the codecs in registry order and takes the
//     first that says yes.
//   - Show is the parse layer: it reads every record in order and yields it
//     as an eventlog.Event, with what is wrong with a record that does not
//     make the log unreadable in Event.Problems. Bad input is an
//     *eventlog.Error naming the file, the record and the byte offset.
//   - Replay is the replay layer: it folds the records into register
//     values (one per bank for multi-bank formats) and compares them with
//     Options.Expect; a record that contradicts its own content or a value
//     that differs is an *eventlog.Mismatch. The result is returned with a
//     mismatch too.
//
// The extract layer, what a format's records mean (TCG event data and
// EV_NO_ACTION forms, dstack payloads), stays in the format's own package,
// where the verifier reads it (tcg.Log.CheckEventData).
//
// A Codec holds no state: File carries the input, Options the caller's
// choices.
type Codec interface {
	// Format is the name of the format, as --format and a bundle's
	// logs[].format give it.
	Format() eventlog.Format
	// Role tells the verifier which layer judges a log of this format.
	Role() Role
	// Detect reports whether head, a file's first bytes, is this format.
	Detect(head []byte) bool
	// Show calls fn for every record of lf in order.
	Show(ctx context.Context, lf *File, opts Options, fn func(eventlog.Event) error) error
	// Replay replays lf and compares the result with opts.Expect.
	Replay(ctx context.Context, lf *File, opts Options) (*eventlog.Replay, error)
}

// Role is what a log of a format is to the verifier of an evidence bundle.
type Role int

// The roles.
const (
	// RoleFirmware is a platform's boot log (TCG2, CCEL): replayed whole
	// from the reset values, its event data checked, and required to
	// account for the platform's firmware registers.
	RoleFirmware Role = iota + 1
	// RoleRuntime is a segment of the CC runtime log on one backing
	// register (runtime, aael-text): segments are chained, and the first
	// must start at a proven value.
	RoleRuntime
	// RoleIMA is an IMA measurement list, judged by the IMA layer.
	RoleIMA
	// RoleWhole is a log replayed by itself, from zero, that must hold the
	// whole history of every register it extends (dstack-json, cel-json,
	// cel-tlv).
	RoleWhole
	// RoleUserspace is systemd's userspace measurement log: its records
	// follow the firmware log's on the PCRs both extend, so it is replayed
	// from the firmware log's end (verifier: the joint replay).
	RoleUserspace
)

// registry lists the formats in detection order: Sniff asks them in this
// order. The runtime log comes before TCG2 (a runtime log's first record
// has the shape of a SHA-1 TCG record), the JSON formats last (their
// checks are the loosest).
var registry = []Codec{
	runtimeCodec{eventlog.FormatRuntime},
	runtimeCodec{eventlog.FormatAAELText},
	tcgCodec{eventlog.FormatTCG2},
	tcgCodec{eventlog.FormatCCEL},
	imaCodec{eventlog.FormatIMABinary},
	imaCodec{eventlog.FormatIMAASCII},
	imaCodec{ima.BankFormat(false, mr.SHA256)},
	imaCodec{ima.BankFormat(false, mr.SHA384)},
	imaCodec{ima.BankFormat(false, mr.SHA512)},
	imaCodec{ima.BankFormat(false, mr.SM3256)},
	imaCodec{ima.BankFormat(true, mr.SHA256)},
	imaCodec{ima.BankFormat(true, mr.SHA384)},
	imaCodec{ima.BankFormat(true, mr.SHA512)},
	imaCodec{ima.BankFormat(true, mr.SM3256)},
	dstackCodec{},
	celTLVCodec{},
	systemdCodec{}, // before cel-json, which would take it for a runtime export
	runtimeCodec{eventlog.FormatCELJSON},
}

// Lookup returns the codec of format f; auto and unknown names have none.
func Lookup(f eventlog.Format) (Codec, bool) {
	for _, c := range registry {
		if c.Format() == f {
			return c, true
		}
	}
	return nil, false
}

// Formats lists the formats the registry holds, in detection order.
func Formats() []eventlog.Format {
	out := make([]eventlog.Format, len(registry))
	for i, c := range registry {
		out[i] = c.Format()
	}
	return out
}

// FormatList names the formats for messages: "tcg2, ccel, ...".
func FormatList() string {
	names := make([]string, len(registry))
	for i, c := range registry {
		names[i] = string(c.Format())
	}
	return strings.Join(names, ", ")
}

// ParseFormat checks a --format value: auto (or nothing) or a registered
// format.
func ParseFormat(s string) (eventlog.Format, error) {
	if s == "" || s == string(eventlog.FormatAuto) {
		return eventlog.FormatAuto, nil
	}
	if c, ok := Lookup(eventlog.Format(s)); ok {
		return c.Format(), nil
	}
	return "", fmt.Errorf("%w: format %q (want one of auto, %s)", mr.ErrUnsupported, s, FormatList())
}

// SniffSize is how many bytes of a file Open reads to sniff its format.
const SniffSize = 64 << 10

// Sniff guesses a log's format from its first bytes: the first codec in
// registry order whose Detect says yes.
func Sniff(head []byte) (eventlog.Format, bool) {
	for _, c := range registry {
		if c.Detect(head) {
			return c.Format(), true
		}
	}
	return "", false
}

// detectAAEL, detectTCG and detectIMA ask a format package's own sniffer,
// which tells its formats apart.
func detectAAEL(head []byte, f eventlog.Format) bool {
	got, ok := aael.Sniff(head)
	return ok && got == f
}

// detectTCG also reads a head that is the start of a larger file (Open
// reads SniffSize bytes): its last record is then usually cut. The records
// before the cut one decide, whatever tcg.Sniff makes of the whole head;
// Parse reports any error of the whole file later. (A SHA-1 log of more
// than 64 KiB, go-attestation's option_rom_eventlog, was taken for
// CEL-TLV: both start 00 00 00 00 08; an unpadded CCEL of more than 64 KiB
// was taken for TCG2, as tcg.Sniff names any crypto-agile log it cannot
// read to its end TCG2, and then read with PCR names.) A cut head is a
// guess: it yields to the IMA and dstack formats, registered after TCG,
// that recognise the head by their own rules (a head of 01 00 00 00
// repeated is an IMA list to ima.Detect and was taken for TCG2), never to
// CEL-TLV, whose five-byte signature a SHA-1 record shares.
func detectTCG(head []byte, f eventlog.Format) bool {
	if len(head) >= SniffSize {
		var le *eventlog.Error
		if _, err := tcg.Parse("", head, eventlog.FormatTCG2); errors.As(err, &le) && le.Record >= 1 && le.Offset > 0 && le.Offset < int64(len(head)) {
			if _, isIMA := ima.Detect(head); isIMA || dstack.Sniff(head) {
				return false
			}
			head = head[:le.Offset]
		}
	}
	got, ok := tcg.Sniff(head)
	return ok && got == f
}

func detectIMA(head []byte, f eventlog.Format) bool {
	got, ok := ima.Detect(head)
	return ok && got == f
}

func detectDstack(head []byte) bool { return dstack.Sniff(head) }

// detectCELTLV recognises a CEL-TLV log by its first TLV: the recnum (type
// 0) with an 8-byte big-endian value.
func detectCELTLV(head []byte) bool {
	return len(head) >= 5 && head[0] == 0 && head[1] == 0 && head[2] == 0 && head[3] == 0 && head[4] == 8
}

// detectCELJSON recognises CEL-JSON (a JSON array or JSON text sequence of
// records with content_type).
func detectCELJSON(head []byte) bool {
	t := bytes.TrimLeft(head, " \t\r\n[\x1e")
	return bytes.HasPrefix(t, []byte("{")) && bytes.Contains(head, []byte(`"content_type"`))
}
