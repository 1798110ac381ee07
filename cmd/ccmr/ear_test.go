package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/ccmr-dev/ccmr/verifier/ear"
)

// earSetup makes a sim device with a key file and a bundle quoted with
// nonce 0a, and returns the environment and folder.
func earSetup(t *testing.T) (map[string]string, string) {
	t.Helper()
	dir := t.TempDir()
	env := map[string]string{"CCMR_DEVICE": "sim:" + filepath.Join(dir, "sim"), "XDG_STATE_HOME": filepath.Join(dir, "state")}
	for _, args := range [][]string{
		{"key", "-O", filepath.Join(dir, "sim.pem")},
		{"quote", "--nonce", "0a", "-O", filepath.Join(dir, "b.ccmr")},
		{"quote", "-O", filepath.Join(dir, "nononce.ccmr")},
	} {
		if _, stderr, code := ccmrRun(t, env, args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
	}
	return env, dir
}

func writeKey(t *testing.T, path string, k any) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkToken verifies tok with golang-jwt (not the go-jose that signed
// it) and returns the sim submodule.
func checkToken(t *testing.T, tok string, pub any, alg string) map[string]any {
	t.Helper()
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(strings.TrimSpace(tok), claims, func(*jwt.Token) (any, error) { return pub, nil },
		jwt.WithValidMethods([]string{alg}), jwt.WithIssuedAt()); err != nil {
		t.Fatalf("token does not verify: %v\n%s", err, tok)
	}
	if claims["eat_profile"] != ear.Profile {
		t.Fatalf("claims %v", claims)
	}
	sub, ok := claims["submods"].(map[string]any)["sim"].(map[string]any)
	if !ok {
		t.Fatalf("no sim submodule: %v", claims)
	}
	return sub
}

// verify --ear-key writes the verdict as a signed EAR: on standard output
// in place of the report, or to --ear-out beside it; TRUSTED is affirming,
// a weakened TRUSTED warning, NOT TRUSTED contraindicated (exit 1 still).
func TestVerifyEAR(t *testing.T) {
	env, dir := earSetup(t)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	key := filepath.Join(dir, "ear.pem")
	writeKey(t, key, p384)
	b := filepath.Join(dir, "b.ccmr")
	sim := filepath.Join(dir, "sim.pem")

	out, stderr, code := ccmrRun(t, env, "verify", b, "--allow-sim", "--trust-sim-key", sim, "--nonce", "0a", "--ear-key", key)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if strings.Count(out, "\n") != 1 || strings.Count(out, ".") != 2 || strings.Contains(out, "TRUSTED") {
		t.Fatalf("stdout is not one token: %q", out)
	}
	sub := checkToken(t, out, &p384.PublicKey, "ES384")
	if sub["ear.status"] != "affirming" {
		t.Fatalf("status %v", sub["ear.status"])
	}

	// Weakened (no nonce) with the report on standard output and the
	// token in a file.
	tokFile := filepath.Join(dir, "ear.jwt")
	out, stderr, code = ccmrRun(t, env, "verify", filepath.Join(dir, "nononce.ccmr"), "--allow-sim", "--trust-sim-key", sim, "--ear-key", key, "--ear-out", tokFile)
	if code != 0 || !strings.Contains(out, "TRUSTED (weakened") {
		t.Fatalf("exit %d: %s%s", code, out, stderr)
	}
	tok, err := os.ReadFile(tokFile)
	if err != nil {
		t.Fatal(err)
	}
	if sub := checkToken(t, string(tok), &p384.PublicKey, "ES384"); sub["ear.status"] != "warning" {
		t.Fatalf("status %v, want warning", sub["ear.status"])
	}

	// NOT TRUSTED (another sim key pinned): exit 1, contraindicated.
	other := filepath.Join(dir, "other.pem")
	if _, stderr, code := ccmrRun(t, map[string]string{"CCMR_DEVICE": "sim:" + filepath.Join(dir, "sim2")}, "key", "-O", other); code != 0 {
		t.Fatal(stderr)
	}
	out, _, code = ccmrRun(t, env, "verify", b, "--allow-sim", "--trust-sim-key", other, "--nonce", "0a", "--ear-key", key)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	sub = checkToken(t, out, &p384.PublicKey, "ES384")
	tv := sub["ear.trustworthiness-vector"].(map[string]any)
	if sub["ear.status"] != "contraindicated" || tv["instance-identity"].(float64) != 99 {
		t.Fatalf("status %v vector %v", sub["ear.status"], tv)
	}
}

// Unusable EAR arguments are exit 2 before anything is verified, and
// write nothing: a key EAR cannot sign with, --ear-out without a key,
// -o json with the token on standard output.
func TestVerifyEARRefused(t *testing.T) {
	env, dir := earSetup(t)
	b := filepath.Join(dir, "b.ccmr")
	sim := filepath.Join(dir, "sim.pem")
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaFile := filepath.Join(dir, "rsa.pem")
	writeKey(t, rsaFile, rsaKey)
	tokFile := filepath.Join(dir, "ear.jwt")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--ear-key", rsaFile, "--ear-out", tokFile}, "*rsa.PrivateKey key"},
		{[]string{"--ear-key", sim, "--ear-out", tokFile}, "PUBLIC KEY"},
		{[]string{"--ear-key", filepath.Join(dir, "absent.pem"), "--ear-out", tokFile}, "absent.pem"},
		{[]string{"--ear-out", tokFile}, "--ear-out needs --ear-key"},
		{[]string{"-o", "json", "--ear-key", rsaFile}, "-o json"},
	} {
		args := append([]string{"verify", b, "--allow-sim", "--trust-sim-key", sim, "--nonce", "0a"}, tc.args...)
		out, stderr, code := ccmrRun(t, env, args...)
		if code != 2 || !strings.Contains(stderr, tc.want) || out != "" {
			t.Fatalf("%v: exit %d, stdout %q, stderr %q; want exit 2 naming %q", tc.args, code, out, stderr, tc.want)
		}
		if _, err := os.Stat(tokFile); !os.IsNotExist(err) {
			t.Fatalf("%v: %s written", tc.args, tokFile)
		}
	}
}

// A key made by openssl (ecparam -genkey: EC PARAMETERS, then EC PRIVATE
// KEY) signs; an Ed25519 key signs EdDSA.
func TestVerifyEAROpenSSLAndEd25519(t *testing.T) {
	env, dir := earSetup(t)
	b := filepath.Join(dir, "b.ccmr")
	sim := filepath.Join(dir, "sim.pem")
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	edFile := filepath.Join(dir, "ed.pem")
	writeKey(t, edFile, ed)
	out, stderr, code := ccmrRun(t, env, "verify", b, "--allow-sim", "--trust-sim-key", sim, "--nonce", "0a", "--ear-key", edFile)
	if code != 0 {
		t.Fatal(stderr)
	}
	checkToken(t, out, ed.Public(), "EdDSA")

	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("no openssl")
	}
	osl := filepath.Join(dir, "osl.pem")
	if o, err := exec.Command("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-out", osl).CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v %s", err, o)
	}
	pemb, _ := os.ReadFile(osl)
	if !strings.Contains(string(pemb), "EC PARAMETERS") {
		t.Fatalf("openssl wrote no EC PARAMETERS block:\n%s", pemb)
	}
	out, stderr, code = ccmrRun(t, env, "verify", b, "--allow-sim", "--trust-sim-key", sim, "--nonce", "0a", "--ear-key", osl)
	if code != 0 {
		t.Fatal(stderr)
	}
	k, err := ear.ParseKey(pemb)
	if err != nil {
		t.Fatal(err)
	}
	checkToken(t, out, k.Public(), "ES256")
}

