package vmr

import (
	"bytes"
	"context"
	"io"
	"testing"
)

// SnapshotFile gives the bytes Snapshot would, and they stay those bytes
// while the log grows and is cut after it.
func TestSnapshotFile(t *testing.T) {
	ctx := context.Background()
	_, s := openSim(t, t.TempDir())
	for i := 0; i < 3; i++ {
		if _, err := s.Extend(ctx, "mr_a", digestN("a", i)); err != nil {
			t.Fatal(err)
		}
	}
	want, err := s.Snapshot(ctx, func() error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	called := false
	f, n, err := s.SnapshotFile(ctx, func() error { called = true; return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !called || n != int64(len(want)) {
		t.Fatalf("fn called %v, length %d; want true, %d", called, n, len(want))
	}
	if _, err := s.Extend(ctx, "mr_a", digestN("a", 9)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cut(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Extend(ctx, "mr_b", digestN("b", 0)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(io.NewSectionReader(f, 0, n))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("snapshot bytes changed after an extend and a cut:\n%q\nwant\n%q", got, want)
	}
}
