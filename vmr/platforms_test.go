package vmr

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/backend/tdx"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/internal/tsmfake"
	"github.com/ccmr-dev/ccmr/mr"
)

// Virtual registers on the TDX emulation (the kernel's sysfs RTMR ABI):
// extends land in rtmr3 through 48-byte writes, the log replays to it, the
// real IMA list forwards, and a second Store recovers a crashed writer.
func TestOnTDXEmulation(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	m, err := tsmfake.NewTDX(root, tsmfake.TDXOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := tdx.Open(ctx, root, tdx.WithFS(m))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s, err := Open(ctx, dev, Options{Dir: filepath.Join(dir, "log")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Extend(ctx, "mr_ctr.a", digestN("t", 0)); err != nil {
		t.Fatal(err)
	}
	list := filepath.Join(dir, "ima.bin")
	writeFile(t, list, realList(t))
	n, err := s.Forward(ctx, ForwardOptions{List: list})
	if err != nil || n == 0 {
		t.Fatalf("Forward = %d %v", n, err)
	}
	checkForwarded(t, s, list, n)
	reg, _ := replayFile(t, s.Path())
	if !reg.Equal(readRTMR3(t, dev)) {
		t.Fatalf("log replays to %v, emulated rtmr3 is %v", reg, readRTMR3(t, dev))
	}
	if hw := m.Value("rtmr3:sha384"); string(hw) != string(reg.Bytes) {
		t.Fatal("the emulated hardware register differs from the device's read")
	}
}

// A batch logged and not extended on the TDX emulation, whose device has no
// multi-extend: recovery extends the records one by one, in log order.
func TestBatchRollForwardOnTDXEmulation(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	m, err := tsmfake.NewTDX(root, tsmfake.TDXOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := tdx.Open(ctx, root, tdx.WithFS(m))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := any(dev).(mr.MultiExtender); ok {
		t.Fatal("the TDX device multi-extends: this test wants one that does not")
	}
	dir := filepath.Join(t.TempDir(), "log")
	s, err := Open(ctx, dev, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Extend(ctx, "mr_ctr.a", digestN("t", 0)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	var b []byte
	for i := 1; i <= 5; i++ {
		r, _ := aael.ExtendRecord("mr_ctr.a", digestN("t", i))
		if b, _, err = aael.AppendEntry(b, uint32(s.backing.Index), mr.SHA384, r); err != nil {
			t.Fatal(err)
		}
	}
	appendFile(t, s.Path(), b)
	s2, err := Open(ctx, dev, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	reg, recs := replayFile(t, s2.Path())
	if !reg.Equal(readRTMR3(t, dev)) || len(recs["mr_ctr.a"]) != 6 {
		t.Fatalf("log replays to %v (%d records), rtmr3 is %v", reg, len(recs["mr_ctr.a"]), readRTMR3(t, dev))
	}
	if hw := m.Value("rtmr3:sha384"); string(hw) != string(reg.Bytes) {
		t.Fatal("the emulated hardware register differs from the log")
	}
}