// nodeVerify is a verifier in another language: Node.js with the npm
// package jose (panva/jose), resolved from the folder CCMR_JOSE_DIR.
const nodeVerify = `import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { readFileSync } from 'node:fs';
const [dir, tokFile, pubFile, alg] = process.argv.slice(2);
const req = createRequire(dir + '/');
const jose = await import(pathToFileURL(req.resolve('jose')).href);
const key = await jose.importSPKI(readFileSync(pubFile, 'utf8'), alg);
const { payload } = await jose.jwtVerify(readFileSync(tokFile, 'utf8').trim(), key, { algorithms: [alg], typ: 'JWT' });
process.stdout.write(JSON.stringify(payload));
`

// The token verifies with npm's jose under Node.js, and a tampered one does
// not. It runs where CCMR_JOSE_DIR names a folder holding node_modules/jose
// (npm install jose there; docs/interop.md), and is skipped elsewhere.
func TestVerifyEARNodeJose(t *testing.T) {
	joseDir := os.Getenv("CCMR_JOSE_DIR")
	if joseDir == "" {
		t.Skip("CCMR_JOSE_DIR not set: no npm jose to verify with")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("CCMR_JOSE_DIR is set but there is no node: %v", err)
	}
	env, dir := earSetup(t)
	script := filepath.Join(dir, "verify.mjs")
	if err := os.WriteFile(script, []byte(nodeVerify), 0o600); err != nil {
		t.Fatal(err)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		alg  string
		priv any
		pub  any
	}{{"ES256", p256, &p256.PublicKey}, {"EdDSA", ed, ed.Public()}} {
		keyFile := filepath.Join(dir, tc.alg+".pem")
		writeKey(t, keyFile, tc.priv)
		spki, err := x509.MarshalPKIXPublicKey(tc.pub)
		if err != nil {
			t.Fatal(err)
		}
		pubFile := filepath.Join(dir, tc.alg+".pub")
		if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}), 0o600); err != nil {
			t.Fatal(err)
		}
		tokFile := filepath.Join(dir, tc.alg+".jwt")
		if _, stderr, code := ccmrRun(t, env, "verify", filepath.Join(dir, "b.ccmr"), "--allow-sim", "--trust-sim-key", filepath.Join(dir, "sim.pem"),
			"--nonce", "0a", "--ear-key", keyFile, "--ear-out", tokFile); code != 0 {
			t.Fatal(stderr)
		}
		out, err := exec.Command("node", script, joseDir, tokFile, pubFile, tc.alg).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: node jose does not verify the token: %v\n%s", tc.alg, err, out)
		}
		var claims struct {
			Submods map[string]map[string]any `json:"submods"`
		}
		if err := json.Unmarshal(out, &claims); err != nil || claims.Submods["sim"]["ear.status"] != "affirming" {
			t.Fatalf("%s: node jose read %s (%v)", tc.alg, out, err)
		}
		// The same signature over a payload that says warning.
		tok, _ := os.ReadFile(tokFile)
		parts := strings.Split(strings.TrimSpace(string(tok)), ".")
		pl, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		changed := strings.Replace(string(pl), `"ear.status":"affirming"`, `"ear.status":"warning"`, 1)
		if changed == string(pl) {
			t.Fatalf("no affirming status in %s", pl)
		}
		swapped := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(changed)) + "." + parts[2]
		if err := os.WriteFile(tokFile, []byte(swapped), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("node", script, joseDir, tokFile, pubFile, tc.alg).CombinedOutput(); err == nil || !strings.Contains(string(out), "signature verification failed") {
			t.Fatalf("%s: node jose on a tampered signature: %v %s", tc.alg, err, out)
		}
	}
}

