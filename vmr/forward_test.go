package vmr

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/internal/imatest"
)

func realList(t *testing.T) []byte {
	b, err := os.ReadFile("../testdata/real-kernel-ima-sig/binary_runtime_measurements")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Forward the real kernel list, then replay the list against the derived
// mr_ima: they match; forwarding again adds nothing; an entry appended
// later is forwarded once; losing the resume hint changes nothing.
func TestForwardRealList(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dev, s := openSim(t, dir)
	list := filepath.Join(dir, "ima.bin")
	if err := os.WriteFile(list, realList(t), 0o600); err != nil {
		t.Fatal(err)
	}
	// The kernel's ascii list has one line per entry.
	ascii, err := os.ReadFile("../testdata/real-kernel-ima-sig/ascii_runtime_measurements")
	if err != nil {
		t.Fatal(err)
	}
	entries := bytes.Count(ascii, []byte("\n"))
	opts := ForwardOptions{List: list, Batch: 7}
	n, err := s.Forward(ctx, opts)
	if err != nil || n != entries {
		t.Fatalf("Forward = %d, %v; want %d entries", n, err, entries)
	}
	checkForwarded(t, s, list, entries)
	if n, err := s.Forward(ctx, opts); err != nil || n != 0 {
		t.Fatalf("second Forward = %d, %v; want 0", n, err)
	}
	// The kernel appends an entry.
	extra := imatest.Binary([]imatest.Spec{imatest.NG(1)}, binary.LittleEndian)
	appendFile(t, list, extra)
	if n, err := s.Forward(ctx, opts); err != nil || n != 1 {
		t.Fatalf("Forward after append = %d, %v; want 1", n, err)
	}
	checkForwarded(t, s, list, entries+1)
	// Without the hint, and from another process's Store, still nothing new.
	os.Remove(s.forwardStatePath("mr_ima"))
	_, s2 := openSim(t, dir)
	if n, err := s2.Forward(ctx, opts); err != nil || n != 0 {
		t.Fatalf("Forward without hint = %d, %v; want 0", n, err)
	}
	reg, _ := replayFile(t, s.Path())
	if !reg.Equal(readRTMR3(t, dev)) {
		t.Fatal("runtime log does not replay to rtmr3")
	}
}

// checkForwarded replays the list against mr_ima's records and value.
func checkForwarded(t *testing.T, s *Store, list string, want int) {
	t.Helper()
	_, recs := replayFile(t, s.Path())
	if len(recs["mr_ima"]) != want {
		t.Fatalf("%d mr_ima records, want %d", len(recs["mr_ima"]), want)
	}
	v, err := s.Read(context.Background(), "mr_ima")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(list)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := ima.ReplayVirtual(context.Background(), ima.NewBinaryReader(f, ima.Options{File: list}),
		ima.VirtualOptions{File: list, Records: recs["mr_ima"], Expect: v})
	if err != nil {
		t.Fatalf("replay of the list against mr_ima: %v", err)
	}
	if r.Unproven != 0 {
		t.Fatalf("%d entries unproven", r.Unproven)
	}
}

// splitIMA cuts a binary list into its entries' bytes.
func splitIMA(t *testing.T, data []byte) [][]byte {
	t.Helper()
	rd := ima.NewBinaryReader(bytes.NewReader(data), ima.Options{})
	var offs []int64
	for {
		e, err := rd.Next()
		if err != nil {
			break
		}
		offs = append(offs, e.Offset)
	}
	offs = append(offs, int64(len(data)))
	var out [][]byte
	for i := 0; i+1 < len(offs); i++ {
		out = append(out, data[offs[i]:offs[i+1]])
	}
	return out
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
