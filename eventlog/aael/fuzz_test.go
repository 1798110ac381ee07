package aael

import (
	"bytes"
	"crypto/sha512"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
)

// seedLog is a small valid runtime log with INIT, snapshot, virtual and
// ordinary records.
func seedLog() []byte {
	d := sha512.Sum384([]byte("seed"))
	v := mr.Digest{Alg: mr.SHA384, Bytes: d[:]}
	b, _ := AppendInit(nil, 4, mr.Zero(mr.SHA384))
	snap, _ := SnapshotRecord([]Snapshot{{Name: "mr_ima", Value: v}})
	b, _, _ = AppendEntry(b, 4, mr.SHA384, snap)
	rec, _ := ExtendRecord("mr_ima", v)
	b, _, _ = AppendEntry(b, 4, mr.SHA384, rec)
	b, _, _ = AppendEntry(b, 4, mr.SHA384, Record{"coco.com", "PullImage", `{"image":"alpine"}`})
	return b
}

// trusteeSeed returns the real Trustee CCEL with AAEL entries when the
// corpus is present.
func trusteeSeed(f *testing.F) []byte {
	if s := corpus.Seeds(f, "trustee/eventlog/CCEL_AAEL_alibabacloud"); len(s) == 1 {
		return s[0]
	}
	return nil
}

func FuzzReader(f *testing.F) {
	f.Add(seedLog(), false)
	f.Add(seedLog(), true)
	if b := trusteeSeed(f); b != nil {
		f.Add(b, true)
		f.Add(b[len(b)-268:], false)
	}
	f.Fuzz(func(t *testing.T, data []byte, embedded bool) {
		var entries []Entry
		res, err := Replay(NewReader(bytes.NewReader(data), Options{Embedded: embedded}), ReplayOptions{OnEntry: func(e *Entry) error {
			c := *e
			c.Event = append([]byte(nil), e.Event...)
			entries = append(entries, c)
			return nil
		}})
		if err != nil {
			return
		}
		if res.End > int64(len(data)) {
			t.Fatalf("End %d beyond %d bytes", res.End, len(data))
		}
		// Every AAEL entry re-encodes to its own bytes.
		for _, e := range entries {
			if e.Foreign {
				continue
			}
			var b []byte
			if !e.Init.IsZero() {
				b, err = AppendInit(nil, e.MRIndex, e.Init)
			} else {
				b, _, err = AppendEntry(nil, e.MRIndex, e.Digest.Alg, e.Record)
			}
			if err != nil {
				t.Fatalf("entry %d does not re-encode: %v", e.Index, err)
			}
			if !bytes.Equal(b, data[e.Offset:e.Offset+e.Size]) {
				t.Fatalf("entry %d re-encodes differently", e.Index)
			}
		}
	})
}

func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{"domain operation content", "coco.com some-operation {\"key\": \"value\"}",
		"mr_ima extend sha384/" + strings.Repeat("ab", 48), "ccmr snapshot mr_a=sha256/" + strings.Repeat("01", 32),
		"INIT sha384/" + strings.Repeat("00", 48)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRecord(s)
		if err != nil {
			return
		}
		if r.String() != s || strings.ContainsAny(s, "\n\r") {
			t.Fatalf("accepted %q as %q", s, r)
		}
		b, _, err := AppendEntry(nil, 4, mr.SHA256, r)
		if err != nil {
			t.Fatalf("valid record %q does not encode: %v", s, err)
		}
		e, err := NewReader(bytes.NewReader(b), Options{}).Next()
		if err != nil || e.Record != r {
			t.Fatalf("record %q does not read back: %v %q", s, err, e.Record)
		}
		if r.IsVirtual() {
			if _, _, err := r.Virtual(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func FuzzAAELText(f *testing.F) {
	f.Add([]byte("INIT sha256/" + strings.Repeat("00", 32) + "\ndomain event operation\ndomain event2 operation\n"))
	f.Add([]byte("INIT sha384/" + strings.Repeat("00", 48) + "\nmr_ima extend sha384/" + strings.Repeat("ab", 48) + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var recs []Record
		var init mr.Digest
		res, err := Replay(NewTextReader(bytes.NewReader(data), Options{}), ReplayOptions{OnEntry: func(e *Entry) error {
			if e.Init.IsZero() {
				recs = append(recs, e.Record)
			} else {
				init = e.Init
			}
			return nil
		}})
		if err != nil {
			return
		}
		// Writing what was read gives the same bytes and the same replay.
		b, err := AppendTextInit(nil, init)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if b, err = AppendTextLine(b, r); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(b, data) {
			t.Fatalf("rewrite differs:\n%q\n%q", b, data)
		}
		res2, err := Replay(NewTextReader(bytes.NewReader(b), Options{}), ReplayOptions{})
		if err != nil || !res2.Registers[0].Digest.Equal(res.Registers[0].Digest) {
			t.Fatalf("rewrite replays differently: %v", err)
		}
	})
}
