package fleet

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/fleet/internal/pgtest"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestFleetBench is `make fleet-bench` (CCMR_FLEET_BENCH=1; sizes from
// FLEET_MACHINES, FLEET_ROUNDS): 3 `ccmr verifier serve` processes on one
// PostgreSQL, each request to a random live replica, one replica killed
// with SIGKILL halfway and started again; then the consistency checks of
// TestScale, and throughput and p99 against `ccmr verify --state` run as
// one process per bundle. It prints figures; it asserts no timing.
func TestFleetBench(t *testing.T) {
	if os.Getenv("CCMR_FLEET_BENCH") != "1" {
		t.Skip("CCMR_FLEET_BENCH=1 (make fleet-bench)")
	}
	machines, rounds := envInt("FLEET_MACHINES", 1000), envInt("FLEET_ROUNDS", 20)
	ctx := context.Background()
	bin := filepath.Join(t.TempDir(), "ccmr")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/ccmr-dev/ccmr/cmd/ccmr").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	url := pgtest.Start(t)
	st := openStore(t, url)
	guests := make([]*guest, machines)
	for i := range guests {
		guests[i] = newGuest(t, i)
		if err := st.Enroll(ctx, guests[i].machine("default")); err != nil {
			t.Fatal(err)
		}
	}
	type proc struct {
		cmd *exec.Cmd
		rep *replica
	}
	var pmu sync.Mutex
	procs := make([]*proc, 3)
	start := func(i int) {
		c := exec.Command(bin, "verifier", "serve", "--listen", "127.0.0.1:0", "--db", url)
		errp, _ := c.StderrPipe()
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(errp)
		re := regexp.MustCompile(`listening on (\S+)`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				r := &replica{st: st, srv: nil}
				r.url = "http://" + m[1]
				pmu.Lock()
				procs[i] = &proc{cmd: c, rep: r}
				pmu.Unlock()
				go func() {
					for sc.Scan() {
					}
				}()
				return
			}
		}
		t.Fatalf("replica %d did not start", i)
	}
	for i := range procs {
		start(i)
	}
	t.Cleanup(func() {
		for _, p := range procs {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	pick := func() *replica {
		pmu.Lock()
		defer pmu.Unlock()
		return procs[rand.IntN(len(procs))].rep
	}
	var mu sync.Mutex
	acks := map[string][]ack{}
	sent := map[string][]byte{}
	var lat []time.Duration
	var refusedAfterKill atomic.Int64
	one := func(g *guest) {
		// A guest whose request met the killed replica (refused, reset,
		// or not yet listening again) sends anew, a little later, as an
		// agent retrying would; what every try met is reported if none
		// is acknowledged.
		var met []string
		for try := 0; try < 20; try++ {
			if try > 0 {
				time.Sleep(50 * time.Millisecond)
			}
			r := pick()
			n, err := r.challengeErr()
			if err != nil {
				refusedAfterKill.Add(1)
				met = append(met, "challenge: "+err.Error())
				continue
			}
			b := g.evidence(t, n, false)
			mu.Lock()
			sent[sum(b)] = b
			mu.Unlock()
			t0 := time.Now()
			code, res, err := pick().postErr(g.id, b)
			if err != nil || code != 200 {
				// A killed replica: not acknowledged; the guest sends anew.
				refusedAfterKill.Add(1)
				met = append(met, fmt.Sprintf("evidence: %d %v", code, err))
				continue
			}
			d := time.Since(t0)
			mu.Lock()
			acks[g.id] = append(acks[g.id], ack{b, res})
			lat = append(lat, d)
			mu.Unlock()
			return
		}
		t.Errorf("%s: no replica answered in 20 tries: %s", g.id, strings.Join(met, "; "))
	}
	t0 := time.Now()
	for r := 0; r < rounds; r++ {
		if r == rounds/2 {
			// SIGKILL replica 0 while requests are in flight, then start it again.
			go func() {
				time.Sleep(200 * time.Millisecond)
				pmu.Lock()
				p := procs[0]
				pmu.Unlock()
				p.cmd.Process.Signal(syscall.SIGKILL)
				p.cmd.Wait()
				start(0)
			}()
		}
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		for _, g := range guests {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				one(g)
			})
		}
		wg.Wait()
	}
	wall := time.Since(t0)
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
	t.Logf("fleet: %d machines × %d rounds, 3 replicas, one SIGKILLed at round %d: %d acknowledged in %v (%.1f bundles/s incl. quoting); evidence POST p50 %v p99 %v; %d requests lost to the kill and sent again",
		machines, rounds, rounds/2, len(lat), wall.Round(time.Millisecond), float64(len(lat))/wall.Seconds(), p(0.5), p(0.99), refusedAfterKill.Load())
	checkFleet(t, st, guests, acks, sent, rounds, true)
	// `ccmr verify --state` as one process per bundle, on a sample.
	dir := t.TempDir()
	var per []time.Duration
	for i, g := range guests[:min(len(guests), 20)] {
		keyf := filepath.Join(dir, fmt.Sprintf("k%d.pem", i))
		os.WriteFile(keyf, g.key, 0o600)
		state := filepath.Join(dir, fmt.Sprintf("s%d.json", i))
		for _, a := range acks[g.id] {
			bf := filepath.Join(dir, "b.zip")
			os.WriteFile(bf, a.body, 0o600)
			b := readBundle(t, a.body)
			t1 := time.Now()
			out, err := exec.Command(bin, "verify", "--allow-sim", "--trust-sim-key", keyf, "--nonce", hex.EncodeToString(b.Nonce), "--state", state, bf).CombinedOutput()
			per = append(per, time.Since(t1))
			if err != nil && a.res.Trusted {
				t.Errorf("ccmr verify of a bundle the service trusted: %v\n%s", err, out)
			}
		}
	}
	slices.Sort(per)
	var total time.Duration
	for _, d := range per {
		total += d
	}
	t.Logf("ccmr verify --state, one process per bundle, sequential: %d bundles, %.1f bundles/s, p50 %v p99 %v",
		len(per), float64(len(per))/total.Seconds(), per[len(per)/2], per[int(0.99*float64(len(per)-1))])
}
