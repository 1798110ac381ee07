package vmr

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// A cut archives the segment, starts one with INIT + snapshot, keeps the
// virtual values, and the forwarder continues after it without repeating
// or skipping an entry; a Store opened before the cut follows it.
func TestCutAndForward(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dev, s := openSim(t, dir)
	_, other := openSim(t, dir) // another process's Store, opened before the cut
	list := filepath.Join(dir, "ima.bin")
	data := realList(t)
	// The first 20 entries now, the rest later.
	var cut20 int64
	{
		entries := splitIMA(t, data)
		for _, e := range entries[:20] {
			cut20 += int64(len(e))
		}
	}
	os.WriteFile(list, data[:cut20], 0o600)
	if n, err := s.Forward(ctx, ForwardOptions{List: list}); err != nil || n != 20 {
		t.Fatalf("Forward = %d %v", n, err)
	}
	if _, err := s.Extend(ctx, "mr_ctr.a", digestN("a", 0)); err != nil {
		t.Fatal(err)
	}
	before, _ := s.List(ctx)
	archive, err := s.Cut(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) || !after[0].Digest.Equal(before[0].Digest) || !after[1].Digest.Equal(before[1].Digest) {
		t.Fatalf("values changed by the cut: %v → %v", before, after)
	}
	// The archive replays on its own; the new segment replays to rtmr3.
	reg, _ := replayFile(t, s.Path())
	if !reg.Equal(readRTMR3(t, dev)) {
		t.Fatalf("new segment replays to %v, rtmr3 %v", reg, readRTMR3(t, dev))
	}
	if _, recs := replayFile(t, archive); len(recs["mr_ima"]) != 20 {
		t.Fatalf("archive holds %d mr_ima records", len(recs["mr_ima"]))
	}
	// The rest of the list arrives; both Stores go on.
	os.WriteFile(list, data, 0o600)
	if n, err := other.Forward(ctx, ForwardOptions{List: list}); err != nil || n != len(splitIMA(t, data))-20 {
		t.Fatalf("Forward after the cut = %d %v", n, err)
	}
	if n, err := s.Forward(ctx, ForwardOptions{List: list}); err != nil || n != 0 {
		t.Fatalf("second Forward = %d %v", n, err)
	}
	// mr_ima equals the fold of the whole list.
	v, err := s.Read(ctx, "mr_ima")
	if err != nil {
		t.Fatal(err)
	}
	want, err := entriesUpTo(ctx, list, v)
	if err != nil || want != len(splitIMA(t, data)) {
		t.Fatalf("mr_ima is the fold of %d entries (%v), want all %d", want, err, len(splitIMA(t, data)))
	}
	// Losing the hint changes nothing.
	os.Remove(s.forwardStatePath("mr_ima"))
	if n, err := s.Forward(ctx, ForwardOptions{List: list}); err != nil || n != 0 {
		t.Fatalf("Forward without hint = %d %v", n, err)
	}
	arch, _ := s.Archives()
	if len(arch) != 1 || arch[0] != archive {
		t.Fatalf("Archives = %v", arch)
	}
}
