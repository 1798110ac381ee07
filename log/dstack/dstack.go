// Package dstack reads the event log of Phala's dstack (its JSON form): an
// array of {imr, event_type, digest, event, event_payload}, imr 0..3 being
// TDX RTMR0..3. No maintained Go library reads it, hence this small reader.
//
// Runtime events (event_type 0x08000001, what dstack's guest agent extends
// into RTMR3) carry a digest that must be sha384(le32(event_type) ‖ ":" ‖
// event ‖ ":" ‖ event_payload); a digest that is not is a *log.Mismatch naming
// the event. Other events (firmware, boot) are taken as they are.
package dstack

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/ccmr-dev/ccmr/log"
	"github.com/ccmr-dev/ccmr/mr"
)

// RuntimeEventType is dstack's event type for runtime events.
const RuntimeEventType = 0x08000001

// Event is one event of the log.
type Event struct {
	Index     int
	Offset    int64
	IMR       int
	EventType uint32
	Digest    mr.Digest
	Name      string
	Payload   []byte
}

type rawEvent struct {
	IMR          *int    `json:"imr"`
	EventType    *uint32 `json:"event_type"`
	Digest       string  `json:"digest"`
	Event        string  `json:"event"`
	EventPayload string  `json:"event_payload"`
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
	r.err = &log.Error{File: r.file, Record: r.n, Offset: off, Err: fmt.Errorf("%w: %s", mr.ErrMalformed, fmt.Sprintf(format, a...))}
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
	e := &Event{Index: r.n, Offset: off, IMR: *raw.IMR, EventType: *raw.EventType, Digest: d, Name: raw.Event, Payload: payload}
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

// Check verifies a runtime event's digest; other events pass.
func (e *Event) Check(file string) error {
	if e.EventType != RuntimeEventType {
		return nil
	}
	if want := RuntimeDigest(e.EventType, e.Name, e.Payload); !want.Equal(e.Digest) {
		return &log.Mismatch{File: file, Register: Register(e.IMR), Record: e.Index, Offset: e.Offset, Expected: want, Computed: e.Digest,
			Reason: fmt.Sprintf("runtime event %d (%q): digest is not sha384(type:event:payload)", e.Index, e.Name)}
	}
	return nil
}

// Register names imr i: rtmr0..rtmr3.
func Register(i int) string { return fmt.Sprintf("rtmr%d", i) }

// Replay folds every event's digest into its RTMR from zero, checking runtime
// events' digests.
func Replay(r *Reader, file string, onEvent func(*Event) error) (*log.Replay, error) {
	var ext [4]*mr.Extender
	res := &log.Replay{}
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
