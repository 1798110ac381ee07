package ima

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/internal/imatest"
	"github.com/ccmr-dev/ccmr/mr"
)

// addSeeds adds the files matching each pattern (relative to dir) as seeds;
// a pattern that matches nothing fails, so seeds cannot silently vanish.
func addSeeds(f *testing.F, dir string, patterns ...string) {
	for _, p := range patterns {
		m, _ := filepath.Glob(filepath.Join(dir, p))
		if len(m) == 0 {
			f.Fatalf("seed %s: no file in %s", p, dir)
		}
		for _, file := range m {
			if b, err := os.ReadFile(file); err == nil {
				f.Add(b)
			}
		}
	}
}

// exercise reads every entry of r and checks the reader's contracts.
func exercise(t *testing.T, r *Reader) {
	var last int64 = -1
	for i := 0; ; i++ {
		e, err := r.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			var le *eventlog.Error
			if !errors.As(err, &le) || !errors.Is(err, mr.ErrMalformed) && !errors.Is(err, ErrTruncated) {
				t.Fatalf("error is not a malformed *eventlog.Error: %v", err)
			}
			if le.Record != i || le.Offset < last {
				t.Fatalf("error %v: record %d offset %d after entry %d at %d", err, le.Record, le.Offset, i, last)
			}
			if _, err2 := r.Next(); err2 != err {
				t.Fatalf("Next after an error returned %v, want %v", err2, err)
			}
			return
		}
		if e.Index != i || e.Offset <= last || len(e.TemplateHash) != r.hsize || e.ListBank() != r.bank || e.PCR < 0 || e.PCR > MaxPCR {
			t.Fatalf("entry %d: %+v", i, e)
		}
		last = e.Offset
		c := e.Clone()
		_ = Event("f", e, []mr.Alg{mr.SHA1, mr.SHA256})
		_, _, _ = e.FileDigest()
		_ = e.FileName()
		if _, err := VirtualDigest(e); err != nil && e.TemplateData != nil {
			t.Fatal(err)
		}
		_ = VerifySignature(e, nil)
		if !bytes.Equal(c.TemplateData, e.TemplateData) {
			t.Fatal("Clone differs")
		}
	}
}

func FuzzBinaryReader(f *testing.F) {
	addSeeds(f, filepath.Join("..", "..", "testdata", "real-kernel-ima-sig"), "binary_runtime_measurements")
	for _, b := range corpus.Seeds(f, "tpm2-tss/sml-*.bin", "embrave/binary_runtime_measurements") {
		f.Add(b)
	}
	specs := make([]imatest.Spec, 14)
	for i := range specs {
		specs[i] = imatest.Mixed(i)
	}
	f.Add(imatest.Binary(specs, binary.LittleEndian))
	f.Add(imatest.Binary(specs, binary.BigEndian))
	f.Fuzz(func(t *testing.T, data []byte) {
		exercise(t, NewBinaryReader(bytes.NewReader(data), Options{}))
		_, _ = Replay(context.Background(), NewBinaryReader(bytes.NewReader(data), Options{}), ReplayOptions{Banks: []mr.Alg{mr.SHA1, mr.SHA256, mr.SHA384}})
	})
}

func FuzzASCIIReader(f *testing.F) {
	addSeeds(f, filepath.Join("..", "..", "testdata", "real-kernel-ima-sig"), "ascii_runtime_measurements")
	for _, b := range corpus.Seeds(f, "keylime/*.ascii", "rust-keylime/ima_log.txt", "ima-evm-utils/*ascii*") {
		f.Add(b)
	}
	specs := make([]imatest.Spec, 14)
	for i := range specs {
		specs[i] = imatest.Mixed(i)
	}
	f.Add([]byte(imatest.ASCIIList(specs)))
	f.Fuzz(func(t *testing.T, data []byte) {
		exercise(t, NewASCIIReader(bytes.NewReader(data), Options{}))
		_, _ = Replay(context.Background(), NewASCIIReader(bytes.NewReader(data), Options{}), ReplayOptions{})
	})
}
