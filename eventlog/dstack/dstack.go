// Package dstack reads the event log of Phala's dstack (its JSON form): an
// array of {imr, event_type, digest, event, event_payload}, imr 0..3 being
// TDX RTMR0..3. No maintained Go library reads it, hence this small reader.
//
// Runtime events (event_type 0x08000001, what dstack's guest agent extends
// into RTMR3) carry a digest that must be recomputed from the event: for
// version 1 (no "version" member) sha384(le32(event_type) ‖ ":" ‖ event ‖ ":"
// ‖ event_payload), for version 2 sha384 of the RFC 8785 canonical JSON
// {"event":…,"event_type":134217729,"payload":"hex…","version":2}, as
// dstack's cc-eventlog computes them; a digest that is not is a
// *eventlog.Mismatch naming the event. dstack extends RTMR3 only with runtime
// events, so an RTMR3 event of another type is refused (its digest could
// not be recomputed, and its payload would be free text). Boot events on
// RTMR0-2 are what the firmware logged: their digests are replayed as they
// are, but their names and payloads are not bound by them (Recomputed is
// false).
package dstack

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// RuntimeEventType is dstack's event type for runtime events.
const RuntimeEventType = 0x08000001

// Event is one event of the eventlog.
type Event struct {
	Index     int
	Offset    int64
	IMR       int
	EventType uint32
	Digest    mr.Digest
	Name      string
	Payload   []byte
	// Version is the runtime event's digest version: 1 or 2.
	Version int
}

type rawEvent struct {
	IMR          *int    `json:"imr"`
	EventType    *uint32 `json:"event_type"`
	Digest       string  `json:"digest"`
	Event        string  `json:"event"`
	EventPayload string  `json:"event_payload"`
	Version      *int    `json:"version"`
}

// Reader streams the events of a dstack JSON log, one array element at a time.
type Reader struct {
	dec  *json.Decoder
	file string
	n    int
	err  error
	open bool
}

// NewReader reads the log in r; file names it in errors.
func NewReader(r io.Reader, file string) *Reader {
	return &Reader{dec: json.NewDecoder(r), file: file}
}

func (r *Reader) fail(off int64, format string, a ...any) error {
	r.err = &eventlog.Error{File: r.file, Record: r.n, Offset: off, Err: fmt.Errorf("%w: %s", mr.ErrMalformed, fmt.Sprintf(format, a...))}
	return r.err
}

// Next returns the next event, io.EOF after the last.
func (r *Reader) Next() (*Event, error) {
	if r.err != nil {
		return nil, r.err
	}
	if !r.open {
		tok, err := r.dec.Token()
		if err != nil {
			return nil, r.fail(r.dec.InputOffset(), "not a dstack event log: %v", err)
		}
		if d, ok := tok.(json.Delim); !ok || d != '[' {
			return nil, r.fail(0, "not a dstack event log: want a JSON array")
		}
		r.open = true
	}
	if !r.dec.More() {
		if _, err := r.dec.Token(); err != nil {
			return nil, r.fail(r.dec.InputOffset(), "%v", err)
		}
		r.err = io.EOF
		return nil, io.EOF
	}
	off := r.dec.InputOffset()
	var raw rawEvent
	if err := r.dec.Decode(&raw); err != nil {
		return nil, r.fail(off, "%v", err)
	}
	if raw.IMR == nil || raw.EventType == nil {
		return nil, r.fail(off, "event without imr or event_type")
	}
	if *raw.IMR < 0 || *raw.IMR > 3 {
		return nil, r.fail(off, "imr %d is not 0..3", *raw.IMR)
	}
	d, err := mr.ParseHex(mr.SHA384, raw.Digest)
	if err != nil {
		return nil, r.fail(off, "digest: %v", err)
	}
	payload, err := hex.DecodeString(raw.EventPayload)
	if err != nil {
		return nil, r.fail(off, "event_payload: %v", err)
	}
	version := 1
	if raw.Version != nil {
		version = *raw.Version
	}
	if version != 1 && version != 2 {
		return nil, r.fail(off, "version %d is not 1 or 2", version)
	}
	e := &Event{Index: r.n, Offset: off, IMR: *raw.IMR, EventType: *raw.EventType, Digest: d, Name: raw.Event, Payload: payload, Version: version}
	r.n++
	return e, nil
}

