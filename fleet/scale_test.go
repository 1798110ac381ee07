package fleet

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/verifier"
)

// ack is a bundle the service answered 200 for.
type ack struct {
	body []byte
	res  *Result
}

// The scale test (scaled down for make test): 3 replicas sharing one
// database (in-process servers, each with its own connection pool), N
// simulated machines × R rounds, each request to a random replica; every
// third machine sends two bundles of a round at once, to two replicas.
// Then, per machine: no acknowledged verdict lost, one advance per
// version (none double), and the state equal to a fresh full verification
// of the last bundle that advanced it.
func TestScale(t *testing.T) {
	for name, url := range storeURLs(t) {
		t.Run(name, func(t *testing.T) {
			machines, rounds := 50, 5
			if name == "sqlite" || testing.Short() {
				machines, rounds = 12, 3
			}
			scale(t, url, machines, rounds)
		})
	}
}

func scale(t *testing.T, url string, machines, rounds int) {
	ctx := context.Background()
	reps := make([]*replica, 3)
	for i := range reps {
		reps[i] = newReplica(t, url, Config{})
	}
	guests := make([]*guest, machines)
	for i := range guests {
		guests[i] = newGuest(t, i)
		if err := reps[0].st.Enroll(ctx, guests[i].machine("default")); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	acks := map[string][]ack{}
	sent := map[string][]byte{}
	send := func(g *guest, v1 bool) []byte {
		n := reps[rand.IntN(len(reps))].challenge(t)
		b := g.evidence(t, n, v1)
		mu.Lock()
		sent[sum(b)] = b
		mu.Unlock()
		return b
	}
	post := func(g *guest, body []byte) {
		code, res := reps[rand.IntN(len(reps))].post(t, g.id, body)
		if code != 200 {
			t.Errorf("%s: status %d", g.id, code)
			return
		}
		mu.Lock()
		acks[g.id] = append(acks[g.id], ack{body, res})
		mu.Unlock()
	}
	start := time.Now()
	for r := 0; r < rounds; r++ {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for i, g := range guests {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				a := send(g, r%2 == 1)
				if a == nil {
					return
				}
				if i%3 != 0 {
					post(g, a)
					return
				}
				b := send(g, false)
				if b == nil {
					return
				}
				var pw sync.WaitGroup
				for _, body := range [][]byte{a, b} {
					pw.Go(func() { post(g, body) })
				}
				pw.Wait()
			}()
		}
		wg.Wait()
	}
	t.Logf("%d machines × %d rounds: %d requests in %v", machines, rounds, countAcks(acks), time.Since(start))
	if t.Failed() {
		return
	}
	checkFleet(t, reps[1].st, guests, acks, sent, rounds, false)
}

// checkFleet checks the store against what the clients saw: every
// acknowledged verdict recorded unchanged (0 lost; with exact, nothing
// else recorded: a killed replica may have committed a verdict it never
// acknowledged), one advance from each version up to the row's (0 double),
// at least one advance a round, and the state equal to a fresh full
// verification of the last bundle that advanced it (sent holds the bodies
// sent, by SHA-256).
func checkFleet(t testing.TB, st Store, guests []*guest, acks map[string][]ack, sent map[string][]byte, rounds int, unacked bool) {
	ctx := context.Background()
	svc := New(Config{Store: st})
	for _, g := range guests {
		m, _, err := st.Machine(ctx, g.id)
		if err != nil {
			t.Fatal(err)
		}
		hist, err := st.History(ctx, g.id)
		if err != nil {
			t.Fatal(err)
		}
		byBundle := map[string]Verdict{}
		for _, v := range hist {
			byBundle[v.Bundle] = v
		}
		for _, a := range acks[g.id] {
			v, ok := byBundle[sum(a.body)]
			if !ok || v.Trusted != a.res.Trusted || (v.Advanced != a.res.Advanced && !a.res.Replayed) || string(v.Report) != string(a.res.Report) {
				t.Errorf("%s: acknowledged verdict %s lost or changed", g.id, sum(a.body)[:12])
			}
		}
		if !unacked && len(hist) != len(acks[g.id]) {
			t.Errorf("%s: %d verdicts recorded, %d acknowledged", g.id, len(hist), len(acks[g.id]))
		}
		var last []byte
		from := 0
		for _, v := range hist {
			if !v.Advanced {
				continue
			}
			if v.From != int64(from) {
				t.Errorf("%s: advance %d from version %d", g.id, from, v.From)
			}
			from++
			last = sent[v.Bundle]
		}
		if int64(from) != m.Version {
			t.Errorf("%s: version %d, %d advances recorded", g.id, m.Version, from)
		}
		if from < rounds {
			t.Errorf("%s: %d advances in %d rounds", g.id, from, rounds)
		}
		if from == 0 {
			continue
		}
		if last == nil {
			t.Errorf("%s: the last advancing bundle was never sent", g.id)
			continue
		}
		// A fresh full verification of the last bundle that advanced it.
		b := readBundle(t, last)
		fresh := &Machine{ID: g.id, Group: m.Group, Platform: m.Platform, KeyPEM: m.KeyPEM}
		opts, err := svc.Options(fresh, b.Nonce, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		rep, err := verifier.Verify(ctx, b, opts)
		if err != nil || !rep.Trusted {
			t.Fatalf("%s: fresh verification: %v %v", g.id, err, rep.Verdict)
		}
		want := normalState(t, opts.Monitor.Machines[g.id])
		got := normalState(t, mustState(t, m))
		if want != got {
			t.Errorf("%s: stored state\n%s\nfresh verification\n%s", g.id, got, want)
		}
	}
}

func countAcks(a map[string][]ack) int {
	n := 0
	for _, v := range a {
		n += len(v)
	}
	return n
}

func mustState(t testing.TB, m *Machine) *verifier.MachineState {
	t.Helper()
	st, err := MonitorFor(m)
	if err != nil {
		t.Fatal(err)
	}
	return st.Machines[m.ID]
}

// normalState is an entry's JSON without the times of its verification.
func normalState(t testing.TB, e *verifier.MachineState) string {
	t.Helper()
	if e == nil {
		return "null"
	}
	c := *e
	c.Time, c.Verified = time.Time{}, time.Time{}
	b, err := json.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
