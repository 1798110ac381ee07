package tcg

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"iter"
	"strings"
	"unicode/utf16"

	gtcg "github.com/google/go-eventlog/tcg"

	"github.com/ccmr-dev/ccmr/eventlog"
)

// AAELTag is the TCG_PCClientTaggedEvent ID of a Confidential Containers
// attestation-agent event log record ("AAEL" read as a big-endian u32).
const AAELTag = 0x4141454c

const maxText = 160

// TaggedEvent splits a TCG_PCClientTaggedEvent (EV_EVENT_TAG data): u32 ID,
// u32 size, then size bytes. ok is false when the sizes do not agree.
func TaggedEvent(data []byte) (id uint32, payload []byte, ok bool) {
	if len(data) < 8 {
		return 0, nil, false
	}
	id = binary.LittleEndian.Uint32(data)
	n := binary.LittleEndian.Uint32(data[4:])
	if uint64(n) != uint64(len(data)-8) {
		return id, nil, false
	}
	return id, data[8:], true
}

// Show returns the records as `ccmr log show` prints them, in log order:
// register name, EV_ type name, digests, a short text and the problems
// found in the record (see the package doc). It never fails: a record whose
// data does not parse gets a plain text.
func (l *Log) Show() iter.Seq[eventlog.Event] {
	return func(yield func(eventlog.Event) bool) {
		sep := map[uint32]int{}
		pcr0Extended := false
		sawLocality4 := false
		tpm := l.Format != eventlog.FormatCCEL
		for i := range l.Events {
			e := &l.Events[i]
			name, inRange := RegisterName(l.Format, e.Index)
			ev := eventlog.Event{
				Index:    e.Num,
				Offset:   e.Offset,
				Register: name,
				Type:     e.Type.String(),
				Digests:  e.Digests,
				Text:     l.text(e),
			}
			header := e.Num == 0 && l.CryptoAgile
			if !inRange && !header && e.Type != EvNoAction {
				ev.Problems = append(ev.Problems, fmt.Sprintf("register index %d is out of range", e.Index))
			}
			if !header && e.Type != EvNoAction {
				for _, a := range l.Banks {
					if _, ok := e.Digest(a); !ok {
						ev.Problems = append(ev.Problems, fmt.Sprintf("no %v digest", a))
					}
				}
				ev.Problems = append(ev.Problems, dataDigestProblems(e)...)
			}
			switch {
			case e.Type == EvNoAction:
				if loc, ok := startupLocality(e); ok && tpm {
					switch {
					case loc > 4:
						ev.Problems = append(ev.Problems, fmt.Sprintf("StartupLocality %d is not a locality: ignored", loc))
					case pcr0Extended:
						ev.Problems = append(ev.Problems, "StartupLocality after PCR 0 was extended: ignored")
					case loc == 4:
						sawLocality4 = true
					}
				}
			case e.Type == EvSeparator:
				if first, dup := sep[e.Index]; dup {
					ev.Problems = append(ev.Problems, fmt.Sprintf("duplicate EV_SEPARATOR on %s (first at record %d)", name, first))
				} else {
					sep[e.Index] = e.Num
				}
			case e.Type == EvEFIHCRTMEvent && tpm && !sawLocality4:
				ev.Problems = append(ev.Problems, "H-CRTM event without a preceding StartupLocality 4 record: PCR 0 replayed from zero")
			}
			if tpm && e.Index == 0 && e.Type != EvNoAction && !header {
				pcr0Extended = true
			}
			if !yield(ev) {
				return
			}
		}
	}
}

// hashesData lists the event types whose digest the PC Client PFP
// specification defines as the hash of the event data. Not listed:
// EV_EFI_VARIABLE_AUTHORITY, whose digest EDK2 firmware and shim compute
// over a structure other than the logged data in every real log of the
// corpus; EV_POST_CODE and the blob/image types, which hash what the data
// only describes.
var hashesData = map[EventType]bool{
	EvSeparator:               true,
	EvIPL:                     true, // systemd-boot's UTF-16 text only, see dataDigestProblems
	EvEventTag:                true, // AAEL records only, see dataDigestProblems
	EvAction:                  true,
	EvEFIAction:               true,
	EvSCRTMVersion:            true,
	EvOmitBootDeviceEvents:    true,
	EvEFIVariableDriverConfig: true,
	EvEFIVariableBoot:         true,
	EvEFIVariableBoot2:        true,
	EvEFIGPTEvent:             true,
}

// dataDigestProblems checks a record whose digest must be the hash of its
// data. EV_EFI_VARIABLE_BOOT may also hash only the variable's data, as
// many firmwares do and the PFP specification's errata allow.
func dataDigestProblems(e *Event) []string {
	if !hashesData[e.Type] {
		return nil
	}
	if e.Type == EvIPL && !utf16ASCII(e.Data) {
		// GRUB's EV_IPL records log "grub_cmd: ..." but hash the bare
		// command; only systemd-boot's UTF-16 command lines hash the data.
		return nil
	}
	if e.Type == EvEventTag {
		// Only AAEL records hash the whole tagged event; other tags (grub's,
		// systemd-stub's) carry a description of what they hashed.
		if id, _, ok := TaggedEvent(e.Data); !ok || id != AAELTag {
			return nil
		}
	}
	var alt []byte
	if e.Type == EvEFIVariableBoot {
		if v, err := gtcg.ParseUEFIVariableData(bytes.NewReader(e.Data)); err == nil {
			alt = v.VariableData
		}
	}
	var bad []string
	for _, d := range e.Digests {
		if !d.Alg.Valid() {
			continue
		}
		if bytes.Equal(d.Alg.Sum(e.Data).Bytes, d.Bytes) {
			continue
		}
		if alt != nil && bytes.Equal(d.Alg.Sum(alt).Bytes, d.Bytes) {
			continue
		}
		bad = append(bad, d.Alg.String())
	}
	if len(bad) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("event data does not hash to its %s digest", strings.Join(bad, ", "))}
}

