package serve_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/serve/client"
	"github.com/ccmr-dev/ccmr/vmr"
)

// startChild runs this test binary as a daemon on dir and waits until it
// answers (polling its health: the wait is for readiness, not a timing
// assertion; it gives up after a minute).
func startChild(t *testing.T, dir string) (*exec.Cmd, *client.Client) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), daemonEnv+"="+dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	cl := client.New(filepath.Join(dir, "sock", "ccmr.sock"))
	t.Cleanup(func() { cl.Close() })
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := cl.Health(context.Background()); err == nil {
			return cmd, cl
		}
		if time.Now().After(deadline) {
			t.Fatal("the daemon did not answer within a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SIGKILL the daemon while 8 clients extend, and start it again: the log
// and the register agree (Open recovers; Verify replays the whole log),
// every acknowledged extend is there, and the one each client had in
// flight is wholly there or wholly absent: the register is the fold of
// exactly the first k digests the client sent, k = acked or acked+1.
func TestKillUnderLoad(t *testing.T) {
	const clients = 8
	dir := t.TempDir()
	cmd, cl := startChild(t, dir)
	ctx := context.Background()

	acked := make([]int, clients)
	var total atomic.Int64
	killed := make(chan struct{})
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			name := fmt.Sprintf("mr_kill.c%d", c)
			for i := 0; ; i++ {
				_, err := cl.Extend(ctx, name, digestOf(c, i))
				if err != nil {
					select {
					case <-killed:
						return // the daemon is gone; extend i was in flight
					default:
					}
					t.Errorf("client %d extend %d before the kill: %v", c, i, err)
					return
				}
				acked[c] = i + 1
				total.Add(1)
			}
		})
	}
	// Kill once the clients have made progress (a few hundred extends).
	for total.Load() < 300 && !t.Failed() {
		time.Sleep(5 * time.Millisecond)
	}
	// Marked killed before the signal: a client that sees its connection
	// reset must find the mark, or it reports the kill as a failure.
	close(killed)
	if err := cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	wg.Wait()
	if t.Failed() {
		return
	}

	// What the restarted daemon will find: recover in-process first.
	dev, err := sim.Open(ctx, filepath.Join(dir, "sim"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := vmr.Open(ctx, dev, vmr.Options{Dir: filepath.Join(dir, "log")})
	if err != nil {
		t.Fatalf("reopening after SIGKILL: %v", err)
	}
	if err := store.Verify(ctx); err != nil {
		t.Fatalf("log and register disagree after SIGKILL: %v", err)
	}
	records := make([]int, clients)
	for c := range clients {
		name := fmt.Sprintf("mr_kill.c%d", c)
		k, err := store.Records(ctx, name)
		records[c] = k
		if err != nil {
			t.Fatal(err)
		}
		if k != acked[c] && k != acked[c]+1 {
			t.Errorf("%s: %d records, %d acknowledged: want %d or %d", name, k, acked[c], acked[c], acked[c]+1)
			continue
		}
		v, err := store.Read(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if want := fold(c, k); !v.Equal(want) {
			t.Errorf("%s = %s, want the fold of its first %d digests %s", name, v, k, want)
		}
	}
	t.Logf("acknowledged %v; in the log after recovery %v", acked, records)
	store.Close()
	dev.Close()

	// The restarted daemon serves on from there.
	_, cl2 := startChild(t, dir)
	for c := range clients {
		name := fmt.Sprintf("mr_kill.c%d", c)
		vs, err := cl2.Read(ctx, name)
		if err != nil {
			t.Fatalf("read %s after restart: %v", name, err)
		}
		if want := fold(c, records[c]).String(); len(vs) != 1 || vs[0].Value != want {
			t.Errorf("read %s after restart: %v, want %s", name, vs, want)
		}
	}
	if _, err := cl2.Extend(ctx, "mr_kill.after", digestOf(99, 0)); err != nil {
		t.Fatalf("extend after restart: %v", err)
	}
}
