// Package cel reads and writes the TCG Canonical Event Log (CEL) encodings
// ccmr needs: CEL-JSON, as systemd keeps its userspace measurement log
// (/run/log/systemd/tpm2-measure.log), for exporting runtime and IMA logs
// and importing runtime logs; and CEL-TLV, as Google Confidential Space
// writes its RTMR/PCR log, for reading and replay.
//
// It is hand-written: go-eventlog's cel package decodes TLV only into
// memory as a whole, without byte offsets, and allocates whatever length a
// TLV claims; there is no maintained Go library for CEL-JSON. The format
// is described in docs/formats/cel-json.md.
package cel

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// Content types ccmr writes and reads.
const (
	// ContentAAEL is an AAEL runtime log entry: content
	// {"event_type": 6 or 3, "record": "domain operation content"}.
	ContentAAEL = "aael"
	// ContentIMA is an IMA measurement (CEL spec): content
	// {"template_name": NAME, "template_data": BASE64}.
	ContentIMA = "ima_template"
	// ContentPCClient is a TCG PC Client event (CEL spec): content
	// {"event_type": N, "event_data": BASE64}.
	ContentPCClient = "pcclient_std"
	// ContentSystemd is systemd's own content type; read, never written.
	ContentSystemd = "systemd"
)

// MaxJSONRecord bounds one CEL-JSON record's size.
const MaxJSONRecord = 16 << 20

// Digests is a record's digest list; in JSON
// [{"hashAlg": "sha256", "digest": "HEX"}, ...].
type Digests []mr.Digest

type jsonDigest struct {
	HashAlg string `json:"hashAlg"`
	Digest  string `json:"digest"`
}

