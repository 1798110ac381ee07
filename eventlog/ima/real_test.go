package ima

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

func expectPCR10(t testing.TB) []mr.Value {
	var out []mr.Value
	for _, a := range []mr.Alg{mr.SHA1, mr.SHA256} {
		out = append(out, mr.Value{Register: pcrRegister(10, a), Digest: pcrsTxt(t, a)[10]})
	}
	return out
}

func TestRealKernelReplay(t *testing.T) {
	for _, f := range []struct {
		name   string
		format eventlog.Format
	}{{"binary_runtime_measurements", eventlog.FormatIMABinary}, {"ascii_runtime_measurements", eventlog.FormatIMAASCII}, {"binary_runtime_measurements", eventlog.FormatAuto}} {
		t.Run(f.name+"/"+string(f.format), func(t *testing.T) {
			r := openList(t, filepath.Join(realDir(t), f.name), f.format)
			res, err := Replay(context.Background(), r, ReplayOptions{Expect: expectPCR10(t)})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d entries, %v", res.Events, res.Registers)
		})
	}
}

func TestRealKernelASCIIBinaryAgree(t *testing.T) {
	b, err := readAll(t, openList(t, filepath.Join(realDir(t), "binary_runtime_measurements"), eventlog.FormatIMABinary))
	if err != nil {
		t.Fatal(err)
	}
	a, err := readAll(t, openList(t, filepath.Join(realDir(t), "ascii_runtime_measurements"), eventlog.FormatIMAASCII))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("binary %d entries, ascii %d", len(b), len(a))
	n := min(len(a), len(b))
	if n == 0 {
		t.Fatal("no entries")
	}
	for i := range n {
		x, y := a[i], b[i]
		if x.PCR != y.PCR || !bytes.Equal(x.TemplateHash, y.TemplateHash) || x.TemplateName != y.TemplateName ||
			!bytes.Equal(x.TemplateData, y.TemplateData) || x.FileName() != y.FileName() {
			t.Fatalf("entry %d differs:\nascii  %+v\nbinary %+v", i, x, y)
		}
	}
}

// realBinary returns the real list's bytes and its entries.
func realBinary(t *testing.T) ([]byte, []*Entry) {
	t.Helper()
	path := filepath.Join(realDir(t), "binary_runtime_measurements")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	es, err := readAll(t, NewBinaryReader(bytes.NewReader(data), Options{}))
	if err != nil {
		t.Fatal(err)
	}
	return data, es
}

// TestRealKernelTampered changes the real list (one byte, one entry dropped,
// two entries swapped) and requires a mismatch against the TPM's PCR 10
// values, naming the entry where the entry itself is inconsistent; and the
// same against the mr_ima records of the untouched list, where every case
// names the first bad entry.
func TestRealKernelTampered(t *testing.T) {
	data, es := realBinary(t)
	end := func(i int) int64 { return es[i].Offset + binarySize(es[i]) }
	var records []mr.Digest
	for _, e := range es {
		records = append(records, mr.SHA384.Sum(e.TemplateData)) // independent of VirtualDigest
	}
	const k = 17
	cases := []struct {
		name          string
		list          []byte
		pcrRecord     int // -1: only the final value can be blamed
		virtualRecord int
	}{
		{"byte-in-file-name", func() []byte {
			b := bytes.Clone(data)
			b[es[k].Offset+4+20+4+int64(len(es[k].TemplateName))+4+4+40+4+2] ^= 0x20
			return b
		}(), k, k},
		{"byte-in-listed-hash", func() []byte {
			b := bytes.Clone(data)
			b[es[k].Offset+5] ^= 1
			return b
		}(), k, -2},
		{"entry-dropped", append(bytes.Clone(data[:es[k].Offset]), data[end(k):]...), -1, k},
		{"entries-swapped", func() []byte {
			b := bytes.Clone(data[:es[k].Offset])
			b = append(b, data[es[k+1].Offset:end(k+1)]...)
			b = append(b, data[es[k].Offset:end(k)]...)
			return append(b, data[end(k+1):]...)
		}(), -1, k},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Replay(context.Background(), NewBinaryReader(bytes.NewReader(tc.list), Options{}), ReplayOptions{Expect: expectPCR10(t)})
			var m *eventlog.Mismatch
			if !errors.As(err, &m) || !isMismatch(err) {
				t.Fatalf("PCR 10: want a mismatch, got %v", err)
			}
			if m.Record != tc.pcrRecord {
				t.Errorf("PCR 10 mismatch names record %d, want %d: %v", m.Record, tc.pcrRecord, m)
			}
			t.Log(m)
			vr, err := ReplayVirtual(context.Background(), NewBinaryReader(bytes.NewReader(tc.list), Options{}), VirtualOptions{Records: records})
			if tc.virtualRecord == -2 {
				// The data is intact, so mr_ima's records match, but the
				// entry's own listed hash is wrong: still a mismatch.
				if !errors.As(err, &m) || m.Record != k || m.Register != "pcr10" {
					t.Fatalf("mr_ima: want the entry's template hash mismatch, got %v", err)
				}
				return
			}
			if !errors.As(err, &m) || m.Record != tc.virtualRecord || m.Register != VirtualName {
				t.Fatalf("mr_ima: want a mismatch at record %d, got %v (%+v)", tc.virtualRecord, err, vr)
			}
			t.Log(m)
		})
	}
}

