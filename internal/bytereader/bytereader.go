// Package bytereader holds the reader of fixed-layout binary structures in
// a byte slice that ccmr's parsers share (TPMS_ATTEST and TPMT_SIGNATURE in
// backend/tpm, the TDX quote in verifier/tdxverify): every read is bounds
// checked, and the first short or bad field becomes an error that names the
// structure, the field and its byte offset, and wraps mr.ErrMalformed.
//
// The error is sticky: after it every read returns zero values, so a parser
// may read a run of fields and look at Err once (TPM style), or check Err
// after each read (TDX style).
package bytereader

import (
	"encoding/binary"
	"fmt"

	"github.com/ccmr-dev/ccmr/mr"
)

// Reader reads fields from a byte slice, front to back.
type Reader struct {
	b     []byte
	off   int
	err   error
	what  string
	order binary.ByteOrder
}

// New reads b, whose fields are in byte order order; what names the
// structure in errors ("TPMS_ATTEST", "tdx quote").
func New(b []byte, what string, order binary.ByteOrder) *Reader {
	return &Reader{b: b, what: what, order: order}
}

// Off is the offset of the next byte to read.
func (r *Reader) Off() int { return r.off }

// Left is the number of bytes not read yet.
func (r *Reader) Left() int { return len(r.b) - r.off }

// Seek moves to offset off (0 ≤ off ≤ len(b)); a bad offset is the error.
func (r *Reader) Seek(off int) {
	if off < 0 || off > len(r.b) {
		r.FailAt(r.off, "offset %d is outside the %d bytes", off, len(r.b))
		return
	}
	r.off = off
}

// Err is the first error, nil when every read fitted.
func (r *Reader) Err() error { return r.err }

// Fail records an error at the current offset, unless one is recorded.
func (r *Reader) Fail(format string, a ...any) { r.FailAt(r.off, format, a...) }

// FailAt records an error at offset off (the start of the field a parser
// judged after reading it), unless one is recorded.
func (r *Reader) FailAt(off int, format string, a ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%s: %w: at byte %d: %s", r.what, mr.ErrMalformed, off, fmt.Sprintf(format, a...))
	}
}

// Take returns the next n bytes, capped so that appending to them cannot
// overwrite what follows; nil once there is an error.
func (r *Reader) Take(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || r.Left() < n {
		r.Fail("%s needs %d bytes, %d left", field, n, r.Left())
		return nil
	}
	v := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return v
}

// U8 reads one byte.
func (r *Reader) U8(field string) uint8 {
	if v := r.Take(1, field); v != nil {
		return v[0]
	}
	return 0
}

// U16 reads a 2-byte integer.
func (r *Reader) U16(field string) uint16 {
	if v := r.Take(2, field); v != nil {
		return r.order.Uint16(v)
	}
	return 0
}

// U32 reads a 4-byte integer.
func (r *Reader) U32(field string) uint32 {
	if v := r.Take(4, field); v != nil {
		return r.order.Uint32(v)
	}
	return 0
}

// U64 reads an 8-byte integer.
func (r *Reader) U64(field string) uint64 {
	if v := r.Take(8, field); v != nil {
		return r.order.Uint64(v)
	}
	return 0
}

// Sized16 reads a 2-byte size, then that many bytes (a TPM2B).
func (r *Reader) Sized16(field string) []byte { return r.Take(int(r.U16(field+" size")), field) }

// End records an error when bytes are left after the structure.
func (r *Reader) End() {
	if r.err == nil && r.off != len(r.b) {
		r.Fail("%d bytes after the end of the structure", len(r.b)-r.off)
	}
}
