package main

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/fleet"
	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
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
// sim device: three trusted verdicts (whole, a tail, --whole) advance the
// machine three times, the API and
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
	url, stop := startVerifier(t, ctx, db)
	// Through a recorder: the second bundle carries the runtime log's
	// tail past the state the first one left.
	rc := &recorder{target: url}
	proxy := httptest.NewServer(rc)
	defer proxy.Close()
	for i := 0; i < 2; i++ {
		if code, _, e := fleetCLI(t, ctx, "--device", dev, "extend", "mr_app.y", "--digest", "sha384:"+strings.Repeat("cd", 48)); code != 0 {
			t.Fatalf("extend: %d %s", code, e)
		}
		code, out, e := fleetCLI(t, ctx, "--device", dev, "attest", "--to", proxy.URL, "--machine", "m1", "--ima-log", "", "--systemd-log", "")
		if code != 0 || !strings.Contains(out, "TRUSTED") {
			t.Fatalf("attest %d: exit %d\n%s%s", i, code, out, e)
		}
	}
	if a, b := runtimeOffset(t, rc.bodies[0]), runtimeOffset(t, rc.bodies[1]); a != 0 || b == 0 {
		t.Errorf("runtime log offsets of the two bundles: %d, %d: want whole, then a tail", a, b)
	}
	if code, out, e := fleetCLI(t, ctx, "--device", dev, "attest", "--whole", "--to", proxy.URL, "--machine", "m1", "--ima-log", "", "--systemd-log", ""); code != 0 || !strings.Contains(out, "TRUSTED") || runtimeOffset(t, rc.bodies[2]) != 0 {
		t.Fatalf("attest --whole: exit %d\n%s%s", code, out, e)
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
	if view.Version != 3 || !view.Last.Trusted || len(view.State) < 10 {
		t.Errorf("machine view: %+v", view)
	}
	resp, err = http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `ccmr_fleet_verdicts_total{result="trusted"} 3`) || !strings.Contains(string(metrics), `ccmr_fleet_refused_total{status="404"} 1`) {
		t.Errorf("metrics:\n%s", metrics)
	}
	stop()
}

// startVerifier runs `ccmr verifier serve` on db until stop, which checks
// that it ended cleanly.
func startVerifier(t *testing.T, ctx context.Context, db string, extra ...string) (string, func()) {
	t.Helper()
	sctx, cancel := context.WithCancel(ctx)
	var errb lockedBuffer
	served := make(chan int, 1)
	go func() {
		served <- run(sctx, append([]string{"verifier", "serve", "--listen", "127.0.0.1:0", "--db", db}, extra...),
			env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &errb, getenv: func(string) string { return "" }})
	}()
	addr := regexp.MustCompile(`listening on (\S+)`)
	var url string
	for deadline := time.Now().Add(30 * time.Second); url == ""; time.Sleep(20 * time.Millisecond) {
		if m := addr.FindStringSubmatch(errb.String()); m != nil {
			url = "http://" + m[1]
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("serve did not start: %s", errb.String())
		}
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if code := <-served; code != 0 {
				t.Errorf("verifier serve exit %d: %s", code, errb.String())
			}
		})
	}
	t.Cleanup(stop)
	return url, stop
}

// startDaemon runs `ccmr serve` on the sim device dev with its socket in a
// private folder, until the test ends; it returns the socket.
func startDaemon(t *testing.T, ctx context.Context, dev string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "run", "ccmr.sock")
	sctx, cancel := context.WithCancel(ctx)
	var errb lockedBuffer
	served := make(chan int, 1)
	go func() {
		served <- run(sctx, []string{"--device", dev, "serve", "--socket", sock, "--ima-log", "", "--systemd-log", ""},
			env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &errb, getenv: func(string) string { return "" }})
	}()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case code := <-served:
			cancel()
			t.Fatalf("ccmr serve exited %d: %s", code, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("ccmr serve did not start: %s", errb.String())
		}
	}
	t.Cleanup(func() {
		cancel()
		if code := <-served; code != 0 {
			t.Errorf("ccmr serve exit %d: %s", code, errb.String())
		}
	})
	return sock
}

