package cel

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// CEL-TLV field types (TCG CEL spec; go-eventlog's cel package).
const (
	TLVRecNum  uint8 = 0
	TLVPCR     uint8 = 1
	TLVNVIndex uint8 = 2
	TLVDigests uint8 = 3
	// TLVCCMR is the index type Google's encoders use for a confidential
	// computing MR (CC MR index: 4 = RTMR3 on TDX).
	TLVCCMR uint8 = 108
	// TLVCOSEvent is the content type of Container-Optimized OS /
	// Confidential Space launcher events.
	TLVCOSEvent uint8 = 80
)

// MaxTLVContent bounds one record's content value.
const MaxTLVContent = 16 << 20

// TLVRecord is one CEL-TLV record.
type TLVRecord struct {
	// Index is the record number in the file, from 0.
	Index int
	// Offset and Size place the record in the file.
	Offset, Size int64
	// RecNum is the record's recnum field.
	RecNum uint64
	// IndexType is TLVPCR, TLVNVIndex or TLVCCMR; Register its value.
	IndexType uint8
	Register  uint32
	// Digests are the record's digests, in file order.
	Digests []mr.Digest
	// ContentType and Content are the content TLV's type and value;
	// ContentTLV is the whole content TLV (type, length, value).
	ContentType uint8
	Content     []byte
	ContentTLV  []byte
}

// TLVReader reads a CEL-TLV log one record at a time.
type TLVReader struct {
	br   *bufio.Reader
	file string
	off  int64
	n    int
	err  error
}

// NewTLVReader returns a TLVReader of r; file names it in errors.
func NewTLVReader(r io.Reader, file string) *TLVReader {
	return &TLVReader{br: bufio.NewReaderSize(r, 64<<10), file: file}
}

func (t *TLVReader) fail(off int64, format string, a ...any) error {
	err := fmt.Errorf(format, a...)
	if !errors.Is(err, mr.ErrMalformed) && !errors.Is(err, mr.ErrUnsupported) {
		err = fmt.Errorf("%w: %w", mr.ErrMalformed, err)
	}
	t.err = &eventlog.Error{File: t.file, Record: t.n, Offset: off, Err: err}
	return t.err
}

