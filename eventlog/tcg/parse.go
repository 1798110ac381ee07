package tcg

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// Log is a parsed TCG2, SHA1-format or CC event eventlog. It refers to the bytes
// given to Parse (event data is not copied).
type Log struct {
	// File names the log in errors and mismatches.
	File string
	// Format is eventlog.FormatTCG2 (PCR indexes) or eventlog.FormatCCEL (CC MR indexes).
	Format eventlog.Format
	// CryptoAgile is true when record 0 is a "Spec ID Event03" header and the
	// other records are TCG_PCR_EVENT2; false for a SHA1-format eventlog.
	CryptoAgile bool
	// SpecID is the header of a crypto-agile log; nil for a SHA1-format eventlog.
	SpecID *SpecID
	// Banks are the digest algorithms of the log: the spec ID event's list
	// in its order, or sha1 for a SHA1-format eventlog.
	Banks []mr.Alg
	// Events are all records in order, the header record included.
	Events []Event
	// End is the byte offset where the records end: the input's length, or
	// where padding (0xFF or zero fill of a CCEL buffer) begins.
	End int64
	// Padding is the number of fill bytes after End.
	Padding int64
}

// SpecID is the TCG_EfiSpecIDEvent of a crypto-agile eventlog.
type SpecID struct {
	PlatformClass uint32
	VersionMinor  uint8
	VersionMajor  uint8
	Errata        uint8
	UintnSize     uint8
	// Algs lists the banks and their digest sizes, in the header's order.
	Algs       []AlgSize
	VendorInfo []byte
}

// AlgSize is one entry of a spec ID event's digest size list.
type AlgSize struct {
	Alg  mr.Alg
	Size int
}

// Event is one record of the eventlog.
type Event struct {
	// Num is the record number, counting from 0 (the header record).
	Num int
	// Offset is the byte offset of the record's first byte.
	Offset int64
	// Index is the PCR index (TPM) or CC MR index (CCEL) as stored.
	Index uint32
	// Type is the event type.
	Type EventType
	// Digests holds one digest per bank the record carries, in stored order.
	Digests []mr.Digest
	// Data is the event data.
	Data []byte
}

// Digest returns the record's digest for bank a.
func (e *Event) Digest(a mr.Alg) (mr.Digest, bool) {
	for _, d := range e.Digests {
		if d.Alg == a {
			return d, true
		}
	}
	return mr.Digest{}, false
}

const (
	sha1HeaderSize   = 32 // pcrIndex, eventType, sha1 digest, eventSize
	agileHeaderSize  = 12 // pcrIndex, eventType, digest count
	maxDigestsPerLog = 16 // TPML_DIGEST_VALUES.count is bounded by HASH_COUNT; be generous
	endMarker        = 0xFFFFFFFF
)

var (
	specIDSignature03 = []byte("Spec ID Event03\x00")
)

// Parse parses a whole eventlog. format is eventlog.FormatTCG2, eventlog.FormatCCEL or
// eventlog.FormatAuto (see Sniff). name is used in errors. Errors are *eventlog.Error
// wrapping mr.ErrMalformed (or mr.ErrUnsupported for an unknown format).
func Parse(name string, data []byte, format eventlog.Format) (*Log, error) {
	switch format {
	case eventlog.FormatAuto, "":
		f, ok := Sniff(data)
		if !ok {
			return nil, &eventlog.Error{File: name, Record: -1, Offset: 0,
				Err: fmt.Errorf("%w: not a TCG2, SHA1-format or CC event log", mr.ErrMalformed)}
		}
		format = f
	case eventlog.FormatTCG2, eventlog.FormatCCEL:
	default:
		return nil, &eventlog.Error{File: name, Record: -1, Offset: 0,
			Err: fmt.Errorf("%w: format %q is not tcg2 or ccel", mr.ErrUnsupported, format)}
	}
	p := parser{name: name, data: data, padStart: padStart(data)}
	l := &Log{File: name, Format: format}
	if err := p.parse(l); err != nil {
		return nil, err
	}
	return l, nil
}

type parser struct {
	name     string
	data     []byte
	padStart int // trailing run of 0x00/0xFF bytes starts here
	sizes    map[mr.Alg]int
}

// padStart returns where the trailing run of 0x00 and 0xFF bytes begins.
func padStart(b []byte) int {
	i := len(b)
	for i > 0 && (b[i-1] == 0 || b[i-1] == 0xFF) {
		i--
	}
	return i
}

func (p *parser) errf(rec int, off int, format string, a ...any) error {
	return &eventlog.Error{File: p.name, Record: rec, Offset: int64(off),
		Err: fmt.Errorf("%w: "+format, append([]any{mr.ErrMalformed}, a...)...)}
}

