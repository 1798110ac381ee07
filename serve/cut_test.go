package serve_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/vmr"
)

// A segment cut by another process (`ccmr log cut`) while the daemon
// runs: the daemon's next extends go to the new segment, and its quote
// (archive and new segment) verifies, proving every record.
func TestCutWhileServing(t *testing.T) {
	d := startDaemon(t, nil, 0o600)
	ctx := context.Background()
	for i := range 3 {
		if _, err := d.cl.Extend(ctx, "mr_cut", digestOf(5, i)); err != nil {
			t.Fatal(err)
		}
	}
	other, err := vmr.Open(ctx, d.dev, vmr.Options{Dir: filepath.Join(d.dir, "log")})
	if err != nil {
		t.Fatal(err)
	}
	archive, err := other.Cut(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	for i := 3; i < 6; i++ {
		if _, err := d.cl.Extend(ctx, "mr_cut", digestOf(5, i)); err != nil {
			t.Fatalf("extend after the cut: %v", err)
		}
	}
	rep := quoteAndVerify(t, d)
	found := false
	for _, v := range rep.Proven.Virtual {
		if v.Name == "mr_cut" {
			found = true
			if want := fold(5, 6); !v.Digest.Equal(want) {
				t.Errorf("mr_cut proven %s, want %s", v.Digest, want)
			}
		}
	}
	if !found {
		t.Errorf("mr_cut not proven (archive %s)", archive)
	}
}