// MarshalJSON writes the CEL-JSON digest list.
func (ds Digests) MarshalJSON() ([]byte, error) {
	out := make([]jsonDigest, len(ds))
	for i, d := range ds {
		if _, err := mr.NewDigest(d.Alg, d.Bytes); err != nil {
			return nil, err
		}
		out[i] = jsonDigest{HashAlg: d.Alg.String(), Digest: hex.EncodeToString(d.Bytes)}
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads the CEL-JSON digest list; algorithm names are those
// mr.ParseAlg accepts ("sha256", "SHA-256", ...).
func (ds *Digests) UnmarshalJSON(b []byte) error {
	var in []jsonDigest
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	out := make(Digests, len(in))
	for i, j := range in {
		a, err := mr.ParseAlg(j.HashAlg)
		if err != nil {
			return err
		}
		d, err := mr.ParseHex(a, j.Digest)
		if err != nil {
			return err
		}
		out[i] = d
	}
	*ds = out
	return nil
}

// Record is one CEL-JSON record. Content is kept raw; the Content* helpers
// decode the types ccmr knows.
type Record struct {
	// RecNum is the record number (systemd omits it; then 0).
	RecNum uint64 `json:"recnum"`
	// PCR is the register index: the PCR number on a TPM, the CC MR index
	// on TDX (as AAEL's RegisterIndex and the runtime log's MR index).
	PCR uint32 `json:"pcr"`
	// Digests are the digests extended, one per bank.
	Digests Digests `json:"digests"`
	// ContentType names the content's form.
	ContentType string `json:"content_type"`
	// Content is the content object.
	Content json.RawMessage `json:"content"`
}

// AAELContent is the content of an "aael" record.
type AAELContent struct {
	// EventType is EV_EVENT_TAG (6) for records, EV_NO_ACTION (3) for INIT.
	EventType uint32 `json:"event_type"`
	// Record is the AAEL record text (or `INIT ALG/HEX`).
	Record string `json:"record"`
}

// IMAContent is the content of an "ima_template" record.
type IMAContent struct {
	TemplateName string `json:"template_name"`
	TemplateData []byte `json:"template_data"` // base64 in JSON
}

// PCClientContent is the content of a "pcclient_std" record.
type PCClientContent struct {
	EventType uint32 `json:"event_type"`
	EventData []byte `json:"event_data"` // base64 in JSON
}

// IMARecord builds the CEL-JSON record of one IMA measurement: content type
// ima_template with template_name and base64 template_data (CEL spec).
// digests are the template hashes per bank.
func IMARecord(recnum uint64, pcr uint32, digests []mr.Digest, templateName string, templateData []byte) (Record, error) {
	if templateName == "" {
		return Record{}, fmt.Errorf("%w: empty IMA template name", mr.ErrMalformed)
	}
	c, err := json.Marshal(IMAContent{TemplateName: templateName, TemplateData: templateData})
	if err != nil {
		return Record{}, err
	}
	return Record{RecNum: recnum, PCR: pcr, Digests: digests, ContentType: ContentIMA, Content: c}, nil
}

// Encoding selects how a Writer separates records.
type Encoding int

// Encodings.
const (
	// Seq is JSON text sequences (RFC 7464): each record is RS (0x1E),
	// the JSON object, LF. This is how systemd writes tpm2-measure.log.
	Seq Encoding = iota
	// Lines is one JSON object per line.
	Lines
	// Array is one JSON array of records (the TCG CEL spec's JSON form).
	Array
)

// Writer writes CEL-JSON records.
type Writer struct {
	w   io.Writer
	enc Encoding
	n   int
	err error
}

// NewWriter returns a Writer of w. Close it to finish an Array.
func NewWriter(w io.Writer, enc Encoding) *Writer { return &Writer{w: w, enc: enc} }

// Write writes one record.
func (w *Writer) Write(r Record) error {
	if w.err != nil {
		return w.err
	}
	if r.Content == nil {
		r.Content = json.RawMessage("{}")
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	var pre, post []byte
	switch w.enc {
	case Seq:
		pre, post = []byte{0x1e}, []byte{'\n'}
	case Lines:
		post = []byte{'\n'}
	case Array:
		pre = []byte(",\n")
		if w.n == 0 {
			pre = []byte("[\n")
		}
	}
	_, w.err = w.w.Write(append(append(pre, b...), post...))
	w.n++
	return w.err
}

// Close finishes the output (the closing bracket of an Array).
func (w *Writer) Close() error {
	if w.err != nil || w.enc != Array {
		return w.err
	}
	s := "\n]\n"
	if w.n == 0 {
		s = "[]\n"
	}
	_, w.err = io.WriteString(w.w, s)
	return w.err
}

// Reader reads CEL-JSON records one at a time: a JSON array, a JSON text
// sequence (RS-separated, as systemd writes), or whitespace-separated
// objects, told apart by the first non-space byte.
type Reader struct {
	file string
	br   *bufio.Reader
	dec  *json.Decoder
	mode byte // '[', 0x1e, '{'
	n    int
	off  int64
	err  error
	init bool
}

// NewReader returns a Reader of r; file names it in errors.
func NewReader(r io.Reader, file string) *Reader {
	return &Reader{file: file, br: bufio.NewReaderSize(r, 64<<10)}
}

func (r *Reader) fail(off int64, err error) error {
	if !errors.Is(err, mr.ErrMalformed) && !errors.Is(err, mr.ErrUnsupported) {
		err = fmt.Errorf("%w: %w", mr.ErrMalformed, err)
	}
	r.err = &eventlog.Error{File: r.file, Record: r.n, Offset: off, Err: err}
	return r.err
}

// Next returns the next record and its byte offset; io.EOF at the end.
func (r *Reader) Next() (Record, int64, error) {
	if r.err != nil {
		return Record{}, 0, r.err
	}
	if !r.init {
		r.init = true
		for {
			b, err := r.br.ReadByte()
			if err == io.EOF {
				r.err = io.EOF
				return Record{}, 0, io.EOF
			}
			if err != nil {
				return Record{}, 0, r.fail(r.off, err)
			}
			if b == ' ' || b == '\t' || b == '\n' || b == '\r' {
				r.off++
				continue
			}
			r.br.UnreadByte()
			break
		}
		first, _ := r.br.Peek(1)
		r.mode = first[0]
		switch r.mode {
		case '[', '{':
			// Decoder offsets count from here: r.off stays the base.
			r.dec = json.NewDecoder(r.br)
			if r.mode == '[' {
				if _, err := r.dec.Token(); err != nil {
					return Record{}, 0, r.fail(r.off, err)
				}
			}
		case 0x1e:
		default:
			return Record{}, 0, r.fail(r.off, fmt.Errorf("not CEL-JSON: starts with byte 0x%02x", r.mode))
		}
	}
	if r.mode == 0x1e {
		return r.nextSeq()
	}
	return r.nextDec()
}

func (r *Reader) decode(b []byte, off int64) (Record, error) {
	var rec Record
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&rec); err != nil {
		return Record{}, r.fail(off, err)
	}
	if rec.ContentType == "" {
		return Record{}, r.fail(off, fmt.Errorf("record without content_type"))
	}
	if len(rec.Digests) == 0 {
		return Record{}, r.fail(off, fmt.Errorf("record without digests"))
	}
	return rec, nil
}

func (r *Reader) nextSeq() (Record, int64, error) {
	for {
		start := r.off
		b, err := r.br.ReadByte()
		if err == io.EOF {
			r.err = io.EOF
			return Record{}, 0, io.EOF
		}
		if err != nil {
			return Record{}, 0, r.fail(start, err)
		}
		r.off++
		if b != 0x1e {
			return Record{}, 0, r.fail(start, fmt.Errorf("byte 0x%02x where a record separator (RS) belongs", b))
		}
		var buf []byte
		for {
			frag, err := r.br.ReadSlice(0x1e)
			buf = append(buf, frag...)
			if len(buf) > MaxJSONRecord {
				return Record{}, 0, r.fail(start, fmt.Errorf("record longer than %d bytes", MaxJSONRecord))
			}
			if err == nil {
				buf = buf[:len(buf)-1]
				r.br.UnreadByte()
				break
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err == io.EOF {
				break
			}
			return Record{}, 0, r.fail(start, err)
		}
		r.off += int64(len(buf))
		if len(bytes.TrimSpace(buf)) == 0 {
			continue // RFC 7464: empty sequence elements are skipped
		}
		rec, err := r.decode(buf, start)
		if err != nil {
			return Record{}, 0, err
		}
		r.n++
		return rec, start, nil
	}
}

func (r *Reader) nextDec() (Record, int64, error) {
	if r.mode == '[' && !r.dec.More() {
		if _, err := r.dec.Token(); err != nil {
			return Record{}, 0, r.fail(r.off+r.dec.InputOffset(), err)
		}
		r.err = io.EOF
		return Record{}, 0, io.EOF
	}
	var raw json.RawMessage
	// InputOffset is where the previous value ended; skip separators to
	// name the record's own first byte.
	start := r.off + r.dec.InputOffset()
	if err := r.dec.Decode(&raw); err != nil {
		if err == io.EOF && r.mode == '{' {
			r.err = io.EOF
			return Record{}, 0, io.EOF
		}
		return Record{}, 0, r.fail(start, err)
	}
	start = r.off + r.dec.InputOffset() - int64(len(raw))
	if len(raw) > MaxJSONRecord {
		return Record{}, 0, r.fail(start, fmt.Errorf("record longer than %d bytes", MaxJSONRecord))
	}
	rec, err := r.decode(raw, start)
	if err != nil {
		return Record{}, 0, err
	}
	r.n++
	return rec, start, nil
}

// decodeContent decodes a record's content strictly into v.
func decodeContent(c json.RawMessage, v any) error {
	d := json.NewDecoder(bytes.NewReader(c))
	d.DisallowUnknownFields()
	return d.Decode(v)
}
