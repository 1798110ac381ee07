package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ccmr-dev/ccmr/fleet"
	"github.com/ccmr-dev/ccmr/verifier/ear"
)

// Red team, round 7 (fleet): `ccmr attest` against a verifier whose answers
// are not about the bundle it posted.

// fakeVerifier answers attest as a fleet verifier would, with a chosen
// answer to the evidence (status and body), and counts the posts.
type fakeVerifier struct {
	mu     sync.Mutex
	status []int
	answer []string
	posts  int
}

func (f *fakeVerifier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.URL.Path == "/v1/challenge":
		io.WriteString(w, `{"nonce":"`+strings.Repeat("ab", 32)+`","expires":"2099-01-01T00:00:00Z"}`)
	case strings.HasSuffix(r.URL.Path, "/evidence"):
		f.mu.Lock()
		i := min(f.posts, len(f.answer)-1)
		f.posts++
		f.mu.Unlock()
		w.WriteHeader(f.status[i])
		io.WriteString(w, f.answer[i])
	default:
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":"unknown machine"}`)
	}
}

// An answer to the bundle attest posted for machine m1 that is not a
// fresh verdict on it: a verdict naming another machine (a proxy or a
// replica answering for another request), or a replayed verdict (a bundle
// answering a fresh challenge cannot have been judged before: the answer
// is an earlier one). attest exited 0, "TRUSTED", on both; it refuses them
// (exit 1). Held: trusted false with a TRUSTED line, two JSON values,
// trailing bytes, 409 on the retry too, 403: all exit 1; a plain trusted
// answer for m1: exit 0.
func TestRedteam7f_AttestAnswerNotAboutItsBundle(t *testing.T) {
	dir := t.TempDir()
	dev := "sim:" + filepath.Join(dir, "sim")
	ctx := context.Background()
	if code, _, e := fleetCLI(t, ctx, "--device", dev, "extend", "mr_app.y", "--digest", "sha384:"+strings.Repeat("cd", 48)); code != 0 {
		t.Fatalf("extend: %d %s", code, e)
	}
	for _, c := range []struct {
		what   string
		status []int
		answer []string
		want   int
	}{
		{"a trusted verdict of m1", []int{200}, []string{`{"machine":"m1","trusted":true,"verdict":"TRUSTED"}`}, 0},
		{"a trusted verdict of another machine", []int{200}, []string{`{"machine":"m2","trusted":true,"verdict":"TRUSTED"}`}, 1},
		{"a verdict naming no machine", []int{200}, []string{`{"trusted":true,"verdict":"TRUSTED"}`}, 1},
		{"a replayed trusted verdict", []int{200}, []string{`{"machine":"m1","trusted":true,"replayed":true,"verdict":"TRUSTED"}`}, 1},
		{"trusted false, a TRUSTED line", []int{200}, []string{`{"machine":"m1","trusted":false,"verdict":"TRUSTED"}`}, 1},
		{"two JSON values", []int{200}, []string{`{"machine":"m1","trusted":false} {"machine":"m1","trusted":true}`}, 1},
		{"trailing bytes", []int{200}, []string{`{"machine":"m1","trusted":true}x`}, 1},
		{"409, then 409", []int{409, 409}, []string{`{"error":"x"}`, `{"error":"x"}`}, 1},
		{"403", []int{403}, []string{`{"error":"nonce"}`}, 1},
	} {
		fv := &fakeVerifier{status: c.status, answer: c.answer}
		srv := httptest.NewServer(fv)
		code, out, e := fleetCLI(t, ctx, "--device", dev, "attest", "--to", srv.URL, "--machine", "m1", "--ima-log", "", "--systemd-log", "")
		srv.Close()
		if code != c.want {
			t.Errorf("%s: exit %d, want %d\n%s%s", c.what, code, c.want, out, e)
		}
	}
}

// rewriter passes attest's requests to the verifier and gives back its
// evidence answers changed by edit (a man in the middle on the plain-HTTP
// channel attest uses); it keeps the last real answer.
type rewriter struct {
	target string
	mu     sync.Mutex
	edit   func(real fleet.Result) any
	last   fleet.Result
}

