package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a buffer a running command writes while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func fleetCLI(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errb lockedBuffer
	code := run(ctx, args, env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }})
	return code, out.String(), errb.String()
}

// `ccmr verifier enroll`, `verifier serve` on SQLite and `attest` from a
// sim device: two trusted verdicts advance the machine twice, the API and
// /metrics say so, and a key that is no key is refused at enrolment.
func TestVerifierServeAttest(t *testing.T) {
	dir := t.TempDir()
	dev := "sim:" + filepath.Join(dir, "sim")
	db := "sqlite:" + filepath.Join(dir, "fleet.db")
	ctx := context.Background()
	keyFile := filepath.Join(dir, "key.pem")
	if code, _, e := fleetCLI(t, ctx, "--device", dev, "key", "-O", keyFile); code != 0 {
		t.Fatalf("key: %d %s", code, e)
	}
	if code, _, _ := fleetCLI(t, ctx, "verifier", "enroll", "--db", db, "--machine", "m1", "--platform", "sim", "--key", filepath.Join(dir, "nokey")); code != 2 {
		t.Errorf("enroll with a missing key file: exit %d, want 2", code)
	}
	os.WriteFile(filepath.Join(dir, "garbage.pem"), []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), 0o600)
	if code, _, _ := fleetCLI(t, ctx, "verifier", "enroll", "--db", db, "--machine", "m1", "--platform", "sim", "--key", filepath.Join(dir, "garbage.pem")); code != 2 {
		t.Errorf("enroll with a garbage key: exit %d, want 2", code)
	}
	if code, _, e := fleetCLI(t, ctx, "verifier", "enroll", "--db", db, "--machine", "m1", "--platform", "sim", "--key", keyFile); code != 0 {
		t.Fatalf("enroll: %d %s", code, e)
	}
	sctx, stop := context.WithCancel(ctx)
	var errb lockedBuffer
	served := make(chan int, 1)
	go func() {
		served <- run(sctx, []string{"verifier", "serve", "--listen", "127.0.0.1:0", "--db", db},
			env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &errb, getenv: func(string) string { return "" }})
	}()
	addr := regexp.MustCompile(`listening on (\S+)`)
	var url string
	for deadline := time.Now().Add(30 * time.Second); url == ""; time.Sleep(20 * time.Millisecond) {
		if m := addr.FindStringSubmatch(errb.String()); m != nil {
			url = "http://" + m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start: %s", errb.String())
		}
	}
	for i := 0; i < 2; i++ {
		code, out, e := fleetCLI(t, ctx, "--device", dev, "attest", "--to", url, "--machine", "m1", "--ima-log", "", "--systemd-log", "")
		if code != 0 || !strings.Contains(out, "TRUSTED") {
			t.Fatalf("attest %d: exit %d\n%s%s", i, code, out, e)
		}
	}
	if code, _, e := fleetCLI(t, ctx, "--device", dev, "attest", "--to", url, "--machine", "m2", "--ima-log", "", "--systemd-log", ""); code == 0 || !strings.Contains(e, "404") {
		t.Errorf("attest as an unknown machine: exit %d %s", code, e)
	}
	resp, err := http.Get(url + "/v1/machines/m1")
	if err != nil {
		t.Fatal(err)
	}
	var view struct {
		Version int64 `json:"version"`
		Last    struct {
			Trusted bool `json:"trusted"`
		} `json:"last"`
		State json.RawMessage `json:"state"`
	}
	json.NewDecoder(resp.Body).Decode(&view)
	resp.Body.Close()
	if view.Version != 2 || !view.Last.Trusted || len(view.State) < 10 {
		t.Errorf("machine view: %+v", view)
	}
	resp, err = http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `ccmr_fleet_verdicts_total{result="trusted"} 2`) || !strings.Contains(string(metrics), `ccmr_fleet_refused_total{status="404"} 1`) {
		t.Errorf("metrics:\n%s", metrics)
	}
	stop()
	if code := <-served; code != 0 {
		t.Errorf("serve exit %d: %s", code, errb.String())
	}
}
