package fleet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/bundle/collect"
	"github.com/ccmr-dev/ccmr/fleet/internal/pgtest"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/vmr"
)

// guest is a simulated machine: a sim device with a runtime log.
type guest struct {
	id    string
	dev   *sim.Device
	store *vmr.Store
	key   []byte
	n     int
	mu    sync.Mutex // one collection at a time
}

func newGuest(t testing.TB, i int) *guest {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	g := &guest{id: fmt.Sprintf("m%03d", i)}
	var err error
	if g.dev, err = sim.Open(ctx, filepath.Join(dir, "sim")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.dev.Close() })
	if g.store, err = vmr.Open(ctx, g.dev, vmr.Options{Dir: filepath.Join(dir, "log")}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.store.Close() })
	if g.key, err = g.dev.PublicKeyPEM(ctx); err != nil {
		t.Fatal(err)
	}
	return g
}

func (g *guest) machine(group string) Machine {
	return Machine{ID: g.id, Group: group, Platform: "sim", KeyPEM: string(g.key)}
}

// evidence extends mr_app with a new event and collects a bundle for
// nonce, written as v2 (or v1 when v1 is set).
func (g *guest) evidence(t testing.TB, nonce []byte, v1 bool) []byte {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	ctx := context.Background()
	g.n++
	h := sha512.Sum384([]byte(fmt.Sprintf("%s event %d", g.id, g.n)))
	if _, err := g.store.Extend(ctx, "mr_app", mr.Digest{Alg: mr.SHA384, Bytes: h[:]}); err != nil {
		t.Error(err)
		return nil
	}
	b, err := collect.Bundle(ctx, g.dev, g.store, nonce, collect.Options{NoIMA: true, NoSystemdLog: true})
	if err != nil {
		t.Error(err)
		return nil
	}
	defer b.Close()
	var buf bytes.Buffer
	if v1 {
		err = b.Write(&buf)
	} else {
		err = b.WriteArchive(ctx, &buf)
	}
	if err != nil {
		t.Error(err)
		return nil
	}
	return buf.Bytes()
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// storeURLs are the stores a test runs on: SQLite always, PostgreSQL
// (started by the test) unless short.
func storeURLs(t *testing.T) map[string]string {
	urls := map[string]string{"sqlite": "sqlite:" + filepath.Join(t.TempDir(), "fleet.db")}
	urls["postgres"] = pgtest.Start(t)
	return urls
}

func openStore(t testing.TB, url string) Store {
	t.Helper()
	st, err := Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// replica is one service over its own connection pool to the database,
// served on loopback.
type replica struct {
	st  Store
	srv *httptest.Server
	url string
}

func newReplica(t testing.TB, url string, cfg Config) *replica {
	t.Helper()
	cfg.Store = openStore(t, url)
	cfg.TempDir = t.TempDir()
	srv := httptest.NewServer(New(cfg))
	t.Cleanup(srv.Close)
	return &replica{st: cfg.Store, srv: srv, url: srv.URL}
}

// challengeErr is challenge for a replica that may be gone.
func (r *replica) challengeErr() ([]byte, error) {
	resp, err := http.Post(r.url+"/v1/challenge", "", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var c Challenge
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || resp.StatusCode != 200 {
		return nil, fmt.Errorf("challenge: %d %v", resp.StatusCode, err)
	}
	return hex.DecodeString(c.Nonce)
}

// postErr is post for a replica that may be gone.
func (r *replica) postErr(id string, body []byte) (int, *Result, error) {
	resp, err := http.Post(r.url+"/v1/machines/"+id+"/evidence", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		return resp.StatusCode, nil, err
	}
	var res Result
	if err := json.Unmarshal(raw, &res); err != nil {
		return 0, nil, err
	}
	return 200, &res, nil
}

func (r *replica) challenge(t testing.TB) []byte {
	t.Helper()
	resp, err := http.Post(r.url+"/v1/challenge", "", nil)
	if err != nil {
		t.Error(err)
		return nil
	}
	defer resp.Body.Close()
	var c Challenge
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || resp.StatusCode != 200 {
		t.Errorf("challenge: %d %v", resp.StatusCode, err)
		return nil
	}
	n, err := hex.DecodeString(c.Nonce)
	if err != nil || len(n) != 32 {
		t.Errorf("challenge nonce %q", c.Nonce)
	}
	return n
}

// post sends a bundle and returns the status and decoded result.
func (r *replica) post(t testing.TB, id string, body []byte) (int, *Result) {
	t.Helper()
	resp, err := http.Post(r.url+"/v1/machines/"+id+"/evidence", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Error(err)
		return 0, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return resp.StatusCode, nil
	}
	var res Result
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Errorf("result: %v: %s", err, raw)
	}
	return resp.StatusCode, &res
}

// readBundle parses a bundle's bytes as the service does.
func readBundle(t testing.TB, b []byte) *bundle.Bundle {
	t.Helper()
	bb, err := bundle.ReadContext(context.Background(), bytes.NewReader(b), "bundle")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bb.Close() })
	return bb
}