func (p *parser) parse(l *Log) error {
	d := p.data
	if len(d) == 0 {
		return p.errf(-1, 0, "empty log")
	}
	if p.padStart == 0 {
		return p.errf(-1, 0, "log holds only fill bytes (0x00/0xFF)")
	}
	ev, next, err := p.sha1Event(0, 0)
	if err != nil {
		return err
	}
	l.Events = append(l.Events, ev)
	if ev.Type == EvNoAction && bytes.HasPrefix(ev.Data, specIDSignature03) {
		spec, err := p.specID(ev.Data)
		if err != nil {
			return &eventlog.Error{File: p.name, Record: 0, Offset: 0, Err: err}
		}
		l.CryptoAgile = true
		l.SpecID = spec
		p.sizes = make(map[mr.Alg]int, len(spec.Algs))
		for _, a := range spec.Algs {
			l.Banks = append(l.Banks, a.Alg)
			p.sizes[a.Alg] = a.Size
		}
	} else {
		l.Banks = []mr.Alg{mr.SHA1}
	}
	off := next
	for num := 1; ; num++ {
		if off >= len(d) {
			l.End = int64(len(d))
			return nil
		}
		if off >= p.padStart {
			l.End, l.Padding = int64(off), int64(len(d)-off)
			return nil
		}
		// A CCEL's unused log area is 0xFF: an index of 0xFFFFFFFF can only
		// begin fill there. (TPM logs use index 0xFFFFFFFF, "PCR -1", for
		// Windows' EV_NO_ACTION records, so they are records there.)
		if l.Format == eventlog.FormatCCEL && len(d)-off >= 4 && binary.LittleEndian.Uint32(d[off:]) == endMarker {
			return p.errf(num, off, "end-of-log marker (index 0xFFFFFFFF) followed by %d bytes that are not 0x00/0xFF fill", len(d)-off)
		}
		var ev Event
		if l.CryptoAgile {
			ev, next, err = p.agileEvent(num, off)
		} else {
			ev, next, err = p.sha1Event(num, off)
		}
		if err != nil {
			return err
		}
		l.Events = append(l.Events, ev)
		off = next
	}
}

// sha1Event parses a TCG_PCR_EVENT at off.
func (p *parser) sha1Event(num, off int) (Event, int, error) {
	d := p.data
	if len(d)-off < sha1HeaderSize {
		return Event{}, 0, p.errf(num, off, "truncated record: %d bytes left, a SHA1-format record header needs %d", len(d)-off, sha1HeaderSize)
	}
	h := d[off:]
	size := binary.LittleEndian.Uint32(h[28:])
	start := off + sha1HeaderSize
	if uint64(size) > uint64(len(d)-start) {
		return Event{}, 0, p.errf(num, off, "event size %d exceeds the %d bytes left", size, len(d)-start)
	}
	end := start + int(size)
	return Event{
		Num:     num,
		Offset:  int64(off),
		Index:   binary.LittleEndian.Uint32(h[0:]),
		Type:    EventType(binary.LittleEndian.Uint32(h[4:])),
		Digests: []mr.Digest{{Alg: mr.SHA1, Bytes: h[8:28:28]}},
		Data:    d[start:end:end],
	}, end, nil
}

// agileEvent parses a TCG_PCR_EVENT2 at off.
func (p *parser) agileEvent(num, off int) (Event, int, error) {
	d := p.data
	if len(d)-off < agileHeaderSize {
		return Event{}, 0, p.errf(num, off, "truncated record: %d bytes left, a record header needs %d", len(d)-off, agileHeaderSize)
	}
	ev := Event{
		Num:    num,
		Offset: int64(off),
		Index:  binary.LittleEndian.Uint32(d[off:]),
		Type:   EventType(binary.LittleEndian.Uint32(d[off+4:])),
	}
	count := binary.LittleEndian.Uint32(d[off+8:])
	if count > maxDigestsPerLog {
		return Event{}, 0, p.errf(num, off, "digest count %d is implausible", count)
	}
	pos := off + agileHeaderSize
	if count > 0 {
		ev.Digests = make([]mr.Digest, 0, count)
	}
	for i := uint32(0); i < count; i++ {
		if len(d)-pos < 2 {
			return Event{}, 0, p.errf(num, off, "truncated record: digest %d's algorithm at byte %d", i, pos)
		}
		alg := mr.Alg(binary.LittleEndian.Uint16(d[pos:]))
		size, ok := p.sizes[alg]
		if !ok {
			return Event{}, 0, p.errf(num, off, "digest %d has algorithm 0x%04x, which the spec ID event does not list", i, uint16(alg))
		}
		pos += 2
		if len(d)-pos < size {
			return Event{}, 0, p.errf(num, off, "truncated record: %v digest needs %d bytes, %d left", alg, size, len(d)-pos)
		}
		for _, prev := range ev.Digests {
			if prev.Alg == alg {
				return Event{}, 0, p.errf(num, off, "two %v digests in one record", alg)
			}
		}
		ev.Digests = append(ev.Digests, mr.Digest{Alg: alg, Bytes: d[pos : pos+size : pos+size]})
		pos += size
	}
	if len(d)-pos < 4 {
		return Event{}, 0, p.errf(num, off, "truncated record: event size at byte %d", pos)
	}
	size := binary.LittleEndian.Uint32(d[pos:])
	pos += 4
	if uint64(size) > uint64(len(d)-pos) {
		return Event{}, 0, p.errf(num, off, "event size %d exceeds the %d bytes left", size, len(d)-pos)
	}
	end := pos + int(size)
	ev.Data = d[pos:end:end]
	return ev, end, nil
}

