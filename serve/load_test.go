package serve_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// loadClients and loadExtends are the size of the load test: the issue asks
// for 32 × 1,000, which CCMR_SERVE_LOAD=1000 (extends per client) runs;
// it; the default is 32 × 250 (8,000 extends, ~15 s on the shared 2-core
// machine: 32 × 1,000 took 64 s there, see docs/serve.md); -short runs
// 32 × 50.
const loadClients = 32

func loadExtends(t *testing.T) int {
	if s := os.Getenv("CCMR_SERVE_LOAD"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("CCMR_SERVE_LOAD=%q: want a positive count", s)
		}
		return n
	}
	if testing.Short() {
		return 50
	}
	return 250
}

// 32 clients extend their own virtual registers at once through the
// daemon: every acknowledged extend is in the log exactly once, in each
// client's order (the register is the fold of exactly its digests), the
// log replays to the backing register, and the daemon's own quote of it
// verifies with the verifier, which proves the same values.
func TestLoadConcurrentClients(t *testing.T) {
	d := startDaemon(t, nil, 0o600)
	n := loadExtends(t)
	ctx := context.Background()
	lat := make([][]time.Duration, loadClients)
	errs := make(chan error, loadClients)
	start := time.Now()
	var wg sync.WaitGroup
	for c := range loadClients {
		wg.Go(func() {
			name := fmt.Sprintf("mr_load.c%d", c)
			for i := range n {
				t0 := time.Now()
				vs, err := d.cl.Extend(ctx, name, digestOf(c, i))
				lat[c] = append(lat[c], time.Since(t0))
				if err != nil {
					errs <- fmt.Errorf("client %d extend %d: %w", c, i, err)
					return
				}
				if want := fold(c, i+1).String(); len(vs) != 1 || vs[0].Value != want {
					errs <- fmt.Errorf("client %d extend %d: answered %v, want %s", c, i, vs, want)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	t.Logf("%d clients × %d extends: %.0f extends/s, p50 %v, p99 %v", loadClients, n,
		float64(len(all))/elapsed.Seconds(), all[len(all)/2], all[len(all)*99/100])

	for c := range loadClients {
		name := fmt.Sprintf("mr_load.c%d", c)
		recs, err := d.store.Records(ctx, name)
		if err != nil || recs != n {
			t.Errorf("%s: %d records (%v), want %d: lost or duplicated extends", name, recs, err, n)
		}
	}
	if err := d.store.Verify(ctx); err != nil {
		t.Fatalf("the log does not replay to the backing register: %v", err)
	}
	rep := quoteAndVerify(t, d)
	proven := map[string]string{}
	for _, v := range rep.Proven.Virtual {
		proven[v.Name] = v.Digest.String()
	}
	for c := range loadClients {
		name := fmt.Sprintf("mr_load.c%d", c)
		if got, want := proven[name], fold(c, n).String(); got != want {
			t.Errorf("verifier proves %s = %s, want %s", name, got, want)
		}
	}
}