// recorder sits between attest and the fleet verifier: it passes every
// request on and keeps the last challenge's nonce and the last evidence
// body, so a test can look at what attest sent.
type recorder struct {
	mu       sync.Mutex
	target   string
	nonces   []string
	bodies   [][]byte
	statuses []int
	// views are the service's answers to GET /v1/machines/ID; stale, when
	// set, is answered instead (a replica that lags behind).
	views [][]byte
	stale []byte
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	stale := rc.stale
	rc.mu.Unlock()
	if r.Method == http.MethodGet && stale != nil {
		w.Header().Set("Content-Type", "application/json")
		w.Write(stale)
		return
	}
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, rc.target+r.URL.Path, bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	rc.mu.Lock()
	switch {
	case r.URL.Path == "/v1/challenge":
		var ch struct {
			Nonce string `json:"nonce"`
		}
		json.Unmarshal(answer, &ch)
		rc.nonces = append(rc.nonces, ch.Nonce)
	case strings.HasSuffix(r.URL.Path, "/evidence"):
		rc.bodies = append(rc.bodies, body)
		rc.statuses = append(rc.statuses, resp.StatusCode)
	case r.Method == http.MethodGet:
		rc.views = append(rc.views, answer)
	}
	rc.mu.Unlock()
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.WriteHeader(resp.StatusCode)
	w.Write(answer)
}

