package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Forges (red team 5): an EAR whose executables claim is 2, "only approved
// executables loaded during and after boot", for a run whose verdict says
// the runtime register's history was never judged. rtmr3 is extended
// outside any log ("evil"), the runtime log then starts with an INIT at
// the value after it, and a policy pins the virtual register mr_ctr.app;
// verify --accept-unverified-history says TRUSTED (weakened: rtmr3:
// history before INIT … never judged), and the token's status is warning,
// but a relying party that reads the claim read an approved run time.
// Rule: a claim ccmr cannot support is left out (docs/interop.md): the
// executables claim is made only when layers 1-3 pass unweakened.
func TestRedteam5_EARExecutablesWithUnjudgedHistory(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"CCMR_DEVICE": "sim:" + filepath.Join(dir, "sim"), "XDG_STATE_HOME": filepath.Join(dir, "state")}
	evil, msg := filepath.Join(dir, "evil.txt"), filepath.Join(dir, "msg.txt")
	os.WriteFile(evil, []byte("evil\n"), 0o600)
	os.WriteFile(msg, []byte("msg\n"), 0o600)
	sim, b := filepath.Join(dir, "sim.pem"), filepath.Join(dir, "b.ccmr")
	for _, args := range [][]string{
		{"key", "-O", sim},
		{"extend", "rtmr3", "--data", evil},
		{"extend", "mr_ctr.app", "--data", msg},
		{"quote", "--nonce", "0a", "-O", b},
	} {
		if _, stderr, code := ccmrRun(t, env, args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
	}
	out, stderr, code := ccmrRun(t, env, "read", "mr_ctr.app")
	f := strings.Fields(out)
	if code != 0 || len(f) != 2 {
		t.Fatalf("read: exit %d: %s%s", code, out, stderr)
	}
	pol := filepath.Join(dir, "policy.json")
	os.WriteFile(pol, []byte(`{"registers": {"mr_ctr.app": "`+f[1]+`"}}`), 0o600)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	key := filepath.Join(dir, "ear.pem")
	writeKey(t, key, p384)
	tokFile := filepath.Join(dir, "ear.jwt")
	out, stderr, code = ccmrRun(t, env, "verify", b, "--allow-sim", "--trust-sim-key", sim, "--nonce", "0a",
		"--accept-unverified-history", "--policy", pol, "--ear-key", key, "--ear-out", tokFile)
	if code != 0 || !strings.Contains(out, "TRUSTED (weakened: rtmr3: history before INIT") {
		t.Fatalf("exit %d: %s%s", code, out, stderr)
	}
	tok, err := os.ReadFile(tokFile)
	if err != nil {
		t.Fatal(err)
	}
	sub := checkToken(t, string(tok), &p384.PublicKey, "ES384")
	tv := sub["ear.trustworthiness-vector"].(map[string]any)
	if sub["ear.status"] != "warning" {
		t.Fatalf("status %v, want warning", sub["ear.status"])
	}
	if e, ok := tv["executables"]; ok {
		t.Fatalf("executables claimed (%v) for a run time whose history was never judged: %v", e, tv)
	}

	// Without the unlogged extend the same policy approves the run time.
	env = map[string]string{"CCMR_DEVICE": "sim:" + filepath.Join(dir, "sim2"), "XDG_STATE_HOME": filepath.Join(dir, "state2")}
	for _, args := range [][]string{
		{"key", "-O", sim},
		{"extend", "mr_ctr.app", "--data", msg},
		{"quote", "--nonce", "0a", "-O", b},
	} {
		if _, stderr, code := ccmrRun(t, env, args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
	}
	out, stderr, code = ccmrRun(t, env, "verify", b, "--allow-sim", "--trust-sim-key", sim, "--nonce", "0a", "--policy", pol, "--ear-key", key)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	sub = checkToken(t, out, &p384.PublicKey, "ES384")
	if tv := sub["ear.trustworthiness-vector"].(map[string]any); sub["ear.status"] != "affirming" || tv["executables"] != float64(2) {
		t.Fatalf("status %v vector %v, want affirming with executables 2", sub["ear.status"], tv)
	}
}
