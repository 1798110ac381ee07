package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
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