// specID parses a TCG_EfiSpecIDEvent.
func (p *parser) specID(b []byte) (*SpecID, error) {
	const fixed = 16 + 4 + 4 + 4 // signature, platformClass, versions+errata+uintnSize, numberOfAlgorithms
	bad := func(f string, a ...any) error {
		return fmt.Errorf("%w: spec ID event: "+f, append([]any{mr.ErrMalformed}, a...)...)
	}
	if len(b) < fixed {
		return nil, bad("%d bytes, need at least %d", len(b), fixed+1)
	}
	s := &SpecID{
		PlatformClass: binary.LittleEndian.Uint32(b[16:]),
		VersionMinor:  b[20],
		VersionMajor:  b[21],
		Errata:        b[22],
		UintnSize:     b[23],
	}
	if s.VersionMajor != 2 {
		return nil, bad("spec version %d.%d, want 2.x", s.VersionMajor, s.VersionMinor)
	}
	n := binary.LittleEndian.Uint32(b[24:])
	if n == 0 || n > maxDigestsPerLog {
		return nil, bad("%d algorithms", n)
	}
	pos := fixed
	if uint64(len(b)-pos) < 4*uint64(n)+1 {
		return nil, bad("%d algorithms do not fit in %d bytes", n, len(b))
	}
	for i := uint32(0); i < n; i++ {
		a := mr.Alg(binary.LittleEndian.Uint16(b[pos:]))
		size := int(binary.LittleEndian.Uint16(b[pos+2:]))
		pos += 4
		if a.Valid() && a.Size() != size {
			return nil, bad("%v digest size %d, want %d", a, size, a.Size())
		}
		if size == 0 || size > 128 {
			return nil, bad("algorithm 0x%04x digest size %d", uint16(a), size)
		}
		for _, prev := range s.Algs {
			if prev.Alg == a {
				return nil, bad("algorithm %v listed twice", a)
			}
		}
		s.Algs = append(s.Algs, AlgSize{Alg: a, Size: size})
	}
	vlen := int(b[pos])
	pos++
	if len(b)-pos != vlen {
		return nil, bad("vendor info size %d, but %d bytes follow", vlen, len(b)-pos)
	}
	s.VendorInfo = b[pos:]
	return s, nil
}

// Sniff guesses the format of a firmware log: eventlog.FormatCCEL when the log is
// crypto-agile, its banks are only sha384 or sm3_256 (the CC measurement
// registers' algorithms) and every record's index is a CC MR index (0..4);
// eventlog.FormatTCG2 for any other log whose first record parses as a header.
// ok is false when data does not start like a TCG eventlog.
func Sniff(data []byte) (f eventlog.Format, ok bool) {
	p := parser{name: "", data: data, padStart: padStart(data)}
	var l Log
	if p.padStart == 0 || len(data) < sha1HeaderSize {
		return "", false
	}
	first, _, err := p.sha1Event(0, 0)
	if err != nil {
		return "", false
	}
	// A header record sits on PCR 0; a SHA1-format log without one still
	// begins with a PCR 0..23 event.
	if first.Index > 23 {
		return "", false
	}
	if _, known := first.Type.Name(); !known {
		return "", false
	}
	if err := p.parse(&l); err != nil {
		// Readable enough to say what it is: let Parse report the error.
		if first.Type == EvNoAction && bytes.HasPrefix(first.Data, specIDSignature03) {
			return eventlog.FormatTCG2, true
		}
		return "", false
	}
	if !l.CryptoAgile {
		return eventlog.FormatTCG2, true
	}
	for _, b := range l.Banks {
		if b != mr.SHA384 && b != mr.SM3256 {
			return eventlog.FormatTCG2, true
		}
	}
	for _, e := range l.Events {
		if e.Index > 4 {
			return eventlog.FormatTCG2, true
		}
	}
	return eventlog.FormatCCEL, true
}