// TestRealKernelVirtual folds the real list into mr_ima and checks it
// against an independent fold and against its own records.
func TestRealKernelVirtual(t *testing.T) {
	data, es := realBinary(t)
	v := make([]byte, 48)
	var records []mr.Digest
	for _, e := range es {
		d := sha512.Sum384(e.TemplateData)
		records = append(records, mr.Digest{Alg: mr.SHA384, Bytes: d[:]})
		h := sha512.New384()
		h.Write(v)
		h.Write(d[:])
		v = h.Sum(nil)
	}
	want := mr.Digest{Alg: mr.SHA384, Bytes: v}
	res, err := ReplayVirtual(context.Background(), NewBinaryReader(bytes.NewReader(data), Options{}), VirtualOptions{Expect: want, Records: records})
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != len(es) || res.Unproven != 0 || !res.Virtual[0].Digest.Equal(want) || res.Virtual[0].Register.Name != "mr_ima" {
		t.Fatalf("got %+v", res)
	}
	// Fewer records than entries proves the prefix.
	res, err = ReplayVirtual(context.Background(), NewBinaryReader(bytes.NewReader(data), Options{}), VirtualOptions{Records: records[:10]})
	if err != nil || res.Events != 10 || res.Unproven != len(es)-10 {
		t.Fatalf("prefix: %+v, %v", res, err)
	}
	// More records than entries: the first record without an entry.
	extra := append(append([]mr.Digest(nil), records...), records[0])
	_, err = ReplayVirtual(context.Background(), NewBinaryReader(bytes.NewReader(data), Options{}), VirtualOptions{Records: extra})
	var m *eventlog.Mismatch
	if !errors.As(err, &m) || m.Record != len(es) {
		t.Fatalf("extra record: %v", err)
	}
	// A wrong final value.
	bad := mr.Digest{Alg: mr.SHA384, Bytes: bytes.Clone(v)}
	bad.Bytes[0] ^= 1
	_, err = ReplayVirtual(context.Background(), NewBinaryReader(bytes.NewReader(data), Options{}), VirtualOptions{Expect: bad})
	if !errors.As(err, &m) || m.Record != -1 {
		t.Fatalf("wrong final value: %v", err)
	}
	for i, e := range es {
		d, err := VirtualDigest(e)
		if err != nil || !d.Equal(records[i]) {
			t.Fatalf("VirtualDigest(%d) = %v, %v", i, d, err)
		}
	}
}

// TestTruncated cuts the real list at every byte and requires an error
// naming the partial entry's offset, or io.EOF at entry boundaries.
func TestTruncated(t *testing.T) {
	data, es := realBinary(t)
	starts := map[int64]int{}
	for i, e := range es {
		starts[e.Offset] = i
	}
	starts[int64(len(data))] = len(es)
	for cut := 1; cut < len(data); cut++ {
		got, err := readAll(t, NewBinaryReader(bytes.NewReader(data[:cut]), Options{File: "cut"}))
		if i, ok := starts[int64(cut)]; ok {
			if err != nil || len(got) != i {
				t.Fatalf("cut %d at an entry boundary: %d entries, %v", cut, len(got), err)
			}
			continue
		}
		var le *eventlog.Error
		if !errors.As(err, &le) || !errors.Is(err, ErrTruncated) || !errors.Is(err, mr.ErrMalformed) {
			t.Fatalf("cut %d: want a truncation *eventlog.Error, got %v", cut, err)
		}
		want := es[len(got)]
		if le.Record != len(got) || le.Offset != want.Offset || le.File != "cut" {
			t.Fatalf("cut %d: error %v names record %d at %d, want %d at %d", cut, err, le.Record, le.Offset, len(got), want.Offset)
		}
	}
}