// tlv reads one TLV; the value grows as bytes arrive (no allocation of a
// claimed length before the bytes exist).
func (t *TLVReader) tlv(start int64, what string, max uint32) (uint8, []byte, error) {
	var h [5]byte
	k, err := io.ReadFull(t.br, h[:])
	t.off += int64(k)
	if err != nil {
		return 0, nil, t.fail(start, "truncated record: %s header at byte %d", what, t.off-int64(k))
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > max {
		return 0, nil, t.fail(start, "%s (type %d) length %d exceeds %d", what, h[0], n, max)
	}
	var v []byte
	for uint32(len(v)) < n {
		chunk := min(n-uint32(len(v)), 1<<20)
		l := len(v)
		v = append(v, make([]byte, chunk)...)
		k, err := io.ReadFull(t.br, v[l:])
		t.off += int64(k)
		if err != nil {
			return 0, nil, t.fail(start, "truncated record: %s value, %d of %d bytes", what, l+k, n)
		}
	}
	return h[0], v, nil
}

func beUint(v []byte) uint64 {
	var x uint64
	for _, b := range v {
		x = x<<8 | uint64(b)
	}
	return x
}

// Next returns the next record; io.EOF at the end.
func (t *TLVReader) Next() (*TLVRecord, error) {
	if t.err != nil {
		return nil, t.err
	}
	start := t.off
	if _, err := t.br.Peek(1); err == io.EOF {
		t.err = io.EOF
		return nil, io.EOF
	}
	r := &TLVRecord{Index: t.n, Offset: start}
	typ, v, err := t.tlv(start, "recnum", 8)
	if err != nil {
		return nil, err
	}
	if typ != TLVRecNum || len(v) == 0 {
		return nil, t.fail(start, "first field has type %d and %d bytes (want recnum, type 0)", typ, len(v))
	}
	r.RecNum = beUint(v)
	typ, v, err = t.tlv(start, "index", 4)
	if err != nil {
		return nil, err
	}
	if (typ != TLVPCR && typ != TLVNVIndex && typ != TLVCCMR) || len(v) == 0 {
		return nil, t.fail(start, "index field has type %d and %d bytes (want 1 PCR, 2 NV index or 108 CC MR)", typ, len(v))
	}
	r.IndexType, r.Register = typ, uint32(beUint(v))
	typ, v, err = t.tlv(start, "digests", 4096)
	if err != nil {
		return nil, err
	}
	if typ != TLVDigests {
		return nil, t.fail(start, "third field has type %d (want digests, 3)", typ)
	}
	for len(v) > 0 {
		if len(v) < 5 {
			return nil, t.fail(start, "truncated digest in the digests field")
		}
		alg := mr.Alg(v[0])
		n := binary.BigEndian.Uint32(v[1:])
		if !alg.Valid() {
			return nil, t.fail(start, "%w: unknown digest algorithm 0x%02x", mr.ErrUnsupported, v[0])
		}
		if uint64(n) != uint64(alg.Size()) {
			return nil, t.fail(start, "%v digest of %d bytes (want %d)", alg, n, alg.Size())
		}
		if int(n) > len(v)-5 {
			return nil, t.fail(start, "truncated %v digest: %d bytes, %d present", alg, n, len(v)-5)
		}
		for _, d := range r.Digests {
			if d.Alg == alg {
				return nil, t.fail(start, "two %v digests", alg)
			}
		}
		r.Digests = append(r.Digests, mr.Digest{Alg: alg, Bytes: v[5 : 5+n]})
		v = v[5+n:]
	}
	if len(r.Digests) == 0 {
		return nil, t.fail(start, "record without digests")
	}
	typ, v, err = t.tlv(start, "content", MaxTLVContent)
	if err != nil {
		return nil, err
	}
	r.ContentType, r.Content = typ, v
	r.ContentTLV = binary.BigEndian.AppendUint32([]byte{typ}, uint32(len(v)))
	r.ContentTLV = append(r.ContentTLV, v...)
	r.Size = t.off - start
	t.n++
	return r, nil
}

// TLVReplayOptions configure ReplayTLV.
type TLVReplayOptions struct {
	// File names the input in errors.
	File string
	// Alg is the bank to replay; records without a digest of it are bad input.
	Alg mr.Alg
	// Name names a register from its index type and value; nil gives
	// "pcrN" for PCRs, "rtmrN-1" for CC MR indices 1..4 (mrtd for 0), "nvN".
	Name func(indexType uint8, index uint32) string
	// OnRecord, when set, is called for each record after its checks.
	OnRecord func(*TLVRecord) error
}

// DefaultTLVName is the default register naming of ReplayTLV.
func DefaultTLVName(typ uint8, i uint32) string {
	switch typ {
	case TLVPCR:
		return fmt.Sprintf("pcr%d", i)
	case TLVCCMR:
		if i == 0 {
			return "mrtd"
		}
		if i <= 4 {
			return fmt.Sprintf("rtmr%d", i-1)
		}
		return fmt.Sprintf("mrindex%d", i)
	}
	return fmt.Sprintf("nv%d", i)
}

// ReplayTLV replays a CEL-TLV log: every register starts at zero and is
// extended with each record's digest of opt.Alg in order. For COS event
// content (type 80) the digest must be H(content TLV) — type, length and
// value — (else a *eventlog.Mismatch naming the record); other content types
// are replayed without a content check. The partial result comes back
// with an error.
func ReplayTLV(r *TLVReader, opt TLVReplayOptions) (*eventlog.Replay, error) {
	if !opt.Alg.Valid() {
		return nil, fmt.Errorf("%w: algorithm %v", mr.ErrUnsupported, opt.Alg)
	}
	name := opt.Name
	if name == nil {
		name = DefaultTLVName
	}
	type key struct {
		t uint8
		i uint32
	}
	regs := map[key]*mr.Extender{}
	res := &eventlog.Replay{}
	finish := func() *eventlog.Replay {
		keys := make([]key, 0, len(regs))
		for k := range regs {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(a, b int) bool {
			if keys[a].t != keys[b].t {
				return keys[a].t < keys[b].t
			}
			return keys[a].i < keys[b].i
		})
		res.Registers = res.Registers[:0]
		for _, k := range keys {
			v := regs[k].Value()
			res.Registers = append(res.Registers, mr.Value{
				Register: mr.Register{Name: name(k.t, k.i), Alg: v.Alg, Size: v.Alg.Size(), Index: int(k.i)},
				Digest:   v,
			})
		}
		return res
	}
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return finish(), nil
		}
		if err != nil {
			return finish(), err
		}
		var d mr.Digest
		for _, x := range rec.Digests {
			if x.Alg == opt.Alg {
				d = x
			}
		}
		if d.IsZero() {
			return finish(), &eventlog.Error{File: opt.File, Record: rec.Index, Offset: rec.Offset,
				Err: fmt.Errorf("%w: record has no %v digest", mr.ErrMalformed, opt.Alg)}
		}
		k := key{rec.IndexType, rec.Register}
		if rec.ContentType == TLVCOSEvent {
			if got := opt.Alg.Sum(rec.ContentTLV); !bytes.Equal(got.Bytes, d.Bytes) {
				return finish(), &eventlog.Mismatch{File: opt.File, Register: name(k.t, k.i), Record: rec.Index,
					Offset: rec.Offset, Expected: d, Computed: got, Reason: "digest is not H(content TLV)"}
			}
		}
		e := regs[k]
		if e == nil {
			start := mr.Zero(opt.Alg)
			if k.t == TLVPCR && k.i <= 23 {
				start = mr.TPMResetValue(int(k.i), opt.Alg) // all ones on PCRs 17-22
			}
			e = mr.NewExtender(start)
			regs[k] = e
		}
		if err := e.Extend(d.Bytes); err != nil {
			return finish(), err
		}
		res.Events++
		if opt.OnRecord != nil {
			if err := opt.OnRecord(rec); err != nil {
				return finish(), err
			}
		}
	}
}
