package vmr

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/internal/flock"
)

// replaceFile puts b at p through a rename, so that a reader sees the old
// list or the new one, never an entry half written (the kernel's list never
// shows one either).
func replaceFile(t *testing.T, p string, b []byte) {
	t.Helper()
	writeFile(t, p+".new", b)
	if err := os.Rename(p+".new", p); err != nil {
		t.Fatal(err)
	}
}

// followInBackground runs Follow until ctx ends and reports each pass's
// count and its return value.
func followInBackground(ctx context.Context, s *Store, list string) (<-chan int, <-chan error) {
	added := make(chan int, 100)
	done := make(chan error, 1)
	go func() {
		done <- s.Follow(ctx, ForwardOptions{List: list, Batch: 4}, time.Millisecond, func(n int) { added <- n })
	}()
	return added, done
}

// waitForwarded reads pass counts until they add up to want.
func waitForwarded(t *testing.T, ctx context.Context, added <-chan int, done <-chan error, want int) {
	t.Helper()
	for got := 0; got < want; {
		select {
		case n := <-added:
			got += n
			if got > want {
				t.Fatalf("forwarded %d entries, want %d", got, want)
			}
		case err := <-done:
			t.Fatalf("Follow returned %v after %d of %d entries", err, got, want)
		case <-ctx.Done():
			t.Fatalf("deadline: %d of %d entries forwarded", got, want)
		}
	}
}

// Follow forwards a list that grows while it runs, each entry once, and
// returns nil when its context is cancelled.
func TestFollowGrowingList(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	dev, s := openSim(t, dir)
	list := filepath.Join(dir, "ima.bin")
	replaceFile(t, list, specList(10, -1))
	fctx, stop := context.WithCancel(ctx)
	added, done := followInBackground(fctx, s, list)
	waitForwarded(t, ctx, added, done, 10)
	for _, n := range []int{11, 25, 40} {
		replaceFile(t, list, specList(n, -1))
		prev := map[int]int{11: 10, 25: 11, 40: 25}[n]
		waitForwarded(t, ctx, added, done, n-prev)
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Follow after cancel = %v, want nil", err)
		}
	case <-ctx.Done():
		t.Fatal("Follow did not stop on cancel")
	}
	select {
	case n := <-added:
		t.Fatalf("a pass reported %d more entries", n)
	default:
	}
	checkForwarded(t, s, list, 40)
	if reg, _ := replayFile(t, s.Path()); !reg.Equal(readRTMR3(t, dev)) {
		t.Fatalf("log replays to %v, rtmr3 is %v", reg, readRTMR3(t, dev))
	}
}

