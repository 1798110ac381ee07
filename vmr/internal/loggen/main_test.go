package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/vmr"
)

// The generated log is one a Store opens (it replays to the register) with
// the records asked for, across batch boundaries.
func TestRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sim")
	if err := run(dir, "", "mr_ctr.x", 10, 4); err != nil {
		t.Fatal(err)
	}
	if err := run(dir, "", "mr_ctr.x", 3, 4); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dev, err := sim.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	s, err := vmr.Open(ctx, dev, vmr.Options{Dir: filepath.Join(dir, "runtime")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, err := s.Records(ctx, "mr_ctr.x"); err != nil || n != 13 {
		t.Fatalf("Records = %d, %v; want 13", n, err)
	}
	if err := s.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	if err := run("", "", "mr_ctr.x", 1, 1); err == nil {
		t.Fatal("run without a sim folder succeeded")
	}
}
