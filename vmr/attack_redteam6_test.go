package vmr

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/backend/sim"
)

// Red team 6, item 2: a runtime log kept across a reboot (a --log-dir that
// is not under /run) holds the last boot's records; after the reboot the
// backing register is back at its reset value, the fold of the log's empty
// prefix. Batch recovery took the whole log (up to MaxBatch records) for a
// batch whose writer died before extending it and rolled the last boot's
// records into this boot's register: a verifier then accepts state that
// this boot never measured (the single-record roll forward did the same
// with a one-record log). The rule that stops it: recovery never rolls
// forward from the reset value a log last written before this boot began
// (rollFromResetAllowed); Open fails closed with ErrInconsistent and
// writes nothing.
func TestAttackRT6_RollForwardAcrossReboot(t *testing.T) {
	ctx := context.Background()
	for _, n := range []int{1, 3} {
		dir := t.TempDir()
		_, s := openSim(t, dir)
		for i := 0; i < n; i++ {
			if _, err := s.Extend(ctx, "mr_x", digestN("lastboot", i)); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
		path := s.Path()
		// Remove the checkpoint in one case: recovery decides from the log.
		if n == 3 {
			os.Remove(strings.TrimSuffix(path, ".log") + ".ckpt")
		}
		// The last boot wrote the log a day before this boot began.
		old := time.Now().Add(-time.Duration(uptimeForTest(t)) - 24*time.Hour)
		if err := os.Chtimes(path, old, old); err != nil {
			t.Fatal(err)
		}
		// The reboot: a fresh device, every register at its reset value.
		dev, err := sim.Open(ctx, filepath.Join(dir, "sim-newboot"))
		if err != nil {
			t.Fatal(err)
		}
		before, _ := os.ReadFile(path)
		regBefore := readRTMR3(t, dev)
		s2, err := Open(ctx, dev, Options{Dir: filepath.Join(dir, "log")})
		if err == nil {
			s2.Close()
		}
		if !errors.Is(err, ErrInconsistent) {
			t.Fatalf("%d records of the last boot: Open = %v, want ErrInconsistent", n, err)
		}
		after, _ := os.ReadFile(path)
		if string(before) != string(after) || !readRTMR3(t, dev).Equal(regBefore) {
			t.Fatalf("%d records of the last boot were rolled into this boot's register", n)
		}
		dev.Close()
	}
}

// uptimeForTest is how long this boot has run, in nanoseconds.
func uptimeForTest(t *testing.T) int64 {
	t.Helper()
	up, err := sinceBoot()
	if err != nil {
		t.Fatal(err)
	}
	return int64(up)
}