// text describes a record in a few words.
func (l *Log) text(e *Event) string {
	s := l.describe(e)
	if len(s) > maxText {
		s = s[:maxText-3] + "..."
	}
	return s
}

func (l *Log) describe(e *Event) string {
	d := e.Data
	switch e.Type {
	case EvNoAction:
		if e.Num == 0 && l.SpecID != nil {
			var names []string
			for _, a := range l.SpecID.Algs {
				names = append(names, a.Alg.String())
			}
			return "Spec ID Event03: " + strings.Join(names, ", ")
		}
		if loc, ok := startupLocality(e); ok {
			return fmt.Sprintf("StartupLocality %d", loc)
		}
		if i := bytes.IndexByte(d, 0); i > 0 && printable(d[:i]) {
			return string(d[:i])
		}
	case EvSeparator:
		if len(d) == 4 {
			switch binary.LittleEndian.Uint32(d) {
			case 0:
				return "separator"
			case 0xFFFFFFFF, 1:
				return "separator (error)"
			}
		}
	case EvEventTag:
		id, payload, ok := TaggedEvent(d)
		if ok && id == AAELTag {
			return printableOr(payload)
		}
		if ok {
			return fmt.Sprintf("tag 0x%08x: %s", id, printableOr(payload))
		}
	case EvEFIVariableDriverConfig, EvEFIVariableBoot, EvEFIVariableBoot2, EvEFIVariableAuthority:
		if v, err := gtcg.ParseUEFIVariableData(bytes.NewReader(d)); err == nil {
			return fmt.Sprintf("%s (%d bytes)", printableOr([]byte(v.VarName())), len(v.VariableData))
		}
	case EvEFIBootServicesApp, EvEFIBootServicesDriver, EvEFIRuntimeServicesDriver:
		if img, err := gtcg.ParseEFIImageLoad(bytes.NewReader(d)); err == nil {
			if p := devicePathText(&img); p != "" {
				return p
			}
			return fmt.Sprintf("image of %d bytes", img.Header.Length)
		}
	case EvEFIPlatformFirmwareBlob:
		if len(d) == 16 {
			return fmt.Sprintf("blob at 0x%x, %d bytes", binary.LittleEndian.Uint64(d), binary.LittleEndian.Uint64(d[8:]))
		}
	case EvEFIPlatformFirmwareBlob2, EvEFIHandoffTables2:
		if len(d) > 0 && int(d[0]) < len(d) {
			return printableOr(d[1 : 1+int(d[0])])
		}
	}
	if len(d) == 0 {
		return ""
	}
	if s, ok := textOf(d); ok {
		return s
	}
	return fmt.Sprintf("%d bytes", len(d))
}

// devicePathText returns the file path elements of an EFI device path
// (media device, file path subtype), joined.
func devicePathText(img *gtcg.EFIImageLoad) string {
	els, err := img.DevicePath()
	if err != nil {
		return ""
	}
	var parts []string
	for _, el := range els {
		if el.Type == gtcg.MediaDevice && el.Subtype == 4 {
			if s, ok := utf16Text(el.Data); ok {
				parts = append(parts, s)
			}
		}
	}
	return strings.Join(parts, "")
}

// textOf decodes printable ASCII or UTF-16LE data, without trailing NULs.
func textOf(d []byte) (string, bool) {
	t := bytes.TrimRight(d, "\x00")
	if len(t) > 0 && printable(t) {
		return string(t), true
	}
	return utf16Text(d)
}

func utf16Text(d []byte) (string, bool) {
	if len(d) < 2 || len(d)%2 != 0 {
		return "", false
	}
	u := make([]uint16, 0, len(d)/2)
	for i := 0; i+1 < len(d); i += 2 {
		u = append(u, binary.LittleEndian.Uint16(d[i:]))
	}
	for len(u) > 0 && u[len(u)-1] == 0 {
		u = u[:len(u)-1]
	}
	if len(u) == 0 {
		return "", false
	}
	s := string(utf16.Decode(u))
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0xFFFD {
			return "", false
		}
	}
	return s, true
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			if c != '\t' && c != '\n' && c != '\r' {
				return false
			}
		}
	}
	return true
}

// printableOr returns b as text when printable, else a quoted form.
func printableOr(b []byte) string {
	if printable(b) {
		return string(b)
	}
	return fmt.Sprintf("%q", b)
}

// utf16ASCII reports whether d looks like UTF-16LE ASCII text (as
// systemd-boot logs its command line): at least two characters, every
// second byte zero, a possible odd trailing byte ignored.
func utf16ASCII(d []byte) bool {
	if len(d) < 4 {
		return false
	}
	for i := 0; i+1 < len(d); i += 2 {
		if d[i+1] != 0 || (d[i] != 0 && (d[i] < 0x20 || d[i] > 0x7e)) {
			return false
		}
	}
	return d[0] != 0
}