// Follow stops when its deadline passes, having forwarded nothing from a
// list with nothing new.
func TestFollowDeadline(t *testing.T) {
	dir := t.TempDir()
	_, s := openSim(t, dir)
	list := filepath.Join(dir, "ima.bin")
	replaceFile(t, list, specList(3, -1))
	if n, err := s.Forward(context.Background(), ForwardOptions{List: list}); err != nil || n != 3 {
		t.Fatalf("Forward = %d, %v", n, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	total := 0
	err := s.Follow(ctx, ForwardOptions{List: list}, time.Millisecond, func(n int) { total += n })
	if err != nil || total != 0 {
		t.Fatalf("Follow = %v after %d entries, want nil after none", err, total)
	}
	checkForwarded(t, s, list, 3)
}

// A list rewritten under Follow (an earlier entry changed, or the list
// shorter than what was forwarded) stops it with ErrInconsistent, and
// nothing more is forwarded.
func TestFollowStopsOnRewrittenList(t *testing.T) {
	for _, tc := range []struct {
		name string
		list []byte
	}{
		{"earlier entry changed", specList(30, 5)},
		{"shorter", specList(12, -1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			dir := t.TempDir()
			_, s := openSim(t, dir)
			list := filepath.Join(dir, "ima.bin")
			replaceFile(t, list, specList(20, -1))
			added, done := followInBackground(ctx, s, list)
			waitForwarded(t, ctx, added, done, 20)
			replaceFile(t, list, tc.list)
			select {
			case err := <-done:
				if !errors.Is(err, ErrInconsistent) {
					t.Fatalf("Follow on a rewritten list = %v, want ErrInconsistent", err)
				}
			case n := <-added:
				t.Fatalf("forwarded %d entries of a rewritten list", n)
			case <-ctx.Done():
				t.Fatal("Follow did not stop on a rewritten list")
			}
			if n, _ := s.Records(ctx, "mr_ima"); n != 20 {
				t.Fatalf("mr_ima has %d records, want 20", n)
			}
		})
	}
}

// A pass with nothing new over a list unchanged since its prefix was last
// checked reads none of the prefix; a list rewritten since (in place, or
// replaced by another file) is checked again and refused.
func TestForwardNothingNewReadsNoPrefix(t *testing.T) {
	defer func(d time.Duration) { listSettle = d }(listSettle)
	listSettle = 0 // the test's list is a few milliseconds old
	for _, tc := range []struct {
		name    string
		rewrite func(t *testing.T, list string, old os.FileInfo)
	}{
		{"in place", func(t *testing.T, list string, old os.FileInfo) {
			f, err := os.OpenFile(list, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(specList(20, 5), 0); err != nil {
				t.Fatal(err)
			}
			f.Close()
			// Times that differ from the recorded ones whatever the
			// clock's tick (listSettle guards that in real use).
			then := old.ModTime().Add(-time.Hour)
			if err := os.Chtimes(list, then, then); err != nil {
				t.Fatal(err)
			}
		}},
		{"another file", func(t *testing.T, list string, old os.FileInfo) {
			replaceFile(t, list, specList(20, 5))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			_, s := openSim(t, dir)
			list := filepath.Join(dir, "ima.bin")
			writeFile(t, list, specList(20, -1))
			opts := ForwardOptions{List: list}
			if n, err := s.Forward(ctx, opts); err != nil || n != 20 {
				t.Fatalf("Forward = %d, %v", n, err)
			}
			// The first pass with nothing new checks the prefix and
			// records the file; the next ones read none of it.
			if n, err := s.Forward(ctx, opts); err != nil || n != 0 {
				t.Fatalf("Forward = %d, %v", n, err)
			}
			before := listBytesHashed.Load()
			for i := 0; i < 3; i++ {
				if n, err := s.Forward(ctx, opts); err != nil || n != 0 {
					t.Fatalf("Forward = %d, %v", n, err)
				}
			}
			if got := listBytesHashed.Load() - before; got != 0 {
				t.Fatalf("passes with nothing new hashed %d bytes of the list", got)
			}
			fi, err := os.Stat(list)
			if err != nil {
				t.Fatal(err)
			}
			tc.rewrite(t, list, fi)
			n, err := s.Forward(ctx, opts)
			if !errors.Is(err, ErrInconsistent) {
				t.Fatalf("Forward of a rewritten list = %d, %v; want ErrInconsistent", n, err)
			}
		})
	}
}

// A Store waiting for the log's lock, or a forwarder for the forwarder's,
// gives up when its context ends (another process holds the lock), and
// works again once the lock is free.
func TestLocksHonourContext(t *testing.T) {
	dir := t.TempDir()
	_, s := openSim(t, dir)
	list := filepath.Join(dir, "ima.bin")
	writeFile(t, list, specList(3, -1))
	for _, tc := range []struct {
		name string
		path string
		op   func(ctx context.Context) error
	}{
		{"log", s.Path(), func(ctx context.Context) error {
			_, err := s.Extend(ctx, "mr_x", digestN("x", 0))
			if err == nil {
				_, err = s.Read(ctx, "mr_x")
			}
			return err
		}},
		{"forwarder", s.forwardStatePath("mr_ima") + ".lock", func(ctx context.Context) error {
			_, err := s.Forward(ctx, ForwardOptions{List: list})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			holder, err := os.OpenFile(tc.path, os.O_RDWR|os.O_CREATE, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			defer holder.Close()
			if err := flock.Lock(context.Background(), holder, flock.Exclusive); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			before, _ := os.ReadFile(s.Path())
			if err := tc.op(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("with the lock held elsewhere: %v, want the deadline", err)
			}
			if after, _ := os.ReadFile(s.Path()); string(after) != string(before) {
				t.Fatal("the log changed while its lock was held elsewhere")
			}
			flock.Unlock(holder)
			if err := tc.op(context.Background()); err != nil {
				t.Fatalf("after the lock was freed: %v", err)
			}
		})
	}
}
