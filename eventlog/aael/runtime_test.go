package aael

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
)

// must returns v or panics: test setup that cannot fail unless the code is broken.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestDesignVector(t *testing.T) {
	var v struct{ Record, SHA256, SHA384 string }
	if err := json.Unmarshal(must(os.ReadFile("testdata/aael-vector.json")), &v); err != nil {
		t.Fatal(err)
	}
	rec := must(ParseRecord(v.Record))
	for _, c := range []struct {
		alg mr.Alg
		hex string
	}{{mr.SHA256, v.SHA256}, {mr.SHA384, v.SHA384}} {
		d := must(EventDigest(c.alg, rec))
		if d.Hex() != c.hex {
			t.Errorf("%v: EventDigest = %s, want %s", c.alg, d.Hex(), c.hex)
		}
		b, d2, err := AppendEntry(nil, 4, c.alg, rec)
		if err != nil {
			t.Fatal(err)
		}
		if !d2.Equal(d) {
			t.Errorf("%v: AppendEntry digest %v != EventDigest %v", c.alg, d2, d)
		}
		// Layout, field by field.
		n := c.alg.Size()
		le := binary.LittleEndian
		if le.Uint32(b) != 4 || le.Uint32(b[4:]) != 6 || le.Uint32(b[8:]) != 1 || le.Uint16(b[12:]) != uint16(c.alg) {
			t.Errorf("%v: bad header % x", c.alg, b[:14])
		}
		if hex.EncodeToString(b[14:14+n]) != c.hex {
			t.Errorf("%v: digest field %x", c.alg, b[14:14+n])
		}
		ev := b[18+n:]
		if int(le.Uint32(b[14+n:])) != len(ev) || string(ev[:4]) != "LEAA" || int(le.Uint32(ev[4:])) != len(v.Record) || string(ev[8:]) != v.Record {
			t.Errorf("%v: bad event % x", c.alg, b[14+n:])
		}
	}
}

