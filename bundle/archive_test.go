package bundle

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/mr"
)

// sample is a small sim bundle with a runtime log and an IMA list.
func sample() *Bundle {
	return &Bundle{
		Format:   Format,
		Platform: mr.PlatformSim,
		Nonce:    []byte("nonce"),
		Time:     time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC),
		Evidence: Evidence{Report: []byte(`{"format":"ccmr-sim-attestation/v1"}`), Signature: []byte("sig"), PublicKey: "PEM"},
		Logs: []Log{
			{Format: "runtime", Register: "rtmr3", Alg: "sha384", Source: "/run/ccmr/rtmr3.log", Data: []byte("INIT rtmr3\nrecord one\n")},
			{Format: "ima-binary", Source: "ima", Data: bytes.Repeat([]byte{1, 2, 3, 4, 5}, 1000)},
		},
	}
}

func archiveBytes(t testing.TB, b *Bundle) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := b.WriteArchive(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readBytes(raw []byte) (*Bundle, error) {
	return ReadAt(context.Background(), bytes.NewReader(raw), int64(len(raw)), "b.zip")
}

func sameLogs(t *testing.T, got, want *Bundle) {
	t.Helper()
	if len(got.Logs) != len(want.Logs) {
		t.Fatalf("%d logs, want %d", len(got.Logs), len(want.Logs))
	}
	for i := range want.Logs {
		g, err := got.Logs[i].Bytes()
		if err != nil {
			t.Fatal(err)
		}
		w, _ := want.Logs[i].Bytes()
		if !bytes.Equal(g, w) || got.Logs[i].Format != want.Logs[i].Format || got.Logs[i].Source != want.Logs[i].Source || got.Logs[i].Register != want.Logs[i].Register {
			t.Errorf("logs[%d] differs after a round trip", i)
		}
	}
}

func TestArchiveRoundTrip(t *testing.T) {
	want := sample()
	raw := archiveBytes(t, want)
	got, err := readBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got.Format != FormatV2 || got.Platform != want.Platform || !bytes.Equal(got.Nonce, want.Nonce) || !got.Time.Equal(want.Time) || !bytes.Equal(got.Evidence.Report, want.Evidence.Report) {
		t.Fatalf("manifest differs: %+v", got)
	}
	sameLogs(t, got, want)
	// The logs stay in the archive.
	for i, l := range got.Logs {
		if l.Data != nil || l.Size() != int64(len(want.Logs[i].Data)) {
			t.Errorf("logs[%d]: Data %v, Size %d: not attached to its member", i, l.Data != nil, l.Size())
		}
	}
	// Written again as v1 and as v2, it reads back the same.
	var v1 bytes.Buffer
	if err := got.Write(&v1); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(bytes.TrimSpace(v1.Bytes()), []byte("{")) || !bytes.Contains(v1.Bytes(), []byte(`"ccmr-evidence/v1"`)) || bytes.Contains(v1.Bytes(), []byte(`"member"`)) {
		t.Fatalf("v1 written from a v2 bundle:\n%.300s", v1.Bytes())
	}
	back, err := Read(&v1, "v1.json")
	if err != nil {
		t.Fatal(err)
	}
	sameLogs(t, back, want)
	if again := archiveBytes(t, got); !bytes.Equal(again, raw) {
		t.Error("a v2 bundle read and written again differs")
	}
}

func TestOpenAndReadStream(t *testing.T) {
	dir := t.TempDir()
	v2 := filepath.Join(dir, "b.zip")
	if err := os.WriteFile(v2, archiveBytes(t, sample()), 0o600); err != nil {
		t.Fatal(err)
	}
	var v1 bytes.Buffer
	if err := sample().Write(&v1); err != nil {
		t.Fatal(err)
	}
	v1File := filepath.Join(dir, "b.json")
	if err := os.WriteFile(v1File, v1.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{v2, v1File} {
		b, err := Open(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		sameLogs(t, b, sample())
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		// A stream (standard input) is spooled to a temporary file.
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		b, err = Read(struct{ io.Reader }{f}, p)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		sameLogs(t, b, sample())
		b.Close()
	}
	// After Close, an archive's logs are gone, and reading them fails
	// rather than giving nothing.
	b, err := Open(context.Background(), v2)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if _, err := b.Logs[1].Bytes(); err == nil {
		t.Error("a log of a closed bundle read without error")
	}
}

// layout finds the offsets of a valid archive's records.
type layout struct {
	end     int
	central []int // directory entries
	local   []int // local headers
}

func parseLayout(t *testing.T, raw []byte) layout {
	t.Helper()
	le := binary.LittleEndian
	l := layout{end: len(raw) - endLen}
	p := int(le.Uint32(raw[l.end+16:]))
	for i := 0; i < int(le.Uint16(raw[l.end+10:])); i++ {
		l.central = append(l.central, p)
		l.local = append(l.local, int(le.Uint32(raw[p+42:])))
		p += centralLen + int(le.Uint16(raw[p+28:]))
	}
	return l
}

// rawArchive writes members as given (names, bytes), for manifests and
// member lists the writer never makes.
func rawArchive(t *testing.T, names []string, data [][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	z := &zipWriter{w: &buf}
	for i, n := range names {
		d := data[i]
		if err := z.member(context.Background(), n, int64(len(d)), crc32.ChecksumIEEE(d), func(w io.Writer) error {
			_, err := w.Write(d)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := z.close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// manifest is sample()'s manifest with edit applied to its JSON text.
func manifest(t *testing.T, edit func(string) string) []byte {
	t.Helper()
	raw := archiveBytes(t, sample())
	l := parseLayout(t, raw)
	size := binary.LittleEndian.Uint32(raw[l.local[0]+22:])
	start := l.local[0] + localLen + len(ManifestName)
	return []byte(edit(string(raw[start : start+int(size)])))
}

// TestArchiveAttacks: every way two zip readers could see different
// evidence in one file is refused as malformed input, naming the member
// or the byte.
func TestArchiveAttacks(t *testing.T) {
	le := binary.LittleEndian
	good := archiveBytes(t, sample())
	lay := parseLayout(t, good)
	logs := [][]byte{sample().Logs[0].Data, sample().Logs[1].Data}
	mutate := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), good...))
	}
	// setBoth writes v at a field of member i's local header and directory
	// entry, so only the property under test is wrong.
	setBoth16 := func(i, localOff, centralOff int, v uint16) []byte {
		return mutate(func(b []byte) []byte {
			le.PutUint16(b[lay.local[i]+localOff:], v)
			le.PutUint16(b[lay.central[i]+centralOff:], v)
			return b
		})
	}
	cases := []struct {
		name string
		raw  []byte
		want string
	}{
		{"bytes before the first local header", append(append([]byte{}, good[:localLen]...), good...), "does not end where the end record begins"},
		{"bytes before the first local header, directory offset moved", func() []byte {
			b := append(append([]byte{}, good[:localLen]...), good...)
			le.PutUint32(b[localLen+lay.end+16:], uint32(localLen+lay.local[0]+int(le.Uint32(good[lay.end+16:]))))
			return b
		}(), `member "bundle.json" at byte 0: local header`},
		{"bytes after the end record", append(append([]byte{}, good...), 'x'), "no end of central directory"},
		{"archive comment", mutate(func(b []byte) []byte { le.PutUint16(b[lay.end+20:], 3); return append(b, "abc"...) }), "no end of central directory"},
		{"comment length without comment", mutate(func(b []byte) []byte { le.PutUint16(b[lay.end+20:], 3); return b }), "archive comment"},
		{"zip64 entry count", mutate(func(b []byte) []byte {
			le.PutUint16(b[lay.end+8:], 0xffff)
			le.PutUint16(b[lay.end+10:], 0xffff)
			return b
		}), "zip64"},
		{"zip64 member size", mutate(func(b []byte) []byte {
			le.PutUint32(b[lay.central[2]+20:], 0xffffffff)
			le.PutUint32(b[lay.central[2]+24:], 0xffffffff)
			return b
		}), "zip64"},
		{"multi-disk", mutate(func(b []byte) []byte { le.PutUint16(b[lay.end+4:], 1); return b }), "multi-disk"},
		{"deflate", setBoth16(2, 8, 10, 8), "compression method 8"},
		{"encryption flag", setBoth16(2, 6, 8, 1), "flags 0x0001"},
		{"data descriptor flag", setBoth16(1, 6, 8, 8), "flags 0x0008"},
		{"duplicate member name", mutate(func(b []byte) []byte {
			copy(b[lay.local[2]+localLen:], "logs/0")
			copy(b[lay.central[2]+centralLen:], "logs/0")
			return b
		}), `named "logs/0", want "logs/1"`},
		{"local name differs from the directory's", mutate(func(b []byte) []byte { copy(b[lay.local[2]+localLen:], "logs/9"); return b }), `local header names "logs/9"`},
		{"local size differs from the directory's", mutate(func(b []byte) []byte {
			le.PutUint32(b[lay.local[1]+18:], 1)
			le.PutUint32(b[lay.local[1]+22:], 1)
			return b
		}), "local header sizes"},
		{"local CRC differs from the directory's", mutate(func(b []byte) []byte { b[lay.local[1]+14] ^= 1; return b }), "local header CRC-32"},
		{"compressed size differs", mutate(func(b []byte) []byte { le.PutUint32(b[lay.central[2]+20:], 7); return b }), "compressed size"},
		{"overlapping members", mutate(func(b []byte) []byte { le.PutUint32(b[lay.central[2]+42:], uint32(lay.local[1])); return b }), "local header at"},
		{"central directory offset off by one", mutate(func(b []byte) []byte { le.PutUint32(b[lay.end+16:], le.Uint32(b[lay.end+16:])-1); return b }), "does not end where the end record begins"},
		{"a log byte changed (CRC)", mutate(func(b []byte) []byte { b[lay.local[2]+localLen+6+10] ^= 0xff; return b }), `member "logs/1" at byte`},
		{"manifest byte changed (CRC)", mutate(func(b []byte) []byte { b[lay.local[0]+localLen+len(ManifestName)+3] ^= 0x20; return b }), `member "bundle.json"`},
		{"extra field in a local header", mutate(func(b []byte) []byte { le.PutUint16(b[lay.local[1]+28:], 4); return b }), "extra fields"},
		{"logs before the manifest", rawArchive(t, []string{"logs/0", ManifestName}, [][]byte{logs[0], manifest(t, func(s string) string { return s })}), `want "bundle.json"`},
		{"member the manifest does not name", rawArchive(t, []string{ManifestName, "logs/0", "logs/1", "logs/2"}, [][]byte{manifest(t, func(s string) string { return s }), logs[0], logs[1], []byte("evil")}), "2 logs for 3 log members"},
		{"member named by the manifest absent", rawArchive(t, []string{ManifestName, "logs/0"}, [][]byte{manifest(t, func(s string) string { return s }), logs[0]}), "2 logs for 1 log members"},
		{"manifest names a member twice", rawArchive(t, []string{ManifestName, "logs/0", "logs/1"}, [][]byte{manifest(t, func(s string) string { return strings.Replace(s, `"logs/1"`, `"logs/0"`, 1) }), logs[0], logs[1]}), `logs[1] names member "logs/0"`},
		{"log data in the manifest too", rawArchive(t, []string{ManifestName, "logs/0", "logs/1"}, [][]byte{manifest(t, func(s string) string {
			return strings.Replace(s, `"member": "logs/1"`, `"member": "logs/1", "data": "ZXZpbA=="`, 1)
		}), logs[0], logs[1]}), "has data in the manifest"},
		{"v1 format in a v2 manifest", rawArchive(t, []string{ManifestName, "logs/0", "logs/1"}, [][]byte{manifest(t, func(s string) string { return strings.Replace(s, FormatV2, Format, 1) }), logs[0], logs[1]}), "want \"ccmr-evidence/v2\""},
		{"unknown manifest member", rawArchive(t, []string{ManifestName, "logs/0", "logs/1"}, [][]byte{manifest(t, func(s string) string {
			return strings.Replace(s, `"format": "ccmr-evidence/v2"`, `"format": "ccmr-evidence/v2", "Logs": []`, 1)
		}), logs[0], logs[1]}), `member "bundle.json"`},
		{"truncated", good[:len(good)/2], ""},
		{"empty archive header only", good[:4], ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := readBytes(c.raw)
			if err == nil {
				t.Fatalf("accepted: %+v", b)
			}
			if !errors.Is(err, mr.ErrMalformed) {
				t.Fatalf("error %v is not mr.ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "b.zip: ") {
				t.Fatalf("error %q does not name %q", err, c.want)
			}
			if c.want != "" && !strings.Contains(err.Error(), "byte ") {
				t.Fatalf("error %q names no byte offset", err)
			}
		})
	}
	// The hostile archive is refused by Read and Open too, not only ReadAt.
	for _, c := range cases[:3] {
		if _, err := Read(bytes.NewReader(c.raw), "b.zip"); !errors.Is(err, mr.ErrMalformed) {
			t.Errorf("Read of %s: %v", c.name, err)
		}
	}
}

// A v1 document naming an archive member points at nothing: refused.
func TestV1WithMember(t *testing.T) {
	var v1 bytes.Buffer
	if err := sample().Write(&v1); err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(v1.String(), `"format": "runtime"`, `"format": "runtime", "member": "logs/0"`, 1)
	if _, err := Read(strings.NewReader(doc), "b.json"); !errors.Is(err, mr.ErrMalformed) || !strings.Contains(err.Error(), "a v1 bundle has none") {
		t.Fatalf("v1 with a member name: %v", err)
	}
}

// A log that changes between the writer's two passes (CRC and copy) makes
// WriteArchive fail, never write a member whose CRC does not hold.
func TestWriteArchiveLogChanges(t *testing.T) {
	b := sample()
	fl := &flipping{data: []byte("0123456789")}
	b.Logs[1].Attach(fl, 10)
	if err := b.WriteArchive(context.Background(), io.Discard); err == nil || !strings.Contains(err.Error(), "changed while it was written") {
		t.Fatalf("log changed between passes: %v", err)
	}
}

// flipping changes its bytes after the first full read.
type flipping struct {
	data  []byte
	reads int
}

func (f *flipping) ReadAt(p []byte, off int64) (int, error) {
	if off == 0 {
		f.reads++
		if f.reads == 2 {
			f.data[0] = 'X'
		}
	}
	if off >= int64(len(f.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// A cancelled context stops a copy of a log.
func TestWriteArchiveContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := sample().WriteArchive(ctx, io.Discard); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// FuzzReadArchive: any input (v2 or v1) either is refused as malformed or
// reads to a bundle that writes back as v2 and as v1 and reads again to the
// same logs.
func FuzzReadArchive(f *testing.F) {
	f.Add(archiveBytes(f, sample()))
	var v1 bytes.Buffer
	sample().Write(&v1)
	f.Add(v1.Bytes())
	f.Add([]byte("PK\x03\x04"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		b, err := readBytes(raw)
		if err != nil {
			if !errors.Is(err, mr.ErrMalformed) {
				t.Fatalf("error %v is not mr.ErrMalformed", err)
			}
			return
		}
		again, err := readBytes(archiveBytes(t, b))
		if err != nil {
			t.Fatalf("accepted bundle does not read back as v2: %v", err)
		}
		sameLogs(t, again, b)
		var v1 bytes.Buffer
		if err := b.Write(&v1); err != nil {
			t.Fatal(err)
		}
		if again, err = Read(&v1, "v1"); err != nil {
			t.Fatalf("accepted bundle does not read back as v1: %v", err)
		}
		sameLogs(t, again, b)
	})
}

// Write streams the logs into the v1 document, which is byte for byte what
// encoding/json makes of the bundle with its logs in memory.
func TestWriteV1Streams(t *testing.T) {
	want := sample()
	want.Logs = append(want.Logs, Log{Format: "tcg2", Source: "empty"})
	var ref bytes.Buffer
	enc := json.NewEncoder(&ref)
	enc.SetIndent("", "  ")
	if err := enc.Encode(want); err != nil {
		t.Fatal(err)
	}
	// From a v2 archive, the logs attached to its members.
	att, err := readBytes(archiveBytes(t, want))
	if err != nil {
		t.Fatal(err)
	}
	att.Format = Format
	for _, b := range []*Bundle{want, att} {
		var got bytes.Buffer
		if err := b.Write(&got); err != nil {
			t.Fatal(err)
		}
		if got.String() != ref.String() {
			t.Fatalf("v1 document differs from encoding/json's:\n%s\nwant\n%s", got.String(), ref.String())
		}
	}
	// A log shorter than its size fails the write.
	short := sample()
	short.Logs[1].Attach(bytes.NewReader([]byte("abc")), 10)
	if err := short.Write(io.Discard); err == nil {
		t.Fatal("a short log written without error")
	}
}
