package fleet

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// The same bundle submitted twice, even at once to two replicas, gets the
// same verdict and advances the state once.
func TestSameBundleTwice(t *testing.T) {
	for name, url := range storeURLs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			a, b := newReplica(t, url, Config{}), newReplica(t, url, Config{})
			g := newGuest(t, 1)
			if err := a.st.Enroll(ctx, g.machine("default")); err != nil {
				t.Fatal(err)
			}
			body := g.evidence(t, a.challenge(t), false)
			var wg sync.WaitGroup
			res := make([]*Result, 4)
			for i := range res {
				wg.Go(func() {
					r := a
					if i%2 == 1 {
						r = b
					}
					code, out := r.post(t, g.id, body)
					if code != 200 {
						t.Errorf("post %d: status %d", i, code)
					}
					res[i] = out
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			advanced, replayed := 0, 0
			for _, r := range res {
				if !r.Trusted || string(r.Report) != string(res[0].Report) {
					t.Errorf("verdicts differ: %+v", r)
				}
				if r.Advanced {
					advanced++
				}
				if r.Replayed {
					replayed++
				}
			}
			m, _, err := a.st.Machine(ctx, g.id)
			if err != nil {
				t.Fatal(err)
			}
			if advanced != 1 || replayed != 3 || m.Version != 1 {
				t.Errorf("advanced %d, replayed %d, version %d: want 1, 3, 1", advanced, replayed, m.Version)
			}
		})
	}
}

// A request that fails after the nonce was consumed and the verdict made
// (a crash before the commit) leaves the previous state, history and
// nonce: the transaction is rolled back whole.
func TestCrashMidRequest(t *testing.T) {
	for name, url := range storeURLs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st := openStore(t, url)
			if err := st.Enroll(ctx, Machine{ID: "m", Group: "g", Platform: "sim", KeyPEM: "k"}); err != nil {
				t.Fatal(err)
			}
			nonce := []byte("nonce-of-the-crash-0123456789abc")
			if err := st.IssueNonce(ctx, nonce, time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			sub := Submission{Machine: "m", Bundle: "aa", Nonce: nonce, At: time.Now()}
			crash := errors.New("crash")
			cctx, cancel := context.WithCancel(ctx)
			_, _, err := st.Submit(cctx, sub, func(context.Context, *Machine) (*Outcome, error) {
				cancel() // the client went away while the bundle was judged
				return &Outcome{Trusted: true, Line: "TRUSTED", Report: []byte("{}"), State: []byte(`{"x":1}`)}, nil
			})
			if err == nil {
				t.Fatal("a cancelled request committed")
			}
			_, _, err = st.Submit(ctx, sub, func(context.Context, *Machine) (*Outcome, error) { return nil, crash })
			if !errors.Is(err, crash) {
				t.Fatalf("err %v", err)
			}
			m, last, err := st.Machine(ctx, "m")
			if err != nil || m.Version != 0 || m.State != nil || last != nil {
				t.Fatalf("after the crashes: %+v %+v %v", m, last, err)
			}
			// The nonce is still good, once.
			ok := func(context.Context, *Machine) (*Outcome, error) {
				return &Outcome{Trusted: true, Line: "TRUSTED", Report: []byte("{}"), State: []byte(`{"x":1}`)}, nil
			}
			if v, _, err := st.Submit(ctx, sub, ok); err != nil || !v.Advanced {
				t.Fatalf("the nonce after the crashes: %+v %v", v, err)
			}
			sub.Bundle = "bb"
			if _, _, err := st.Submit(ctx, sub, ok); !errors.Is(err, ErrNonce) {
				t.Fatalf("a used nonce: %v", err)
			}
			// An untrusted outcome never carries a state.
			nonce2 := []byte("nonce-two-0123456789abcdef012345")
			st.IssueNonce(ctx, nonce2, time.Now().Add(time.Hour))
			sub.Nonce = nonce2
			if _, _, err := st.Submit(ctx, sub, func(context.Context, *Machine) (*Outcome, error) {
				return &Outcome{Line: "NOT TRUSTED", Report: []byte("{}"), State: []byte(`{"x":2}`)}, nil
			}); err == nil {
				t.Fatal("an untrusted outcome advanced the state")
			}
		})
	}
}

// Two submissions for one machine at once: the second is judged from the
// row the first committed (the row lock), never from the same version.
func TestConcurrentAdvance(t *testing.T) {
	for name, url := range storeURLs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st1, st2 := openStore(t, url), openStore(t, url)
			if err := st1.Enroll(ctx, Machine{ID: "m", Group: "g", Platform: "sim", KeyPEM: "k"}); err != nil {
				t.Fatal(err)
			}
			const n = 8
			seen := make(chan int64, n)
			var wg sync.WaitGroup
			for i := range n {
				nonce := []byte{byte(i), 1, 2, 3, 4, 5, 6, 7}
				if err := st1.IssueNonce(ctx, nonce, time.Now().Add(time.Hour)); err != nil {
					t.Fatal(err)
				}
				st := st1
				if i%2 == 1 {
					st = st2
				}
				wg.Go(func() {
					_, _, err := st.Submit(ctx, Submission{Machine: "m", Bundle: string(rune('a' + i)), Nonce: nonce, At: time.Now()},
						func(_ context.Context, m *Machine) (*Outcome, error) {
							seen <- m.Version
							return &Outcome{Trusted: true, Line: "TRUSTED", Report: []byte("{}"), State: []byte{byte(m.Version)}}, nil
						})
					if err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			close(seen)
			got := map[int64]bool{}
			for v := range seen {
				if got[v] {
					t.Errorf("two verifications judged from version %d", v)
				}
				got[v] = true
			}
			if m, _, _ := st1.Machine(ctx, "m"); m.Version != n {
				t.Errorf("version %d after %d advances", m.Version, n)
			}
		})
	}
}