// Veraison's own EAR verifier, arc (github.com/veraison/ear's command),
// verifies the token and re-reads its claims with Veraison's library (which
// checks the profile, the status, the vector's values, eat_nonce's length),
// for each verdict; a payload changed under the same signature is refused.
// It runs where CCMR_ARC names an arc binary (docs/interop.md), and is
// skipped elsewhere: the module proxy does not serve Veraison's module.
func TestVerifyEARArc(t *testing.T) {
	arc := os.Getenv("CCMR_ARC")
	if arc == "" {
		t.Skip("CCMR_ARC not set: no Veraison arc to verify with")
	}
	env, dir := earSetup(t)
	b := filepath.Join(dir, "b.ccmr")
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key := filepath.Join(dir, "ear.pem")
	writeKey(t, key, p256)
	jwk, err := (&jose.JSONWebKey{Key: &p256.PublicKey}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	pkey := filepath.Join(dir, "pkey.json")
	if err := os.WriteFile(pkey, jwk, 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.pem")
	if _, stderr, code := ccmrRun(t, map[string]string{"CCMR_DEVICE": "sim:" + filepath.Join(dir, "sim2")}, "key", "-O", other); code != 0 {
		t.Fatal(stderr)
	}
	nonce := "000102030405060708090a0b0c0d0e0f"
	if _, stderr, code := ccmrRun(t, env, "quote", "--nonce", nonce, "-O", b); code != 0 {
		t.Fatal(stderr)
	}
	for _, tc := range []struct {
		bundle, simKey, nonce, status string
		code                          int
	}{
		{b, "sim.pem", nonce, "affirming", 0},
		{filepath.Join(dir, "nononce.ccmr"), "sim.pem", "", "warning", 0},
		{b, "other.pem", nonce, "contraindicated", 1},
	} {
		tok := filepath.Join(dir, tc.status+".jwt")
		args := []string{"verify", tc.bundle, "--allow-sim", "--trust-sim-key", filepath.Join(dir, tc.simKey), "--ear-key", key, "--ear-out", tok}
		if tc.nonce != "" {
			args = append(args, "--nonce", tc.nonce)
		}
		if _, stderr, code := ccmrRun(t, env, args...); code != tc.code {
			t.Fatalf("%s: exit %d: %s", tc.status, code, stderr)
		}
		out, err := exec.Command(arc, "verify", "-p", pkey, "-a", "ES256", tok).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "signature successfully verified") || !strings.Contains(string(out), `"ear.status": "`+tc.status+`"`) {
			t.Fatalf("%s: arc: %v\n%s", tc.status, err, out)
		}
		// The nonce is stated only where layer 0 proved it.
		if want := tc.code == 0 && tc.nonce != ""; strings.Contains(string(out), `"eat_nonce": "AAECAwQFBgcICQoLDA0ODw"`) != want {
			t.Fatalf("%s: arc shows eat_nonce: %v, want %v:\n%s", tc.status, !want, want, out)
		}
	}
	// The affirming token's payload made to say warning.
	raw, err := os.ReadFile(filepath.Join(dir, "affirming.jwt"))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(strings.TrimSpace(string(raw)), ".")
	pl, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(pl), `"ear.status":"affirming"`, `"ear.status":"warning"`, 1)
	bad := filepath.Join(dir, "bad.jwt")
	if err := os.WriteFile(bad, []byte(parts[0]+"."+base64.RawURLEncoding.EncodeToString([]byte(changed))+"."+parts[2]), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(arc, "verify", "-p", pkey, "-a", "ES256", bad).CombinedOutput(); err == nil || !strings.Contains(string(out), "signature verification failed") {
		t.Fatalf("arc on a changed payload: %v\n%s", err, out)
	}
}
