package cel

import (
	"bytes"
	"io"
	"os"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
)

func FuzzJSONReader(f *testing.F) {
	bin := runtimeLog(f)
	for _, enc := range []Encoding{Seq, Lines, Array} {
		var js bytes.Buffer
		ExportRuntime(&js, aael.NewReader(bytes.NewReader(bin), aael.Options{}), enc)
		f.Add(js.Bytes())
	}
	if b, err := os.ReadFile("testdata/systemd-style.jsonseq"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), "f")
		for i := 0; i < 10000; i++ {
			if _, _, err := r.Next(); err != nil {
				break
			}
		}
		// Runtime import: whatever imports replays exactly like the binary
		// it converts to.
		var bin bytes.Buffer
		if _, err := ImportRuntime(&bin, bytes.NewReader(data), "f"); err != nil {
			return
		}
		a, errA := aael.Replay(NewRuntimeReader(bytes.NewReader(data), "f"), aael.ReplayOptions{})
		b, errB := aael.Replay(aael.NewReader(bytes.NewReader(bin.Bytes()), aael.Options{Embedded: true}), aael.ReplayOptions{})
		if (errA == nil) != (errB == nil) {
			return // the binary reader is stricter (one MR index, one alg)
		}
		if errA == nil && len(a.Registers) > 0 && len(b.Registers) > 0 && !a.Registers[0].Digest.Equal(b.Registers[0].Digest) {
			t.Fatalf("JSON and binary replays differ")
		}
	})
}

func FuzzTLVReader(f *testing.F) {
	for _, b := range corpus.Seeds(f, "go-tpm-tools/cel/confidential-space-rtmr3.cel.bin") {
		f.Add(b)
		f.Add(b[:200])
	}
	f.Add([]byte{0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 4, 3, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewTLVReader(bytes.NewReader(data), "f")
		var end int64
		for {
			rec, err := r.Next()
			if err == io.EOF {
				if end != int64(len(data)) {
					t.Fatalf("EOF at %d of %d bytes", end, len(data))
				}
				break
			}
			if err != nil {
				break
			}
			if rec.Offset != end || rec.Offset+rec.Size > int64(len(data)) {
				t.Fatalf("record %d at %d+%d", rec.Index, rec.Offset, rec.Size)
			}
			end = rec.Offset + rec.Size
		}
		ReplayTLV(NewTLVReader(bytes.NewReader(data), "f"), TLVReplayOptions{Alg: mr.SHA384})
	})
}