// The attestation agent's entries in Trustee's Alibaba Cloud CCEL: ccmr
// must write them byte for byte, and read and replay the whole CCEL to the
// RTMRs Trustee's test data states.
func TestTrusteeAAEL(t *testing.T) {
	dir := filepath.Join(corpus.Require(t), "trustee")
	raw := must(os.ReadFile(filepath.Join(dir, "eventlog", "CCEL_AAEL_alibabacloud")))
	var exp map[string]json.RawMessage
	if err := json.Unmarshal(must(os.ReadFile(filepath.Join(dir, "EXPECTED.json"))), &exp); err != nil {
		t.Fatal(err)
	}
	var entry struct {
		ReplayedFinal map[string]string `json:"replayed_final"`
	}
	if err := json.Unmarshal(exp["eventlog/CCEL_AAEL_alibabacloud"], &entry); err != nil {
		t.Fatal(err)
	}
	want := entry.ReplayedFinal
	if len(want) != 4 {
		t.Fatalf("EXPECTED.json: %d replayed values, want 4", len(want))
	}
	var aael, all []*Entry
	res, err := Replay(NewReader(bytes.NewReader(raw), Options{File: "CCEL_AAEL_alibabacloud", Embedded: true}),
		ReplayOptions{File: "CCEL_AAEL_alibabacloud", OnEntry: func(e *Entry) error {
			c := *e
			c.Event = append([]byte(nil), e.Event...)
			all = append(all, &c)
			if !e.Foreign {
				aael = append(aael, &c)
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	// Trustee's own parse of the same file (CcEventLog serde output) lists
	// every entry after the Spec ID header: ours must agree entry by entry.
	// (EXPECTED.json's events_incl_header_entry, 87, is that count, which
	// excludes the header: the file holds 88 entries with it.)
	var parsed struct {
		Events []struct {
			Index   uint32 `json:"index"`
			Digests []struct {
				Digest string `json:"digest"`
			} `json:"digests"`
			TypeName string `json:"type_name"`
			Details  struct {
				String string `json:"string"`
			} `json:"details"`
		} `json:"uefi_event_logs"`
	}
	if err := json.Unmarshal(must(os.ReadFile(filepath.Join(dir, "eventlog", "CCEL_AAEL_alibabacloud_out.json"))), &parsed); err != nil {
		t.Fatal(err)
	}
	if res.Events != len(parsed.Events)+1 {
		t.Errorf("events = %d, want %d + the header", res.Events, len(parsed.Events))
	}
	for i, p := range parsed.Events {
		if i+1 >= len(all) {
			break
		}
		e := all[i+1]
		if e.MRIndex != p.Index || len(p.Digests) != 1 || e.Digest.Hex() != p.Digests[0].Digest {
			t.Errorf("entry %d: index %d digest %v; trustee: %d %+v", i+1, e.MRIndex, e.Digest, p.Index, p.Digests)
		}
		if (p.TypeName == "EV_EVENT_TAG") != !e.Foreign || (!e.Foreign && e.Record.String() != p.Details.String) {
			t.Errorf("entry %d: %q foreign=%v; trustee: %s %q", i+1, e.Record, e.Foreign, p.TypeName, p.Details.String)
		}
	}
	for i := 0; i < 4; i++ {
		name := TDXName(uint32(i + 1))
		got, ok := res.Value(name)
		w := want["sha384:RTMR"+string(rune('0'+i))]
		if !ok || got.Hex() != w {
			t.Errorf("%s = %v, want sha384:%s", name, got, w)
		}
	}
	if len(aael) != 2 {
		t.Fatalf("%d AAEL entries, want 2", len(aael))
	}
	for _, e := range aael {
		if e.MRIndex != 4 || e.Record.Domain != "coco.com" || e.Record.Operation != "some-operation" {
			t.Errorf("entry %d: %d %q", e.Index, e.MRIndex, e.Record)
		}
		b, _, err := AppendEntry(nil, 4, mr.SHA384, e.Record)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, raw[e.Offset:e.Offset+e.Size]) {
			t.Errorf("entry %d at %d: our encoding differs from the agent's", e.Index, e.Offset)
		}
	}
	// Without Embedded the CCEL is not a runtime eventlog.
	if _, err := Replay(NewReader(bytes.NewReader(raw), Options{}), ReplayOptions{}); err == nil {
		t.Error("strict reader accepted a CCEL")
	}
	// The AAEL entries alone, cut out of the CCEL, are a valid runtime log
	// whose replay is RTMR3 (RTMR3 holds only them).
	var cut []byte
	for _, e := range aael {
		cut = append(cut, raw[e.Offset:e.Offset+e.Size]...)
	}
	res, err = Replay(NewReader(bytes.NewReader(cut), Options{}), ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := res.Value("rtmr3"); got.Hex() != want["sha384:RTMR3"] {
		t.Errorf("cut AAEL replay = %v, want %s", got, want["sha384:RTMR3"])
	}
}

func TestParseRecord(t *testing.T) {
	good := []string{
		"domain operation content",
		"coco.com some-operation {\"key\": \"value\"}",
		"mr_ima extend sha384/" + strings.Repeat("ab", 48),
		"mr_ctr.abc-1_2 extend sha256/" + strings.Repeat("00", 32),
		"ccmr snapshot mr_a=sha256/" + strings.Repeat("01", 32) + ",mr_b=sha384/" + strings.Repeat("02", 48),
		"a b c d e",
	}
	for _, s := range good {
		r, err := ParseRecord(s)
		if err != nil {
			t.Errorf("ParseRecord(%q): %v", s, err)
			continue
		}
		if r.String() != s {
			t.Errorf("round trip %q -> %q", s, r.String())
		}
	}
	bad := []string{
		"", "domain", "domain operation", "domain operation ", " operation content",
		"domain  content", "dom\tain op content", "domain op con\ntent", "domain op con\rtent",
		"domain op caf\xc3\xa9", "domain op \x00",
		"INIT sha256/00 x",
		"mr_ima extend sha384/" + strings.Repeat("ab", 47),        // short digest
		"mr_ima extend sha384/" + strings.Repeat("AB", 48),        // not canonical
		"mr_ima extend sha384:" + strings.Repeat("ab", 48),        // ':' form
		"mr_ima extend sha384/" + strings.Repeat("ab", 48) + " x", // trailing text
		"mr_ima set sha384/" + strings.Repeat("ab", 48),
		"mr_IMA extend sha384/" + strings.Repeat("ab", 48),
		"mr_ extend sha384/" + strings.Repeat("ab", 48),
		"ccmr other x",
		"ccmr snapshot mr_b=sha256/" + strings.Repeat("01", 32) + ",mr_a=sha256/" + strings.Repeat("01", 32),
		"ccmr snapshot mr_a=sha256/" + strings.Repeat("01", 32) + ",mr_a=sha256/" + strings.Repeat("01", 32),
		"ccmr snapshot mr_a=sha256/" + strings.Repeat("01", 32) + ",",
	}
	for _, s := range bad {
		if r, err := ParseRecord(s); err == nil {
			t.Errorf("ParseRecord(%q) = %+v, want error", s, r)
		} else if !errors.Is(err, mr.ErrMalformed) {
			t.Errorf("ParseRecord(%q): %v does not wrap ErrMalformed", s, err)
		}
	}
}

// Nothing can smuggle a second record, a newline or another domain
// through a register name or a digest.
func TestNoInjection(t *testing.T) {
	d := mr.Zero(mr.SHA384)
	for _, name := range []string{"mr_a\nmr_b extend", "mr_a extend", "mr_a b", "ccmr", "INIT", "mr_a,mr_b=sha384/00", "mr_" + strings.Repeat("a", 61)} {
		if _, err := ExtendRecord(name, d); err == nil {
			t.Errorf("ExtendRecord(%q) accepted", name)
		}
		if _, err := SnapshotRecord([]Snapshot{{Name: name, Value: d}}); err == nil {
			t.Errorf("SnapshotRecord(%q) accepted", name)
		}
	}
	if _, err := ExtendRecord("mr_a", mr.Digest{Alg: mr.SHA384, Bytes: make([]byte, 47)}); err == nil {
		t.Error("short digest accepted")
	}
	if _, err := ExtendRecord("mr_a", mr.Digest{Alg: 0x99, Bytes: make([]byte, 32)}); err == nil {
		t.Error("unknown alg accepted")
	}
	for _, r := range []Record{{"a", "b", "c\nx y z"}, {"a b", "c", "d"}, {"a", "b\n", "c"}, {"a", "b", ""}} {
		if _, _, err := AppendEntry(nil, 4, mr.SHA384, r); err == nil {
			t.Errorf("AppendEntry(%q) accepted", r)
		}
		if _, err := AppendTextLine(nil, r); err == nil {
			t.Errorf("AppendTextLine(%q) accepted", r)
		}
	}
}

// fold computes a virtual register independently of the package.
func fold384(ds ...[]byte) []byte {
	v := make([]byte, 48)
	for _, d := range ds {
		h := sha512.New384()
		h.Write(v)
		h.Write(d)
		v = h.Sum(nil)
	}
	return v
}

type logBuilder struct {
	t   testing.TB
	b   []byte
	alg mr.Alg
	idx uint32
	ds  [][]byte // digests extended, in order
}

func (l *logBuilder) add(r Record) {
	l.t.Helper()
	var d mr.Digest
	var err error
	l.b, d, err = AppendEntry(l.b, l.idx, l.alg, r)
	if err != nil {
		l.t.Fatal(err)
	}
	l.ds = append(l.ds, d.Bytes)
}

func TestReplayVirtual(t *testing.T) {
	l := &logBuilder{t: t, alg: mr.SHA384, idx: 4}
	start := mr.Digest{Alg: mr.SHA384, Bytes: bytes.Repeat([]byte{7}, 48)}
	l.b = must(AppendInit(nil, 4, start))
	var ima, ctr [][]byte
	for i := 0; i < 5; i++ {
		d := sha512.Sum384([]byte{byte(i)})
		ima = append(ima, d[:])
		l.add(must(ExtendRecord("mr_ima", mr.Digest{Alg: mr.SHA384, Bytes: d[:]})))
		if i%2 == 0 {
			c := sha256.Sum256([]byte{byte(i)})
			ctr = append(ctr, c[:])
			l.add(must(ExtendRecord("mr_ctr.x", mr.Digest{Alg: mr.SHA256, Bytes: c[:]})))
		}
		l.add(Record{"coco.com", "PullImage", `{"image":"alpine"}`})
	}
	var seen []int
	res, err := Replay(NewReader(bytes.NewReader(l.b), Options{File: "rt.log"}), ReplayOptions{File: "rt.log",
		OnVirtual: func(v VirtualRecord) error {
			if v.Name == "mr_ima" {
				seen = append(seen, v.Seq)
				if !bytes.Equal(v.Value.Bytes, fold384(ima[:v.Seq+1]...)) {
					t.Errorf("mr_ima after record %d: %v", v.Seq, v.Value)
				}
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	// Backing register: start value, then every digest.
	bv := start.Bytes
	for _, d := range l.ds {
		h := sha512.New384()
		h.Write(bv)
		h.Write(d)
		bv = h.Sum(nil)
	}
	if got, _ := res.Value("rtmr3"); !bytes.Equal(got.Bytes, bv) {
		t.Errorf("rtmr3 = %v, want %x", got, bv)
	}
	if got, _ := res.Value("mr_ima"); !bytes.Equal(got.Bytes, fold384(ima...)) {
		t.Errorf("mr_ima = %v", got)
	}
	cv := make([]byte, 32)
	for _, d := range ctr {
		s := sha256.Sum256(append(append([]byte(nil), cv...), d...))
		cv = s[:]
	}
	if got, _ := res.Value("mr_ctr.x"); !bytes.Equal(got.Bytes, cv) || got.Alg != mr.SHA256 {
		t.Errorf("mr_ctr.x = %v, want sha256:%x", got, cv)
	}
	if len(seen) != 5 || seen[4] != 4 || res.Counts["mr_ima"] != 5 || res.Counts["mr_ctr.x"] != 3 {
		t.Errorf("seq %v counts %v", seen, res.Counts)
	}
	if !res.Init.Equal(start) || res.Events != 1+5+3+5 || res.End != int64(len(l.b)) {
		t.Errorf("init %v events %d end %d", res.Init, res.Events, res.End)
	}
	// Previous: the value before the last entry.
	h := sha512.New384()
	h.Write(res.Previous.Bytes)
	h.Write(l.ds[len(l.ds)-1])
	if !bytes.Equal(h.Sum(nil), bv) {
		t.Error("Previous extended with the last digest is not the final value")
	}
	if err := res.Check("rt.log", map[string]mr.Digest{"rtmr3": {Alg: mr.SHA384, Bytes: bv}}); err != nil {
		t.Error(err)
	}
	var m *eventlog.Mismatch
	if err := res.Check("rt.log", map[string]mr.Digest{"rtmr3": start}); !errors.As(err, &m) || m.Record != -1 {
		t.Errorf("Check with a wrong value: %v", err)
	}
	// Records iterator.
	n := 0
	for v, err := range Records(NewReader(bytes.NewReader(l.b), Options{}), "mr_ima", ReplayOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if v.Seq != n || !bytes.Equal(v.Digest.Bytes, ima[n]) {
			t.Errorf("record %d: %+v", n, v)
		}
		n++
	}
	if n != 5 {
		t.Errorf("iterator gave %d records", n)
	}
	// Tamper: change one byte of a record's text → Mismatch at that entry.
	second := int64(0)
	if _, err := Replay(NewReader(bytes.NewReader(l.b), Options{}), ReplayOptions{OnEntry: func(e *Entry) error {
		if e.Index == 2 {
			second = e.Offset
		}
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), l.b...)
	i := bytes.Index(bad[second:], []byte("sha256/")) + int(second) + 8
	bad[i] ^= 1 // still valid hex
	_, err = Replay(NewReader(bytes.NewReader(bad), Options{}), ReplayOptions{File: "bad.log"})
	if !errors.As(err, &m) || m.Record != 2 || m.Offset != second || !errors.Is(err, eventlog.ErrMismatch) {
		t.Errorf("tampered log: %v", err)
	}
}

func TestSnapshot(t *testing.T) {
	a := mr.Digest{Alg: mr.SHA384, Bytes: bytes.Repeat([]byte{1}, 48)}
	b := mr.Digest{Alg: mr.SHA256, Bytes: bytes.Repeat([]byte{2}, 32)}
	snap := must(SnapshotRecord([]Snapshot{{"mr_z", b}, {"mr_ima", a}}))
	if !strings.HasPrefix(snap.String(), "ccmr snapshot mr_ima=sha384/0101") {
		t.Errorf("snapshot = %q", snap)
	}
	l := &logBuilder{t: t, alg: mr.SHA384, idx: 4}
	l.b = must(AppendInit(nil, 4, mr.Zero(mr.SHA384)))
	l.add(snap)
	d := sha512.Sum384([]byte("x"))
	l.add(must(ExtendRecord("mr_ima", mr.Digest{Alg: mr.SHA384, Bytes: d[:]})))
	res := must(Replay(NewReader(bytes.NewReader(l.b), Options{}), ReplayOptions{}))
	h := sha512.New384()
	h.Write(a.Bytes)
	h.Write(d[:])
	if got, _ := res.Value("mr_ima"); !bytes.Equal(got.Bytes, h.Sum(nil)) {
		t.Errorf("mr_ima = %v", got)
	}
	if got, _ := res.Value("mr_z"); !got.Equal(b) {
		t.Errorf("mr_z = %v", got)
	}
	if len(res.Snapshot) != 2 {
		t.Errorf("snapshot %v", res.Snapshot)
	}
	// A snapshot after a record is refused.
	l.add(snap)
	_, err := Replay(NewReader(bytes.NewReader(l.b), Options{File: "s.log"}), ReplayOptions{File: "s.log"})
	var le *eventlog.Error
	if !errors.As(err, &le) || le.Record != 3 || !strings.Contains(err.Error(), "snapshot") {
		t.Errorf("late snapshot: %v", err)
	}
	// A second algorithm for one virtual register is refused, naming the record.
	l2 := &logBuilder{t: t, alg: mr.SHA384, idx: 4}
	l2.add(must(ExtendRecord("mr_x", a)))
	l2.add(must(ExtendRecord("mr_x", b)))
	_, err = Replay(NewReader(bytes.NewReader(l2.b), Options{File: "m.log"}), ReplayOptions{File: "m.log"})
	if !errors.As(err, &le) || le.Record != 1 || !strings.Contains(err.Error(), "mr_x extend sha256/") {
		t.Errorf("mixed algs: %v", err)
	}
}

func TestReaderErrors(t *testing.T) {
	rec := Record{"domain", "operation", "content"}
	one, _, _ := AppendEntry(nil, 4, mr.SHA384, rec)
	two := append(append([]byte(nil), one...), one...)
	n := len(one)
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), two...)) }
	le := binary.LittleEndian
	cases := []struct {
		name string
		in   []byte
		rec  int
		off  int64
		want string
	}{
		{"truncated header", two[:n+5], 1, int64(n), "truncated"},
		{"truncated digest", two[:n+20], 1, int64(n), "truncated"},
		{"truncated event", two[:2*n-1], 1, int64(n), "truncated"},
		{"digest count", mod(func(b []byte) []byte { le.PutUint32(b[n+8:], 2); return b }), 1, int64(n), "digest count 2"},
		{"unknown alg", mod(func(b []byte) []byte { le.PutUint16(b[n+12:], 0x99); return b }), 1, int64(n), "unknown digest algorithm 0x0099"},
		{"other alg", mod(func(b []byte) []byte { le.PutUint16(b[n+12:], uint16(mr.SHA256)); return b }), 1, int64(n), "sha256"},
		{"other index", mod(func(b []byte) []byte { le.PutUint32(b[n:], 3); return b }), 1, int64(n), "MR index 3"},
		{"bad type", mod(func(b []byte) []byte { le.PutUint32(b[n+4:], 5); return b }), 1, int64(n), "event type 0x5"},
		{"bad tag", mod(func(b []byte) []byte { b[n+66] = 'X'; return b }), 1, int64(n), "tagged event ID"},
		{"tag size", mod(func(b []byte) []byte { le.PutUint32(b[n+70:], 3); return b }), 1, int64(n), "tagged event size 3"},
		{"size overflow", mod(func(b []byte) []byte { le.PutUint32(b[n+62:], 0xfffffff0); return b }), 1, int64(n), "exceeds"},
		{"bad text", mod(func(b []byte) []byte { b[n+82] = '\n'; return b }), 1, int64(n), "not printable"},
		{"late no-action", mod(func(b []byte) []byte { le.PutUint32(b[n+4:], 3); return b }), 1, int64(n), "EV_NO_ACTION"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(c.in), Options{File: "x.log"})
			var err error
			for err == nil {
				_, err = r.Next()
			}
			var e *eventlog.Error
			if !errors.As(err, &e) || e.File != "x.log" || e.Record != c.rec || e.Offset != c.off || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want record %d at %d with %q", err, c.rec, c.off, c.want)
			}
			if !errors.Is(err, mr.ErrMalformed) && !errors.Is(err, mr.ErrUnsupported) {
				t.Errorf("%v wraps neither ErrMalformed nor ErrUnsupported", err)
			}
		})
	}
}

func TestInitEntry(t *testing.T) {
	start := mr.Digest{Alg: mr.SHA256, Bytes: bytes.Repeat([]byte{0xab}, 32)}
	b := must(AppendInit(nil, 17, start))
	b, d, err := AppendEntry(b, 17, mr.SHA256, Record{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	res := must(Replay(NewReader(bytes.NewReader(b), Options{}), ReplayOptions{Name: PCRName}))
	want := sha256.Sum256(append(append([]byte(nil), start.Bytes...), d.Bytes...))
	if got, _ := res.Value("pcr17"); !bytes.Equal(got.Bytes, want[:]) {
		t.Errorf("pcr17 = %v, want %x", got, want)
	}
	if res.Registers[0].Register.Index != 17 {
		t.Errorf("index %d", res.Registers[0].Register.Index)
	}
	// INIT with a non-zero digest, or of another algorithm, is refused.
	bad := append([]byte(nil), b...)
	bad[14] = 1
	if _, err := Replay(NewReader(bytes.NewReader(bad), Options{}), ReplayOptions{}); err == nil {
		t.Error("INIT with non-zero digest accepted")
	}
	if _, err := AppendInit(nil, 4, mr.Digest{Alg: mr.SHA384, Bytes: make([]byte, 49)}); !errors.Is(err, mr.ErrDigestSize) {
		t.Errorf("AppendInit 49 bytes: %v", err)
	}
	// Backing names the register.
	res = must(Replay(NewReader(bytes.NewReader(b), Options{}), ReplayOptions{Backing: "pcr17"}))
	if res.Registers[0].Register.Name != "pcr17" {
		t.Errorf("name %q", res.Registers[0].Register.Name)
	}
	// Empty log: nothing.
	res = must(Replay(NewReader(bytes.NewReader(nil), Options{}), ReplayOptions{}))
	if res.Events != 0 || len(res.Registers) != 0 {
		t.Errorf("empty: %+v", res)
	}
}

func TestAAELText(t *testing.T) {
	var v struct {
		Cases []struct{ Name, Log, Register, Error string }
	}
	if err := json.Unmarshal(must(os.ReadFile("testdata/aael-text-trustee.json")), &v); err != nil {
		t.Fatal(err)
	}
	for _, c := range v.Cases {
		t.Run(c.Name, func(t *testing.T) {
			res, err := Replay(NewTextReader(strings.NewReader(c.Log), Options{File: c.Name, MRIndex: 4}), ReplayOptions{File: c.Name})
			if c.Error != "" {
				if err == nil || !errors.Is(err, mr.ErrDigestSize) {
					t.Fatalf("err = %v, want %s", err, c.Error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := must(mr.ParseDigest(c.Register))
			if got, _ := res.Value("rtmr3"); !got.Equal(want) {
				t.Errorf("replay = %v, want %v", got, want)
			}
			if res.Events != 3 {
				t.Errorf("events %d", res.Events)
			}
		})
	}
	// Writer and reader agree; virtual registers work in text too.
	d := sha512.Sum384([]byte("f"))
	b := must(AppendTextInit(nil, mr.Zero(mr.SHA384)))
	b = must(AppendTextLine(b, must(ExtendRecord("mr_ima", mr.Digest{Alg: mr.SHA384, Bytes: d[:]}))))
	res := must(Replay(NewTextReader(bytes.NewReader(b), Options{}), ReplayOptions{}))
	if got, _ := res.Value("mr_ima"); !bytes.Equal(got.Bytes, fold384(d[:])) {
		t.Errorf("mr_ima = %v", got)
	}
	for _, s := range []string{"", "INIT sha384/00\n", "x y z\n", "INIT sha256/" + strings.Repeat("00", 32) + "\na b c", "INIT sha256/" + strings.Repeat("00", 32) + "\nINIT sha256/" + strings.Repeat("00", 32) + "\n", "INIT sha256/" + strings.Repeat("00", 32) + "\na b c\r\n"} {
		r := NewTextReader(strings.NewReader(s), Options{File: "t"})
		var err error
		for err == nil {
			_, err = r.Next()
		}
		var le *eventlog.Error
		if !errors.As(err, &le) {
			t.Errorf("%q: %v, want *eventlog.Error", s, err)
		}
	}
}

func TestSniff(t *testing.T) {
	b, _, _ := AppendEntry(nil, 4, mr.SHA384, Record{"a", "b", "c"})
	if f, ok := Sniff(b); !ok || f != eventlog.FormatRuntime {
		t.Errorf("binary: %v %v", f, ok)
	}
	if f, ok := Sniff([]byte("INIT sha384/00")); !ok || f != eventlog.FormatAAELText {
		t.Errorf("text: %v %v", f, ok)
	}
	if _, ok := Sniff([]byte("garbage garbage garbage")); ok {
		t.Error("garbage sniffed")
	}
	var _ io.Reader = bytes.NewReader(nil)
}

// readAll reads every entry of r; it returns the count and the first error.
func readAll(r EntryReader) (int, error) {
	n := 0
	for {
		_, err := r.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
	}
}

// A binary log read from the middle (Options.Continue) holds its entries to
// the algorithm and MR index of the ones before, and refuses an INIT entry.
func TestContinueBinary(t *testing.T) {
	tail, _, err := AppendEntry(nil, 4, mr.SHA384, Record{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	cont := Options{File: "t", Continue: true, Alg: mr.SHA384, MRIndex: 4}
	if n, err := readAll(NewReader(bytes.NewReader(tail), cont)); err != nil || n != 1 {
		t.Fatalf("sound tail: %d entries, %v", n, err)
	}
	if n, err := readAll(NewReader(bytes.NewReader(nil), cont)); err != nil || n != 0 {
		t.Fatalf("empty tail: %d entries, %v", n, err)
	}
	other := cont
	other.MRIndex = 5
	if _, err := readAll(NewReader(bytes.NewReader(tail), other)); err == nil || !strings.Contains(err.Error(), "MR index 4, but earlier entries use 5") {
		t.Errorf("another MR index: %v", err)
	}
	other = cont
	other.Alg = mr.SHA256
	if _, err := readAll(NewReader(bytes.NewReader(tail), other)); err == nil || !strings.Contains(err.Error(), "digest algorithm sha384, but earlier entries use sha256") {
		t.Errorf("another algorithm: %v", err)
	}
	other.Alg = 0
	if _, err := readAll(NewReader(bytes.NewReader(tail), other)); err == nil {
		t.Error("an unknown algorithm to continue with is accepted")
	}
	init := must(AppendInit(nil, 4, mr.Zero(mr.SHA384)))
	if _, err := readAll(NewReader(bytes.NewReader(init), cont)); err == nil || !strings.Contains(err.Error(), "EV_NO_ACTION entry after the first entry") {
		t.Errorf("an INIT entry mid-log: %v", err)
	}
}

// An aael-text log read from the middle (Options.Continue): every line is
// a record hashed with Alg; an INIT line is refused; no input is no error.
func TestContinueText(t *testing.T) {
	rec := must(ExtendRecord("mr_ctr.a", mr.SHA384.Sum([]byte("x"))))
	tail := must(AppendTextLine(nil, rec))
	cont := Options{File: "t", Continue: true, Alg: mr.SHA384, MRIndex: 4}
	e, err := NewTextReader(bytes.NewReader(tail), cont).Next()
	if err != nil {
		t.Fatal(err)
	}
	if !e.Init.IsZero() || e.MRIndex != 4 || !e.Digest.Equal(mr.SHA384.Sum(bytes.TrimSuffix(tail, []byte("\n")))) {
		t.Errorf("entry %+v", e)
	}
	if n, err := readAll(NewTextReader(bytes.NewReader(nil), cont)); err != nil || n != 0 {
		t.Errorf("empty tail: %d, %v", n, err)
	}
	init := must(AppendTextInit(nil, mr.Zero(mr.SHA384)))
	if _, err := readAll(NewTextReader(bytes.NewReader(init), cont)); err == nil || !strings.Contains(err.Error(), "INIT line after the first line") {
		t.Errorf("an INIT line mid-log: %v", err)
	}
	bad := cont
	bad.Alg = 0
	if _, err := readAll(NewTextReader(bytes.NewReader(tail), bad)); err == nil {
		t.Error("an unknown algorithm to continue with is accepted")
	}
}
