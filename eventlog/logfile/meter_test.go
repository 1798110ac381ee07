package logfile_test

import (
	"context"
	"io"
	"os"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/logfile"
)

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n *int64
}

func (c countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}

// File.Meter sees every byte a replay reads, and the replay is the same.
func TestMeterSeesTheReads(t *testing.T) {
	const path = "../../testdata/real-kernel-ima-sig/binary_runtime_measurements"
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	plain, err := logfile.Open(path, eventlog.FormatIMABinary)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	want, err := plain.Replay(ctx, logfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := logfile.Open(path, eventlog.FormatIMABinary)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n int64
	f.Meter(func(r io.Reader) io.Reader { return countReader{r: r, n: &n} })
	got, err := f.Replay(ctx, logfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n < fi.Size() {
		t.Fatalf("the meter saw %d bytes of a %d-byte log", n, fi.Size())
	}
	if len(got.Registers) == 0 || len(got.Registers) != len(want.Registers) || !got.Registers[0].Digest.Equal(want.Registers[0].Digest) {
		t.Fatalf("replays differ: %v and %v", got.Registers, want.Registers)
	}
}
