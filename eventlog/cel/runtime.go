package cel

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/mr"
)

// RuntimeRecord returns the CEL-JSON record of a runtime log entry: content
// type "aael" with the record text for AAEL entries (the INIT entry with
// event_type 3), "pcclient_std" with the raw event for the foreign entries
// of an embedding CCEL. recnum is the entry's index, pcr its MR index.
func RuntimeRecord(e *aael.Entry) (Record, error) {
	var c any
	typ := ContentAAEL
	switch {
	case e.Foreign:
		typ = ContentPCClient
		c = PCClientContent{EventType: e.Type, EventData: e.Event}
	case !e.Init.IsZero():
		c = AAELContent{EventType: aael.EvNoAction, Record: aael.InitString(e.Init)}
	case !e.Record.IsZero():
		c = AAELContent{EventType: aael.EvEventTag, Record: e.Record.String()}
	default:
		return Record{}, fmt.Errorf("%w: entry %d holds no record", mr.ErrMalformed, e.Index)
	}
	b, err := json.Marshal(c)
	if err != nil {
		return Record{}, err
	}
	return Record{RecNum: uint64(e.Index), PCR: e.MRIndex, Digests: Digests{e.Digest},
		ContentType: typ, Content: b}, nil
}

// ExportRuntime writes every entry of a runtime log as CEL-JSON and
// returns the number of records written. The aael-text form exports too
// (its INIT line as an "aael" record with event_type 3 whose digest is
// H(line)); importing that gives back entries whose INIT is not extended,
// so export aael-text only for inspection.
func ExportRuntime(w io.Writer, r aael.EntryReader, enc Encoding) (int, error) {
	cw := NewWriter(w, enc)
	n := 0
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, err
		}
		rec, err := RuntimeRecord(e)
		if err != nil {
			return n, err
		}
		if err := cw.Write(rec); err != nil {
			return n, err
		}
		n++
	}
	return n, cw.Close()
}

// RuntimeReader reads a CEL-JSON export of a runtime log back as runtime
// log entries, so aael.Replay replays it directly (and finds a digest
// that does not match its record). Records of other content types are
// refused, except pcclient_std, which become foreign entries.
type RuntimeReader struct {
	r    *Reader
	file string
	n    int
}

// NewRuntimeReader returns a RuntimeReader of r; file names it in errors.
func NewRuntimeReader(r io.Reader, file string) *RuntimeReader {
	return &RuntimeReader{r: NewReader(r, file), file: file}
}

// Next implements aael.EntryReader. Entry.Offset is the JSON record's
// offset; Entry.Event is the tagged event the record text gives.
func (rr *RuntimeReader) Next() (*aael.Entry, error) {
	rec, off, err := rr.r.Next()
	if err != nil {
		return nil, err
	}
	fail := func(format string, a ...any) error {
		return &eventlog.Error{File: rr.file, Record: rr.n, Offset: off,
			Err: fmt.Errorf("%w: %s", mr.ErrMalformed, fmt.Sprintf(format, a...))}
	}
	if len(rec.Digests) != 1 {
		return nil, fail("%d digests (a runtime log entry has exactly 1)", len(rec.Digests))
	}
	e := &aael.Entry{Index: rr.n, Offset: off, MRIndex: rec.PCR, Digest: rec.Digests[0]}
	switch rec.ContentType {
	case ContentAAEL:
		var c AAELContent
		if err := decodeContent(rec.Content, &c); err != nil {
			return nil, fail("aael content: %v", err)
		}
		e.Type = c.EventType
		switch c.EventType {
		case aael.EvNoAction:
			if rr.n != 0 {
				return nil, fail("INIT record after the first record")
			}
			d, err := aael.ParseInit(c.Record)
			if err != nil {
				return nil, fail("%v", err)
			}
			if d.Alg != e.Digest.Alg {
				return nil, fail("INIT value is %v but the digest is %v", d.Alg, e.Digest.Alg)
			}
			e.Init = d
		case aael.EvEventTag:
			r, err := aael.ParseRecord(c.Record)
			if err != nil {
				return nil, fail("%v", err)
			}
			e.Record, e.Extended = r, true
		default:
			return nil, fail("aael event_type %d (want 6, or 3 for INIT)", c.EventType)
		}
		e.Event = aael.AppendTaggedEvent(nil, c.Record)
	case ContentPCClient:
		var c PCClientContent
		if err := decodeContent(rec.Content, &c); err != nil {
			return nil, fail("pcclient_std content: %v", err)
		}
		e.Type, e.Event, e.Foreign, e.Extended = c.EventType, c.EventData, true, c.EventType != aael.EvNoAction
	default:
		return nil, fail("content_type %q is not part of a runtime log", rec.ContentType)
	}
	rr.n++
	return e, nil
}

// ImportRuntime converts a CEL-JSON export back to the binary runtime log,
// each entry with the digest the JSON carries (not recomputed). It returns
// the number of entries.
func ImportRuntime(w io.Writer, r io.Reader, file string) (int, error) {
	rr := NewRuntimeReader(r, file)
	var buf []byte
	n := 0
	for {
		e, err := rr.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		buf = aael.AppendRawEntry(buf[:0], e.MRIndex, e.Type, e.Digest, e.Event)
		if _, err := w.Write(buf); err != nil {
			return n, err
		}
		n++
	}
}