// `ccmr attest --server SOCKET`: the bundle comes from a real `ccmr serve`
// (the attest process has no device it could open), answers the
// verifier's challenge, and is trusted; CCMR_SERVER does the same.
func TestAttestThroughServe(t *testing.T) {
	dir := t.TempDir()
	dev := "sim:" + filepath.Join(dir, "sim")
	db := "sqlite:" + filepath.Join(dir, "fleet.db")
	ctx := context.Background()
	keyFile := filepath.Join(dir, "key.pem")
	if code, _, e := fleetCLI(t, ctx, "--device", dev, "key", "-O", keyFile); code != 0 {
		t.Fatalf("key: %d %s", code, e)
	}
	if code, _, e := fleetCLI(t, ctx, "verifier", "enroll", "--db", db, "--machine", "m1", "--platform", "sim", "--key", keyFile); code != 0 {
		t.Fatalf("enroll: %d %s", code, e)
	}
	sock := startDaemon(t, ctx, dev)
	// A record in the daemon's runtime log (a fresh daemon's empty log is
	// not trusted on a sim device: its backing register is in no bank).
	extendVia(t, ctx, sock, 0)
	url, _ := startVerifier(t, ctx, db)
	rc := &recorder{target: url}
	proxy := httptest.NewServer(rc)
	defer proxy.Close()
	noDevice := "tpm:" + filepath.Join(dir, "no-tpm")
	if code, _, _ := fleetCLI(t, ctx, "--device", noDevice, "attest", "--to", proxy.URL, "--machine", "m1"); code == 0 {
		t.Fatal("attest without --server and without a device succeeded: the test proves nothing")
	}
	code, out, e := fleetCLI(t, ctx, "--device", noDevice, "attest", "--server", sock, "--to", proxy.URL, "--machine", "m1")
	if code != 0 || !strings.Contains(out, "m1: TRUSTED") {
		t.Fatalf("attest --server: exit %d\n%s%s", code, out, e)
	}
	rc.mu.Lock()
	nonce, body := rc.nonces[len(rc.nonces)-1], rc.bodies[len(rc.bodies)-1]
	rc.mu.Unlock()
	bf := filepath.Join(dir, "sent.zip")
	if err := os.WriteFile(bf, body, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Open(ctx, bf)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got := hex.EncodeToString(b.Nonce); got != nonce || nonce == "" {
		t.Errorf("the bundle sent answers nonce %s, the challenge was %s", got, nonce)
	}
	if off := runtimeOffset(t, body); off != 0 {
		t.Errorf("the first bundle carries a tail from %d: the machine had no state", off)
	}
	// The machine attested: the next bundle carries only the tail of the
	// daemon's runtime log past the verifier's monitor state.
	extendVia(t, ctx, sock, 1)
	if code, out, e := fleetCLI(t, ctx, "--device", noDevice, "attest", "--server", sock, "--to", proxy.URL, "--machine", "m1"); code != 0 || !strings.Contains(out, "m1: TRUSTED") {
		t.Fatalf("second attest: exit %d\n%s%s", code, out, e)
	}
	rc.mu.Lock()
	tailBody, view := rc.bodies[len(rc.bodies)-1], rc.views[len(rc.views)-1]
	rc.mu.Unlock()
	if off := runtimeOffset(t, tailBody); off == 0 {
		t.Errorf("second bundle: its runtime log starts at byte %d: want a tail", off)
	}
	// A stale view of the state (the one before the second bundle): the
	// tail is refused 409 and attest sends the whole logs, trusted.
	extendVia(t, ctx, sock, 2)
	rc.mu.Lock()
	rc.stale = view
	rc.mu.Unlock()
	if code, out, e := fleetCLI(t, ctx, "--device", noDevice, "attest", "--server", sock, "--to", proxy.URL, "--machine", "m1"); code != 0 || !strings.Contains(out, "m1: TRUSTED") {
		t.Fatalf("attest from a stale state: exit %d\n%s%s", code, out, e)
	}
	rc.mu.Lock()
	statuses, last := rc.statuses[len(rc.statuses)-2:], rc.bodies[len(rc.bodies)-1]
	rc.stale = nil
	rc.mu.Unlock()
	if statuses[0] != http.StatusConflict || statuses[1] != 200 || runtimeOffset(t, last) != 0 {
		t.Errorf("attest from a stale state: statuses %v, last bundle's runtime log from byte %d: want 409 then 200 with the whole log", statuses, runtimeOffset(t, last))
	}
	// A since that is no since file (a negative offset): attest warns and
	// sends the whole logs.
	var doc map[string]any
	if err := json.Unmarshal(view, &doc); err != nil {
		t.Fatal(err)
	}
	doc["since"].(map[string]any)["runtime"].([]any)[0].(map[string]any)["offset"] = -5
	bad, _ := json.Marshal(doc)
	rc.mu.Lock()
	rc.stale = bad
	rc.mu.Unlock()
	extendVia(t, ctx, sock, 3)
	if code, out, e := fleetCLI(t, ctx, "--device", noDevice, "attest", "--server", sock, "--to", proxy.URL, "--machine", "m1"); code != 0 || !strings.Contains(out, "m1: TRUSTED") || !strings.Contains(e, "sending the whole logs") {
		t.Fatalf("attest with a bad since: exit %d\n%s%s", code, out, e)
	}
	rc.mu.Lock()
	last = rc.bodies[len(rc.bodies)-1]
	rc.stale = nil
	rc.mu.Unlock()
	if off := runtimeOffset(t, last); off != 0 {
		t.Errorf("attest with a bad since sent a tail from %d", off)
	}
	// CCMR_SERVER names the daemon as --server does.
	var outb, errb lockedBuffer
	code = run(ctx, []string{"--device", noDevice, "attest", "--to", proxy.URL, "--machine", "m1"},
		env{stdin: strings.NewReader(""), stdout: &outb, stderr: &errb, getenv: func(k string) string {
			if k == "CCMR_SERVER" {
				return sock
			}
			return ""
		}})
	if code != 0 || !strings.Contains(outb.String(), "m1: TRUSTED") {
		t.Fatalf("attest with CCMR_SERVER: exit %d\n%s%s", code, outb.String(), errb.String())
	}
	// Flags that choose what a bundle carries are the daemon's.
	if code, _, e := fleetCLI(t, ctx, "attest", "--server", sock, "--to", proxy.URL, "--machine", "m1", "--ima-log", ""); code != 2 {
		t.Errorf("attest --server --ima-log: exit %d, want 2: %s", code, e)
	}
	// A daemon that is not there: an error, never a direct quote.
	if code, _, _ := fleetCLI(t, ctx, "--device", dev, "attest", "--server", filepath.Join(dir, "none.sock"), "--to", proxy.URL, "--machine", "m1"); code == 0 {
		t.Error("attest through a missing daemon succeeded")
	}
}

// extendVia extends mr_app.x through the daemon with the n-th event.
func extendVia(t *testing.T, ctx context.Context, sock string, n int) {
	t.Helper()
	d := sha512.Sum384([]byte{byte(n)})
	if code, _, e := fleetCLI(t, ctx, "extend", "mr_app.x", "--server", sock, "--digest", "sha384:"+hex.EncodeToString(d[:])); code != 0 {
		t.Fatalf("extend through the daemon: %d %s", code, e)
	}
}

// runtimeOffset is where a bundle's runtime log starts in the whole log
// (0: whole, >0: a tail).
func runtimeOffset(t *testing.T, body []byte) int64 {
	t.Helper()
	f := filepath.Join(t.TempDir(), "b.zip")
	if err := os.WriteFile(f, body, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Open(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := range b.Logs {
		if b.Logs[i].Format == "runtime" {
			return b.Logs[i].Offset
		}
	}
	t.Fatal("no runtime log in the bundle")
	return 0
}

// `ccmr verifier enroll` of TDX and SNP machines from the corpus's real
// evidence: the identity is read from a raw report, a raw quote or a
// bundle and printed; what names no hardware, the wrong platform's
// evidence, a key, or trust flags of the other platform are exit 2; the
// same machine enrolled from another chip starts anew.
func TestVerifierEnrollHardware(t *testing.T) {
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "fleet.db")
	ctx := context.Background()
	snp := corpus.Path(t, "go-sev-guest/attestation.bin")
	snpOther := corpus.Path(t, "trustee/snp/test-report.bin")
	vlek := corpus.Path(t, "trustee/snp/test-vlek-report.bin")
	quote := corpus.Read(t, "dcap-qvl/tdx_quote")
	var buf bytes.Buffer
	if err := (&bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTDX, Nonce: []byte{1}, Evidence: bundle.Evidence{Report: quote}}).Write(&buf); err != nil {
		t.Fatal(err)
	}
	tdxBundle := filepath.Join(dir, "tdx.json")
	if err := os.WriteFile(tdxBundle, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	enroll := func(args ...string) (int, string, string) {
		return fleetCLI(t, ctx, append([]string{"verifier", "enroll", "--db", db}, args...)...)
	}
	code, out, e := enroll("--machine", "s1", "--platform", "snp", "--from", snp)
	if code != 0 || !strings.Contains(out, "s1: snp-chip-id:3ac3fe21e13fb099") {
		t.Fatalf("enroll snp: %d %s%s", code, out, e)
	}
	code, out, e = enroll("--machine", "t1", "--platform", "tdx", "--from", tdxBundle, "--allow-missing-collateral", "--allow-tcb", "SWHardeningNeeded")
	if code != 0 || !strings.Contains(out, "t1: tdx-ppid:811dca2a26b952e85bb6448b097ba4fd") {
		t.Fatalf("enroll tdx from a bundle: %d %s%s", code, out, e)
	}
	if code, out, e := enroll("--machine", "t2", "--platform", "tdx", "--hw-id", "811DCA2A26B952E85BB6448B097BA4FD"); code != 0 || !strings.Contains(out, "tdx-ppid:811dca2a") {
		t.Fatalf("enroll tdx --hw-id: %d %s%s", code, out, e)
	}
	for _, args := range [][]string{
		{"--platform", "snp", "--from", vlek},                                     // CHIP_ID zero
		{"--platform", "tdx", "--from", snp},                                      // an SNP report as a quote
		{"--platform", "snp", "--from", tdxBundle},                                // a TDX bundle
		{"--platform", "snp"},                                                     // pins nothing
		{"--platform", "snp", "--from", snp, "--hw-id", strings.Repeat("ab", 64)}, // two pins
		{"--platform", "tdx", "--hw-id", "abcd"},                                  // no PPID
		{"--platform", "tdx", "--from", tdxBundle, "--key", snp},                  // a key for TDX
		{"--platform", "tdx", "--from", tdxBundle, "--snp-crl", snp},              // SNP trust for TDX
		{"--platform", "snp", "--from", snp, "--allow-missing-collateral"},        // TDX trust for SNP
		{"--platform", "snp", "--from", snp, "--snp-crl", snp},                    // a CRL that is none
		{"--platform", "tdx", "--from", tdxBundle, "--allow-tcb", "Anything"},     // no such status
		{"--platform", "sim", "--from", snp},                                      // hardware for a sim
	} {
		if code, _, e := enroll(append([]string{"--machine", "x"}, args...)...); code != 2 {
			t.Errorf("enroll %v: exit %d, want 2 (%s)", args, code, e)
		}
	}
	st, err := fleet.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if ms, err := st.Machines(ctx); err != nil || len(ms) != 3 {
		t.Fatalf("machines after refused enrolments: %+v %v", ms, err)
	}
	m, _, err := st.Machine(ctx, "t1")
	if err != nil || !strings.Contains(string(m.Trust), `"allow_missing_collateral":true`) || !strings.Contains(string(m.Trust), "SWHardeningNeeded") {
		t.Fatalf("t1's stored trust: %s %v", m.Trust, err)
	}
	// Enrolled again from another chip: another machine, version moved on.
	if code, _, e := enroll("--machine", "s1", "--platform", "snp", "--from", snpOther); code != 0 {
		t.Fatalf("enroll s1 from chip B: %d %s", code, e)
	}
	if m, _, err := st.Machine(ctx, "s1"); err != nil || !strings.HasPrefix(m.Identity, "snp-chip-id:c38427a3") || m.Version != 1 {
		t.Fatalf("s1 after enrolment from chip B: %+v %v", m, err)
	}
}
