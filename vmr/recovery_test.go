package vmr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/mr"
)

// batchKillChild is the child of the batch crash trials; it kills itself
// between a batch's fsync and its extends.
//
//	batchkill:DIR:K  one ExtendMany of K records on mr_batch
//	groupkill:DIR    16 goroutines extending mr_g.N: the first group
//	                 commit of two or more records
func batchKillChild(ctx context.Context, s *Store, parts []string) int {
	kill := func() { syscall.Kill(os.Getpid(), syscall.SIGKILL); select {} }
	if parts[0] == "batchkill" {
		k, _ := strconv.Atoi(parts[2])
		afterFsync = func(n int) {
			if n == k {
				kill()
			}
		}
		n, err := s.Records(ctx, "mr_batch")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		items := make([]Item, k)
		for i := range items {
			items[i] = Item{Name: "mr_batch", Digest: digestN("b", n+i)}
		}
		_, err = s.ExtendMany(ctx, items)
		fmt.Fprintln(os.Stderr, "batch not killed:", err)
		return 1
	}
	afterFsync = func(n int) {
		if n >= 2 {
			kill()
		}
	}
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				if _, err := s.Extend(ctx, fmt.Sprintf("mr_g.%d", g), digestN(fmt.Sprintf("g%d", g), i)); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
			}
		}(g)
	}
	wg.Wait()
	return 1
}

// runKilled runs a crash child and wants it dead by SIGKILL.
func runKilled(t *testing.T, spec string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CCMR_VMR_CHILD="+spec)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("%s: child ended with %v: %s", spec, err, out)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("%s: child not killed: %v: %s", spec, err, out)
	}
}

// SIGKILL between a batch's fsync and its extends (ExtendMany, group
// commit), with and without the checkpoint: the log holds the batch and the
// register does not; Open rolls the whole batch forward, the log replays to
// rtmr3 and Verify passes.
func TestBatchKillRecovery(t *testing.T) {
	dir := t.TempDir()
	dev, s := openSim(t, dir)
	s.Close()
	want := 0
	for trial, k := range []int{2, 7, 64, MaxBatch, 3, 2} {
		if trial%2 == 1 {
			// Half of the reopens start without the checkpoint.
			os.Remove(strings.TrimSuffix(s.Path(), ".log") + ".ckpt")
		}
		runKilled(t, fmt.Sprintf("batchkill:%s:%d", dir, k))
		reg, recs := replayFile(t, s.Path())
		if len(recs["mr_batch"]) != want+k {
			t.Fatalf("k=%d: the log holds %d records, want %d", k, len(recs["mr_batch"]), want+k)
		}
		if reg.Equal(readRTMR3(t, dev)) {
			t.Fatalf("k=%d: the child was killed after its extends, not between fsync and extends", k)
		}
		s2, err := Open(context.Background(), dev, Options{Dir: filepath.Join(dir, "log")})
		if err != nil {
			t.Fatalf("k=%d: reopen: %v", k, err)
		}
		want += k
		reg, recs = replayFile(t, s2.Path())
		if !reg.Equal(readRTMR3(t, dev)) {
			t.Fatalf("k=%d: log replays to %v, rtmr3 is %v", k, reg, readRTMR3(t, dev))
		}
		v, err := s2.Read(context.Background(), "mr_batch")
		if err != nil || !v.Equal(fold(recs["mr_batch"])) || len(recs["mr_batch"]) != want {
			t.Fatalf("k=%d: mr_batch = %v (%v), %d records, want the fold of %d", k, v, err, len(recs["mr_batch"]), want)
		}
		if err := s2.Verify(context.Background()); err != nil {
			t.Fatalf("k=%d: %v", k, err)
		}
		s2.Close()
	}
	for trial := 0; trial < 3; trial++ {
		runKilled(t, "groupkill:"+dir)
		s2, err := Open(context.Background(), dev, Options{Dir: filepath.Join(dir, "log")})
		if err != nil {
			t.Fatalf("group commit trial %d: reopen: %v", trial, err)
		}
		if reg, _ := replayFile(t, s2.Path()); !reg.Equal(readRTMR3(t, dev)) {
			t.Fatalf("group commit trial %d: log replays to %v, rtmr3 is %v", trial, reg, readRTMR3(t, dev))
		}
		if err := s2.Verify(context.Background()); err != nil {
			t.Fatal(err)
		}
		s2.Close()
	}
}

// Hostile logs around the roll forward: an INIT entry among the records
// behind the register (malformed), records behind a foreign extend, and more records
// than one batch behind are all refused with nothing written; a register
// one earlier batch behind (a fold point in the middle of the log) is
// rolled forward only by the records after it.
func TestRollForwardRefusals(t *testing.T) {
	ctx := context.Background()
	entry := func(b []byte, tag string, i int) []byte {
		r, _ := aael.ExtendRecord("mr_x", digestN(tag, i))
		b, _, err := aael.AppendEntry(b, 4, mr.SHA384, r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	refused := func(t *testing.T, dir, path string, dev mr.Device, want error) {
		t.Helper()
		before, _ := os.ReadFile(path)
		regBefore := readRTMR3(t, dev)
		if _, err := Open(ctx, dev, Options{Dir: filepath.Join(dir, "log")}); !errors.Is(err, want) {
			t.Fatalf("Open = %v, want %v", err, want)
		}
		after, _ := os.ReadFile(path)
		if string(before) != string(after) || !readRTMR3(t, dev).Equal(regBefore) {
			t.Fatal("a refused recovery wrote something")
		}
	}
	setup := func(t *testing.T) (string, string, mr.Device) {
		dir := t.TempDir()
		dev, s := openSim(t, dir)
		for i := 0; i < 3; i++ {
			if _, err := s.Extend(ctx, "mr_x", digestN("ok", i)); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
		return dir, s.Path(), dev
	}
	t.Run("init among them", func(t *testing.T) {
		dir, path, dev := setup(t)
		b := entry(nil, "u", 0)
		b, _ = aael.AppendInit(b, 4, digestN("start", 0))
		b = entry(b, "u", 1)
		appendFile(t, path, b)
		// The replay refuses an INIT entry that does not open the log
		// before recovery looks at the register.
		refused(t, dir, path, dev, mr.ErrMalformed)
	})
	t.Run("foreign extend", func(t *testing.T) {
		dir, path, dev := setup(t)
		if err := dev.Extend(ctx, "rtmr3", digestN("foreign", 0)); err != nil {
			t.Fatal(err)
		}
		appendFile(t, path, entry(entry(nil, "u", 0), "u", 1))
		refused(t, dir, path, dev, ErrInconsistent)
	})
	t.Run("more than a batch", func(t *testing.T) {
		dir, path, dev := setup(t)
		var b []byte
		for i := 0; i < MaxBatch+1; i++ {
			b = entry(b, "u", i)
		}
		appendFile(t, path, b)
		os.Remove(strings.TrimSuffix(path, ".log") + ".ckpt")
		refused(t, dir, path, dev, ErrInconsistent)
	})
	t.Run("a batch behind", func(t *testing.T) {
		dir, path, dev := setup(t)
		appendFile(t, path, entry(entry(entry(nil, "u", 0), "u", 1), "u", 2))
		_, s := openSim(t, dir)
		defer s.Close()
		reg, recs := replayFile(t, path)
		if !reg.Equal(readRTMR3(t, dev)) || len(recs["mr_x"]) != 6 {
			t.Fatalf("log %v, rtmr3 %v, %d records", reg, readRTMR3(t, dev), len(recs["mr_x"]))
		}
	})
}
