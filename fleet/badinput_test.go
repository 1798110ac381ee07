package fleet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// snapshot is what a refused request must leave as it was.
func snapshot(t *testing.T, st Store) string {
	t.Helper()
	ctx := context.Background()
	ms, err := st.Machines(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, m := range ms {
		h, err := st.History(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		full, _, err := st.Machine(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s v%d %d verdicts %x\n", m.ID, m.Version, len(h), full.State)
	}
	return b.String()
}

// Bad input is refused with a 4xx and writes nothing: the machine rows and
// histories stay as they were, and the nonce a refused bundle carried is
// still good for a good bundle.
func TestBadInput(t *testing.T) {
	for name, url := range storeURLs(t) {
		t.Run(name, func(t *testing.T) { badInput(t, url) })
	}
}

func badInput(t *testing.T, url string) {
	ctx := context.Background()
	const limit = 1 << 20
	r := newReplica(t, url, Config{MaxBundle: limit})
	g, other := newGuest(t, 1), newGuest(t, 2)
	for _, x := range []*guest{g, other} {
		if err := r.st.Enroll(ctx, x.machine("default")); err != nil {
			t.Fatal(err)
		}
	}
	// A first trusted verdict, so a state exists to keep.
	used := r.challenge(t)
	first := g.evidence(t, used, false)
	if code, res := r.post(t, g.id, first); code != 200 || !res.Trusted || !res.Advanced {
		t.Fatalf("first bundle: %d %+v", code, res)
	}
	fresh := r.challenge(t)
	good := g.evidence(t, fresh, false)
	v1 := g.evidence(t, r.challenge(t), true)
	expired := []byte("expired-nonce-0123456789abcdef01")
	if err := r.st.IssueNonce(ctx, expired, time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		id   string
		body []byte
		want int
	}{
		{"empty body", g.id, nil, 400},
		{"garbage", g.id, []byte("this is not a bundle \x00\xff"), 400},
		{"garbage zip magic", g.id, append([]byte("PK\x03\x04"), make([]byte, 100)...), 400},
		{"truncated v2", g.id, good[:len(good)/2], 400},
		{"truncated v1 JSON", g.id, v1[:len(v1)-len(v1)/3], 400},
		{"oversized", g.id, make([]byte, limit+1), 413},
		{"unknown machine", "nobody-here", good, 404},
		{"bad machine id", "..%2Fetc", good, 400},
		{"replayed nonce", g.id, g.evidence(t, used, false), 403},
		{"unissued nonce", g.id, g.evidence(t, []byte("never-issued-nonce-0123456789abc"), false), 403},
		{"expired nonce", g.id, g.evidence(t, expired, false), 403},
		{"no nonce", g.id, g.evidence(t, nil, true), 400},
	}
	for _, c := range cases {
		before := snapshot(t, r.st)
		code, _ := r.post(t, c.id, c.body)
		if code != c.want {
			t.Errorf("%s: status %d, want %d", c.name, code, c.want)
		}
		if after := snapshot(t, r.st); after != before {
			t.Errorf("%s: the store changed:\n%s\nto\n%s", c.name, before, after)
		}
	}
	slowClient(t, r, g.id)
	// The nonce of the refused "unknown machine" bundle was not consumed,
	// and the guest's log still continues the state: the good bundle is
	// trusted.
	if code, res := r.post(t, g.id, good); code != 200 || !res.Trusted || !res.Advanced {
		t.Errorf("good bundle after the refusals: %d %+v", code, res)
	}
	// Another machine's evidence posted as g's is a verdict (its key is
	// not g's), recorded, and g's state does not move.
	m0, _, _ := r.st.Machine(ctx, g.id)
	if code, res := r.post(t, g.id, other.evidence(t, r.challenge(t), false)); code != 200 || res.Trusted || res.Advanced {
		t.Errorf("another machine's bundle: %d %+v", code, res)
	}
	if m1, _, _ := r.st.Machine(ctx, g.id); m1.Version != m0.Version || string(m1.State) != string(m0.State) {
		t.Errorf("an untrusted verdict moved the state")
	}
}

// slowClient sends a body slower than the server's read timeout: it gets a
// 4xx, nothing is written, and a client meanwhile is served.
func slowClient(t *testing.T, r *replica, id string) {
	svc := New(Config{Store: r.st, TempDir: t.TempDir()})
	srv := httptest.NewUnstartedServer(svc)
	srv.Config.ReadTimeout = 300 * time.Millisecond
	srv.Start()
	defer srv.Close()
	before := snapshot(t, r.st)
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/machines/%s/evidence HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nPK\x03\x04", id)
	// Meanwhile another client is served.
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("healthz during a slow client: %v", err)
	} else {
		resp.Body.Close()
	}
	// The slow client sends nothing more: its read times out.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	switch {
	case err != nil && !errors.Is(err, net.ErrClosed):
		// The server may close the connection instead of answering:
		// refused all the same, and checked below to have written nothing.
		t.Logf("slow client: connection closed: %v", err)
	case err == nil && (resp.StatusCode < 400 || resp.StatusCode > 499):
		t.Errorf("slow client: status %d, want 4xx", resp.StatusCode)
	}
	if after := snapshot(t, r.st); after != before {
		t.Errorf("slow client: the store changed")
	}
}