// RuntimeDigest is the digest dstack extends for a runtime event.
func RuntimeDigest(typ uint32, name string, payload []byte) mr.Digest {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, typ)
	b.WriteByte(':')
	b.WriteString(name)
	b.WriteByte(':')
	b.Write(payload)
	return mr.SHA384.Sum(b.Bytes())
}

// RuntimeDigestV2 is the digest dstack extends for a version 2 runtime
// event: sha384 of its RFC 8785 canonical JSON.
func RuntimeDigestV2(name string, payload []byte) mr.Digest {
	return mr.SHA384.Sum([]byte(CanonicalV2(name, payload)))
}

// CanonicalV2 is the RFC 8785 (JCS) canonical JSON of a version 2 runtime
// event, the bytes dstack hashes: members sorted, no white space.
func CanonicalV2(name string, payload []byte) string {
	return `{"event":` + jcsString(name) + `,"event_type":` + strconv.Itoa(RuntimeEventType) +
		`,"payload":"` + hex.EncodeToString(payload) + `","version":2}`
}

// jcsString quotes s as RFC 8785 does: only '"', '\\' and control
// characters are escaped (short forms where JSON has them), everything else
// is kept as UTF-8 (an invalid byte was already made U+FFFD by the JSON
// decoder that read the name, as by dstack's).
func jcsString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range s {
		switch {
		case c == '"':
			b.WriteString(`\"`)
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\b':
			b.WriteString(`\b`)
		case c == '\f':
			b.WriteString(`\f`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20:
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			b.WriteRune(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// Recomputed reports whether the event's digest is recomputed from its
// name and payload (runtime events): only then do they mean anything.
func (e *Event) Recomputed() bool { return e.EventType == RuntimeEventType }

// Check verifies a runtime event's digest and refuses an RTMR3 event of
// another type; boot events on RTMR0-2 pass (see Recomputed).
func (e *Event) Check(file string) error {
	if e.EventType != RuntimeEventType {
		if e.IMR == 3 {
			return &eventlog.Mismatch{File: file, Register: Register(e.IMR), Record: e.Index, Offset: e.Offset, Computed: e.Digest,
				Reason: fmt.Sprintf("event %d (%q) on rtmr3 has type 0x%08x: dstack extends RTMR3 only with runtime events (0x%08x), whose digest is recomputed from name and payload; this one's cannot be", e.Index, e.Name, e.EventType, RuntimeEventType)}
		}
		return nil
	}
	want, how := RuntimeDigest(e.EventType, e.Name, e.Payload), "sha384(type:event:payload)"
	if e.Version == 2 {
		want, how = RuntimeDigestV2(e.Name, e.Payload), "sha384 of its canonical JSON (version 2)"
	}
	if !want.Equal(e.Digest) {
		return &eventlog.Mismatch{File: file, Register: Register(e.IMR), Record: e.Index, Offset: e.Offset, Expected: want, Computed: e.Digest,
			Reason: fmt.Sprintf("runtime event %d (%q): digest is not %s", e.Index, e.Name, how)}
	}
	return nil
}

// Register names imr i: rtmr0..rtmr3.
func Register(i int) string { return fmt.Sprintf("rtmr%d", i) }

// Replay folds every event's digest into its RTMR from zero, checking runtime
// events' digests.
func Replay(r *Reader, file string, onEvent func(*Event) error) (*eventlog.Replay, error) {
	var ext [4]*mr.Extender
	res := &eventlog.Replay{}
	var firstBad error
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if firstBad == nil {
			firstBad = e.Check(file)
		}
		if ext[e.IMR] == nil {
			ext[e.IMR] = mr.NewExtender(mr.Zero(mr.SHA384))
		}
		if err := ext[e.IMR].Extend(e.Digest.Bytes); err != nil {
			return nil, err
		}
		res.Events++
		if onEvent != nil {
			if err := onEvent(e); err != nil {
				return nil, err
			}
		}
	}
	for i, x := range ext {
		if x != nil {
			res.Registers = append(res.Registers, mr.Value{Register: mr.Register{Name: Register(i), Alg: mr.SHA384, Size: 48, Index: i + 1}, Digest: x.Value()})
		}
	}
	return res, firstBad
}

// Sniff recognises a dstack JSON log from its first bytes.
func Sniff(head []byte) bool {
	t := bytes.TrimLeft(head, " \t\r\n")
	return bytes.HasPrefix(t, []byte("[")) && bytes.Contains(head, []byte(`"imr"`)) && bytes.Contains(head, []byte(`"event_payload"`))
}
