package aael

import (
	"encoding/binary"
	"fmt"

	"github.com/ccmr-dev/ccmr/mr"
)

// TCG event types and the AAEL tag.
const (
	// EvNoAction (EV_NO_ACTION) entries are never extended; the INIT entry is one.
	EvNoAction uint32 = 3
	// EvEventTag (EV_EVENT_TAG) carries a TCG_PCClientTaggedEvent.
	EvEventTag uint32 = 6
	// TagAAEL is the taggedEventID of AAEL events, "AAEL" read as a
	// big-endian number (the bytes "LEAA" on disk, little-endian).
	TagAAEL uint32 = 0x4141454c
)

// taggedHeader is the size of the TCG_PCClientTaggedEvent header (ID, size).
const taggedHeader = 8

// AppendTaggedEvent appends the TCG_PCClientTaggedEvent for record text
// payload: u32 LE 0x4141454c, u32 LE len(payload), payload.
func AppendTaggedEvent(dst []byte, payload string) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, TagAAEL)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// EventDigest returns H_alg of the tagged event of rec: the digest its
// entry carries and the value extended into the backing register.
func EventDigest(alg mr.Alg, rec Record) (mr.Digest, error) {
	if !alg.Valid() {
		return mr.Digest{}, fmt.Errorf("%w: algorithm %v", mr.ErrUnsupported, alg)
	}
	if err := rec.Validate(); err != nil {
		return mr.Digest{}, err
	}
	return alg.Sum(AppendTaggedEvent(nil, rec.String())), nil
}

func appendHeader(dst []byte, mrIndex, typ uint32, d mr.Digest, eventSize int) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, mrIndex)
	dst = binary.LittleEndian.AppendUint32(dst, typ)
	dst = binary.LittleEndian.AppendUint32(dst, 1)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(d.Alg))
	dst = append(dst, d.Bytes...)
	return binary.LittleEndian.AppendUint32(dst, uint32(eventSize))
}

// AppendEntry validates rec and appends its TCG_PCR_EVENT2 entry (MR index
// mrIndex, EV_EVENT_TAG, one digest of alg, the AAEL tagged event) to dst.
// It returns the extended slice and the digest to extend the backing
// register with. On error dst is returned unchanged.
func AppendEntry(dst []byte, mrIndex uint32, alg mr.Alg, rec Record) ([]byte, mr.Digest, error) {
	if !alg.Valid() {
		return dst, mr.Digest{}, fmt.Errorf("%w: algorithm %v", mr.ErrUnsupported, alg)
	}
	if err := rec.Validate(); err != nil {
		return dst, mr.Digest{}, err
	}
	s := rec.String()
	ev := AppendTaggedEvent(make([]byte, 0, taggedHeader+len(s)), s)
	d := alg.Sum(ev)
	dst = appendHeader(dst, mrIndex, EvEventTag, d, len(ev))
	return append(dst, ev...), d, nil
}

// AppendInit appends the INIT entry: EV_NO_ACTION, MR index mrIndex, a
// zero digest of start's algorithm (TCG PFP: EV_NO_ACTION digests are
// zero), and the AAEL tagged event `INIT ALG/HEX` holding the backing
// register's value when the log (segment) began. It is never extended.
func AppendInit(dst []byte, mrIndex uint32, start mr.Digest) ([]byte, error) {
	if _, err := mr.NewDigest(start.Alg, start.Bytes); err != nil {
		return dst, fmt.Errorf("INIT: %w", err)
	}
	ev := AppendTaggedEvent(nil, InitString(start))
	dst = appendHeader(dst, mrIndex, EvNoAction, mr.Zero(start.Alg), len(ev))
	return append(dst, ev...), nil
}

// Entry is one entry of a runtime log, as a Reader returns it.
type Entry struct {
	// Index is the entry number, from 0 (the INIT entry included).
	Index int
	// Offset is the byte offset of the entry's first byte (binary form)
	// or of its line (aael-text).
	Offset int64
	// Size is the entry's length in bytes (line with LF for aael-text).
	Size int64
	// MRIndex is the MR index (CC MR index on TDX, PCR number on a TPM).
	// The aael-text form carries none: it is the reader's option.
	MRIndex uint32
	// Type is the event type: EvEventTag, EvNoAction, or (foreign entries
	// of an embedding CCEL) any other.
	Type uint32
	// Digest is the entry's digest (for aael-text: H(line), computed).
	Digest mr.Digest
	// Record is the AAEL record; zero for the INIT entry and foreign entries.
	Record Record
	// Init is the start value carried by an INIT entry, else zero.
	Init mr.Digest
	// Extended reports whether replay extends Digest into the register:
	// false for EV_NO_ACTION (binary INIT), true for every aael-text line.
	Extended bool
	// Foreign marks an entry that is not an AAEL record: the firmware events
	// of a CCEL or TCG2 log that embeds AAEL entries (Options.Embedded).
	Foreign bool
	// Event is the event data as stored (the tagged event; the line without
	// LF for aael-text). Valid until the next call of Next.
	Event []byte
}

// Text describes the entry for people: the AAEL record text, the INIT
// record, or the event type of a foreign entry.
func (e *Entry) Text() string {
	switch {
	case !e.Init.IsZero():
		return InitString(e.Init)
	case !e.Record.IsZero():
		return e.Record.String()
	}
	return fmt.Sprintf("event type 0x%x, %d bytes", e.Type, len(e.Event))
}

// AppendRawEntry appends a TCG_PCR_EVENT2 entry with the given fields as
// they are (no validation, the digest not recomputed): importers use it to
// write back an entry exactly as another encoding carried it, so that
// Replay can still find a digest that does not match its event.
func AppendRawEntry(dst []byte, mrIndex, typ uint32, d mr.Digest, event []byte) []byte {
	dst = appendHeader(dst, mrIndex, typ, d, len(event))
	return append(dst, event...)
}
