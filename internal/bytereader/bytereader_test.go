package bytereader

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/mr"
)

func TestFields(t *testing.T) {
	b := []byte{1, 2, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 2, 0, 'h', 'i'}
	r := New(b, "test", binary.LittleEndian)
	if r.U8("a") != 1 || r.U16("b") != 2 || r.U32("c") != 3 || r.U64("d") != 4 {
		t.Fatalf("fields: %v", r.Err())
	}
	if s := r.Sized16("e"); string(s) != "hi" || cap(s) != 2 {
		t.Fatalf("sized: %q cap %d", s, cap(s))
	}
	r.End()
	if r.Err() != nil || r.Off() != len(b) || r.Left() != 0 {
		t.Fatalf("end: %v at %d", r.Err(), r.Off())
	}
	be := New([]byte{0, 1, 0, 0, 0, 2}, "test", binary.BigEndian)
	if be.U16("x") != 1 || be.U32("y") != 2 || be.Err() != nil {
		t.Fatal("big endian")
	}
}

// A short field is an error naming the structure, the field and the offset;
// it is sticky, and reads after it return zero.
func TestShortFieldNamesWhere(t *testing.T) {
	r := New([]byte{1, 2, 3}, "TPMS_ATTEST", binary.BigEndian)
	r.U16("magic")
	if v := r.U32("clock"); v != 0 {
		t.Fatalf("short read gave %d", v)
	}
	err := r.Err()
	if !errors.Is(err, mr.ErrMalformed) || !strings.Contains(err.Error(), "TPMS_ATTEST") || !strings.Contains(err.Error(), "at byte 2") || !strings.Contains(err.Error(), "clock needs 4 bytes, 1 left") {
		t.Fatalf("error: %v", err)
	}
	if r.U8("after") != 0 || r.Take(0, "empty") != nil || r.Err() != err {
		t.Fatal("the error is not sticky")
	}
	r2 := New([]byte{1, 2}, "s", binary.BigEndian)
	r2.U8("a")
	r2.End()
	if r2.Err() == nil || !strings.Contains(r2.Err().Error(), "1 bytes after the end") {
		t.Fatalf("trailing bytes: %v", r2.Err())
	}
	r3 := New([]byte{1, 2}, "s", binary.BigEndian)
	if r3.Take(-1, "neg") != nil || r3.Err() == nil {
		t.Fatal("a negative size read")
	}
	r4 := New([]byte{1, 2}, "s", binary.BigEndian)
	r4.Seek(3)
	if r4.Err() == nil || r4.Off() != 0 {
		t.Fatal("seek past the end")
	}
	r5 := New([]byte{1, 2, 3, 4}, "s", binary.BigEndian)
	r5.U32("magic")
	r5.FailAt(r5.Off()-4, "magic is wrong")
	if !strings.Contains(r5.Err().Error(), "at byte 0: magic is wrong") {
		t.Fatalf("FailAt: %v", r5.Err())
	}
}

// FuzzReader runs a program of reads over input: no read panics, the offset
// stays in bounds, and a read that does not fit is an error.
func FuzzReader(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, []byte{0, 1, 2, 3, 4, 5})
	f.Fuzz(func(t *testing.T, data, prog []byte) {
		r := New(data, "fuzz", binary.BigEndian)
		for _, op := range prog {
			before, hadErr := r.Off(), r.Err() != nil
			want := map[byte]int{0: 1, 1: 2, 2: 4, 3: 8}[op%6]
			switch op % 6 {
			case 0:
				r.U8("f")
			case 1:
				r.U16("f")
			case 2:
				r.U32("f")
			case 3:
				r.U64("f")
			case 4:
				r.Sized16("f")
				want = -1
			case 5:
				r.Seek(int(op))
				want = -1
			}
			if r.Off() < 0 || r.Off() > len(data) {
				t.Fatalf("offset %d outside %d bytes", r.Off(), len(data))
			}
			if want > 0 && !hadErr && (len(data)-before < want) != (r.Err() != nil) {
				t.Fatalf("a %d-byte read at %d of %d: err %v", want, before, len(data), r.Err())
			}
		}
	})
}