func (rw *rewriter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, rw.target+r.URL.Path, bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	w.Header().Set("Content-Type", "application/json")
	if strings.HasSuffix(r.URL.Path, "/evidence") && resp.StatusCode == 200 {
		var res fleet.Result
		json.Unmarshal(answer, &res)
		rw.mu.Lock()
		edit := rw.edit
		rw.last = res
		rw.mu.Unlock()
		if edit != nil {
			answer, _ = json.Marshal(edit(res))
		}
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(answer)
}

// A man in the middle between attest and the verifier (plain HTTP, as the
// docs' example) answered "trusted" for a machine the verifier judged NOT
// TRUSTED, and attest exited 0: it believed whatever came back. With the
// verifier's EAR public key (--ear-pub), attest takes only an answer whose
// EAR that key signed, on this challenge's nonce and this machine, and
// whose status agrees with it: the flipped answer, an answer without a
// token, an earlier answer's token, and a token re-signed by another key
// are exit 1; the verifier's own answers are taken as they are (0 trusted,
// 1 not).
func TestRedteam7f_AttestEARAgainstManInTheMiddle(t *testing.T) {
	dir := t.TempDir()
	dev := "sim:" + filepath.Join(dir, "sim")
	db := "sqlite:" + filepath.Join(dir, "fleet.db")
	ctx := context.Background()
	keyFile := filepath.Join(dir, "key.pem")
	if code, _, e := fleetCLI(t, ctx, "--device", dev, "key", "-O", keyFile); code != 0 {
		t.Fatalf("key: %d %s", code, e)
	}
	groups := filepath.Join(dir, "groups")
	os.Mkdir(groups, 0o700)
	os.WriteFile(filepath.Join(groups, "good.json"), []byte(`{}`), 0o600)
	os.WriteFile(filepath.Join(groups, "bad.json"), []byte(`{"registers": {"mr_app": "sha384:`+strings.Repeat("00", 48)+`"}}`), 0o600)
	for m, g := range map[string]string{"m1": "good", "m2": "bad"} {
		if code, _, e := fleetCLI(t, ctx, "verifier", "enroll", "--db", db, "--machine", m, "--group", g, "--platform", "sim", "--key", keyFile); code != 0 {
			t.Fatalf("enroll %s: %d %s", m, code, e)
		}
	}
	// The verifier's EAR key, and another.
	earKey, earPub := filepath.Join(dir, "ear.pem"), filepath.Join(dir, "ear.pub")
	writeKeyPair(t, earKey, earPub)
	otherKey := filepath.Join(dir, "other.pem")
	writeKeyPair(t, otherKey, filepath.Join(dir, "other.pub"))
	url, _ := startVerifier(t, ctx, db, "--groups", groups, "--ear-key", earKey)
	rw := &rewriter{target: url}
	proxy := httptest.NewServer(rw)
	defer proxy.Close()
	if code, _, e := fleetCLI(t, ctx, "--device", dev, "extend", "mr_app.y", "--digest", "sha384:"+strings.Repeat("cd", 48)); code != 0 {
		t.Fatalf("extend: %d %s", code, e)
	}
	attest := func(machine string, pub bool) int {
		args := []string{"--device", dev, "attest", "--whole", "--to", proxy.URL, "--machine", machine, "--ima-log", "", "--systemd-log", ""}
		if pub {
			args = append(args, "--ear-pub", earPub)
		}
		code, _, _ := fleetCLI(t, ctx, args...)
		return code
	}
	// The verifier's own answers. Without --ear-pub over plain HTTP the
	// verdict is printed with a warning that nothing authenticated it;
	// with it, without.
	warn := "the verdict is not authenticated"
	if code, _, e := fleetCLI(t, ctx, "--device", dev, "attest", "--whole", "--to", proxy.URL, "--machine", "m1", "--ima-log", "", "--systemd-log", ""); code != 0 || !strings.Contains(e, warn) {
		t.Fatalf("m1 over plain HTTP without --ear-pub: exit %d, stderr %q: want 0 and the warning", code, e)
	}
	if code, _, e := fleetCLI(t, ctx, "--device", dev, "attest", "--whole", "--to", proxy.URL, "--machine", "m1", "--ima-log", "", "--systemd-log", "", "--ear-pub", earPub); code != 0 || strings.Contains(e, warn) {
		t.Fatalf("m1 with --ear-pub: exit %d, stderr %q: want 0 and no warning", code, e)
	}
	if code := attest("m1", true); code != 0 {
		t.Fatalf("m1, trusted, its EAR checked: exit %d", code)
	}
	rw.mu.Lock()
	old := rw.last
	rw.mu.Unlock()
	if code := attest("m2", true); code != 1 {
		t.Fatalf("m2, not trusted, its EAR checked: exit %d", code)
	}
	flip := func(r fleet.Result) any { r.Trusted, r.Verdict = true, "TRUSTED"; return r }
	other, err := os.ReadFile(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := ear.ParseKey(other)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what string
		edit func(fleet.Result) any
	}{
		{"m2's NOT TRUSTED answer flipped to trusted", flip},
		{"flipped, and no EAR", func(r fleet.Result) any { r.EAR = ""; return flip(r) }},
		{"flipped, with m1's earlier trusted EAR", func(r fleet.Result) any { r.EAR = old.EAR; return flip(r) }},
		{"flipped, its EAR re-signed by another key as affirming", func(r fleet.Result) any {
			var claims ear.Result
			parts := strings.Split(r.EAR, ".")
			raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
			json.Unmarshal(raw, &claims)
			for _, a := range claims.Submods {
				a.Status, a.Report.Trusted = ear.StatusAffirming, true
			}
			r.EAR, _ = ear.Sign(&claims, ok)
			return flip(r)
		}},
	} {
		rw.mu.Lock()
		rw.edit = c.edit
		rw.mu.Unlock()
		if code := attest("m2", true); code != 1 {
			t.Errorf("%s, --ear-pub: exit %d, want 1", c.what, code)
		}
	}
	// Without --ear-pub attest cannot tell: the flipped answer is exit 0.
	rw.mu.Lock()
	rw.edit = flip
	rw.mu.Unlock()
	if code := attest("m2", false); code != 0 {
		t.Errorf("the flipped answer without --ear-pub: exit %d (the test shows nothing)", code)
	}
}

// writeKeyPair writes a P-256 private key (PKCS #8) and its public key, PEM.
func writeKeyPair(t *testing.T, priv, pub string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pder, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pder}), 0o600); err != nil {
		t.Fatal(err)
	}
}
