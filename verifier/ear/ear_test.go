package ear_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/verifier"
	"github.com/ccmr-dev/ccmr/verifier/ear"
)

// simCase is a sim device's evidence and the options that trust it.
type simCase struct {
	b    *bundle.Bundle
	opts verifier.Options
}

func newSim(t *testing.T, nonce []byte) simCase {
	t.Helper()
	ctx := context.Background()
	dev, err := sim.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ev, err := dev.Attest(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	key, err := dev.PublicKeyPEM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return simCase{b: bundle.New(ev, nil, nil), opts: verifier.Options{AllowSim: true, SimKeys: [][]byte{key}, Nonce: nonce, RequireNonce: len(nonce) > 0}}
}

func policy(t *testing.T, js string) *verifier.Policy {
	t.Helper()
	p, err := verifier.ParsePolicy([]byte(js), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func verify(t *testing.T, c simCase) *verifier.Report {
	t.Helper()
	rep, err := verifier.Verify(context.Background(), c.b, c.opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// appraisal builds the result and returns its one submodule, checking the
// members every result has.
func appraisal(t *testing.T, b *bundle.Bundle, rep *verifier.Report, opts verifier.Options) (*ear.Result, *ear.Appraisal) {
	t.Helper()
	now := time.Unix(1764720000, 0)
	res, err := ear.New(b, rep, opts, "test", now)
	if err != nil {
		t.Fatal(err)
	}
	if res.Profile != "tag:github.com,2023:veraison/ear" || res.IssuedAt != now.Unix() || res.VerifierID.Build != "ccmr test" || res.VerifierID.Developer == "" {
		t.Fatalf("result header: %+v", res)
	}
	if len(res.Submods) != 1 || res.Submods[rep.Platform] == nil {
		t.Fatalf("submods %v, want one named %q", res.Submods, rep.Platform)
	}
	a := res.Submods[rep.Platform]
	if a.Report != rep {
		t.Fatal("the appraisal does not carry the verify report")
	}
	return res, a
}

const zero384 = "sha384:000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
const one384 = "sha384:000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001"

// A plain TRUSTED sim verdict with a nonce is affirming; the sim key is
// pinned, so the instance is recognized; a sim is no confidential
// hardware, so hardware and runtime-opaque are not claimed; without a
// policy nothing approves the executables.
func TestTrustedSim(t *testing.T) {
	c := newSim(t, []byte("fresh nonce 0001"))
	rep := verify(t, c)
	if rep.Verdict != "TRUSTED" {
		t.Fatalf("verdict %q", rep.Verdict)
	}
	res, a := appraisal(t, c.b, rep, c.opts)
	if a.Status != ear.StatusAffirming {
		t.Fatalf("status %q, want affirming", a.Status)
	}
	want := ear.TrustVector{InstanceIdentity: ear.Affirming}
	if a.TrustVector != want {
		t.Fatalf("vector %+v, want %+v", a.TrustVector, want)
	}
	if res.Nonce != base64.RawURLEncoding.EncodeToString([]byte("fresh nonce 0001")) {
		t.Fatalf("eat_nonce %q", res.Nonce)
	}
	if a.PolicyID != "" {
		t.Fatalf("policy id %q without a policy", a.PolicyID)
	}
}

// A verified nonce shorter than EAT's 8 bytes is not stated: Veraison's
// library refuses such a token.
func TestShortNonceNotStated(t *testing.T) {
	c := newSim(t, []byte("1234567"))
	rep := verify(t, c)
	if rep.Verdict != "TRUSTED" {
		t.Fatalf("verdict %q", rep.Verdict)
	}
	res, a := appraisal(t, c.b, rep, c.opts)
	if a.Status != ear.StatusAffirming || res.Nonce != "" {
		t.Fatalf("status %q, eat_nonce %q", a.Status, res.Nonce)
	}
}

// No nonce: the verifier says TRUSTED (weakened: …), the result warning,
// and no eat_nonce is claimed.
func TestWeakenedIsWarning(t *testing.T) {
	c := newSim(t, nil)
	rep := verify(t, c)
	if !rep.Trusted || len(rep.Weakened) == 0 {
		t.Fatalf("verdict %q, want a weakened TRUSTED", rep.Verdict)
	}
	res, a := appraisal(t, c.b, rep, c.opts)
	if a.Status != ear.StatusWarning {
		t.Fatalf("status %q, want warning", a.Status)
	}
	if res.Nonce != "" {
		t.Fatalf("eat_nonce %q with no nonce verified", res.Nonce)
	}
}

// A sim statement checked against another key: NOT TRUSTED at layer 0, so
// contraindicated, the instance identity's cryptographic validation
// failed, and no nonce is claimed (layer 0 did not prove it).
func TestEvidenceFailureIsContraindicated(t *testing.T) {
	c := newSim(t, []byte("fresh nonce 0002"))
	other := newSim(t, nil)
	c.opts.SimKeys = other.opts.SimKeys
	rep := verify(t, c)
	if rep.Trusted || rep.FailedLayer() != verifier.LayerEvidence {
		t.Fatalf("verdict %q, failed layer %d", rep.Verdict, rep.FailedLayer())
	}
	res, a := appraisal(t, c.b, rep, c.opts)
	if a.Status != ear.StatusContraindicated {
		t.Fatalf("status %q", a.Status)
	}
	if want := (ear.TrustVector{InstanceIdentity: ear.CryptoFailed}); a.TrustVector != want {
		t.Fatalf("vector %+v, want %+v", a.TrustVector, want)
	}
	if res.Nonce != "" {
		t.Fatalf("eat_nonce %q from unverified evidence", res.Nonce)
	}
	if a.Report.Layers[0].Failure == nil {
		t.Fatal("the report's failure is not carried")
	}
}

// A policy pinning the runtime register approves the run time; one
// pinning only boot registers approves the boot; a policy value the
// evidence does not hold contraindicates the executables. The appraisal
// names the policy by its digest.
func TestPolicyExecutables(t *testing.T) {
	c := newSim(t, []byte("fresh nonce 0003"))
	for _, tc := range []struct {
		policy string
		trust  bool
		exec   ear.Claim
		status ear.Status
	}{
		{`{"registers": {"rtmr3": "` + zero384 + `"}}`, true, ear.Affirming, ear.StatusAffirming},
		{`{"registers": {"mrtd": "` + zero384 + `", "rtmr0": "` + zero384 + `"}}`, true, ear.ApprovedBoot, ear.StatusAffirming},
		{`{"registers": {"rtmr1": "` + one384 + `"}}`, false, ear.Contraindicated, ear.StatusContraindicated},
	} {
		c.opts.Policy = policy(t, tc.policy)
		rep := verify(t, c)
		if rep.Trusted != tc.trust {
			t.Fatalf("%s: verdict %q", tc.policy, rep.Verdict)
		}
		_, a := appraisal(t, c.b, rep, c.opts)
		if a.Status != tc.status || a.TrustVector.Executables != tc.exec || a.TrustVector.InstanceIdentity != ear.Affirming {
			t.Fatalf("%s: status %q vector %+v", tc.policy, a.Status, a.TrustVector)
		}
		if want := c.opts.Policy.Digest.String(); a.PolicyID != want || !strings.HasPrefix(want, "sha256:") {
			t.Fatalf("policy id %q, want %q", a.PolicyID, want)
		}
	}
}

// A report the mapping does not know (another number of layers), or none,
// gives no result rather than a wrong one; a report that says trusted
// beside a failed layer is contraindicated.
func TestMalformedReport(t *testing.T) {
	c := newSim(t, []byte("fresh nonce 0004"))
	rep := verify(t, c)
	short := *rep
	short.Layers = short.Layers[:3]
	if _, err := ear.New(c.b, &short, c.opts, "test", time.Now()); err == nil {
		t.Fatal("a three-layer report was stated")
	}
	if _, err := ear.New(c.b, nil, c.opts, "test", time.Now()); err == nil {
		t.Fatal("no report was stated")
	}
	odd := *rep
	odd.Layers = append([]verifier.LayerResult(nil), rep.Layers...)
	odd.Layers[verifier.LayerApp].Status = verifier.Fail
	_, a := appraisal(t, c.b, &odd, c.opts)
	if a.Status != ear.StatusContraindicated || a.TrustVector.Executables != ear.CryptoFailed {
		t.Fatalf("trusted report with a failed layer: %q %+v", a.Status, a.TrustVector)
	}
}

func pemKey(t testing.TB, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// keys are one signing key of each kind ParseKey takes, as PEM.
func keys(t testing.TB) map[string][]byte {
	t.Helper()
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	sec1, err := x509.MarshalECPrivateKey(p256)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"ES256":      pemKey(t, p256),
		"ES384":      pemKey(t, p384),
		"EdDSA":      pemKey(t, ed),
		"ES256/SEC1": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}),
	}
}

// Tokens signed with go-jose verify with a second implementation
// (golang-jwt), which reads back every claim; a token with one payload
// byte changed, or checked with another key, does not verify.
func TestSignVerifiedByGolangJWT(t *testing.T) {
	c := newSim(t, []byte("fresh nonce 0005"))
	c.opts.Policy = policy(t, `{"registers": {"rtmr3": "`+zero384+`"}}`)
	rep := verify(t, c)
	res, _ := appraisal(t, c.b, rep, c.opts)
	other, err := ear.ParseKey(keys(t)["ES256"])
	if err != nil {
		t.Fatal(err)
	}
	for name, pemb := range keys(t) {
		k, err := ear.ParseKey(pemb)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if alg, _, _ := strings.Cut(name, "/"); k.Algorithm() != alg {
			t.Fatalf("%s: algorithm %s", name, k.Algorithm())
		}
		tok, err := ear.Sign(res, k)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		claims := jwt.MapClaims{}
		parsed, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return k.Public(), nil },
			jwt.WithValidMethods([]string{k.Algorithm()}), jwt.WithIssuedAt())
		if err != nil || !parsed.Valid {
			t.Fatalf("%s: golang-jwt does not verify the token: %v", name, err)
		}
		if parsed.Header["typ"] != "JWT" || parsed.Header["kid"] == "" {
			t.Fatalf("%s: header %v", name, parsed.Header)
		}
		if claims["eat_profile"] != ear.Profile || claims["iat"].(float64) != float64(res.IssuedAt) || claims["eat_nonce"] != res.Nonce {
			t.Fatalf("%s: claims %v", name, claims)
		}
		sub := claims["submods"].(map[string]any)["sim"].(map[string]any)
		tv := sub["ear.trustworthiness-vector"].(map[string]any)
		if sub["ear.status"] != "affirming" || tv["instance-identity"].(float64) != 2 || tv["executables"].(float64) != 2 || len(tv) != 2 {
			t.Fatalf("%s: appraisal %v", name, sub)
		}
		if sub["ear.appraisal-policy-id"] != c.opts.Policy.Digest.String() {
			t.Fatalf("%s: policy id %v", name, sub["ear.appraisal-policy-id"])
		}
		r := sub[ear.ReportClaim].(map[string]any)
		if r["format"] != "ccmr-verify-report/v1" || r["verdict"] != "TRUSTED" || len(r["layers"].([]any)) != 5 {
			t.Fatalf("%s: report claim %v", name, r)
		}
		if vid := claims["ear.verifier-id"].(map[string]any); vid["build"] != "ccmr test" || vid["developer"] != ear.Developer {
			t.Fatalf("%s: verifier id %v", name, vid)
		}

		// Tampered: the same signature over a payload whose status
		// says warning instead of affirming does not verify.
		parts := strings.Split(tok, ".")
		pl, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		changed := strings.Replace(string(pl), `"ear.status":"affirming"`, `"ear.status":"warning"`, 1)
		if changed == string(pl) {
			t.Fatalf("%s: payload has no affirming status: %s", name, pl)
		}
		bad := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(changed)) + "." + parts[2]
		if _, err := jwt.Parse(bad, func(*jwt.Token) (any, error) { return k.Public(), nil }, jwt.WithValidMethods([]string{k.Algorithm()})); err == nil || !strings.Contains(err.Error(), "signature") {
			t.Fatalf("%s: a tampered token: %v, want a signature failure", name, err)
		}
		if k.Algorithm() == other.Algorithm() {
			if _, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return other.Public(), nil }, jwt.WithValidMethods([]string{k.Algorithm()})); err == nil {
				t.Fatalf("%s: the token verifies with another key", name)
			}
		}
	}
}

// Keys ParseKey refuses, each naming why: a relying party expects ES256,
// ES384 or EdDSA from one known key.
func TestParseKeyRefuses(t *testing.T) {
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	ks := keys(t)
	for name, tc := range map[string]struct {
		pem  []byte
		want string
	}{
		"empty":       {nil, "no PEM block"},
		"P-521":       {pemKey(t, p521), "P-521"},
		"two keys":    {append(append([]byte(nil), ks["ES256"]...), ks["EdDSA"]...), "after the first PEM block"},
		"public key":  {pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}), "PUBLIC KEY"},
		"garbage der": {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{0x30, 0x03, 1, 2, 3}}), "PRIVATE KEY"},
		"encrypted": {pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte{1}}),
			"encrypted"},
	} {
		k, err := ear.ParseKey(tc.pem)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: key %v, error %v; want one naming %q", name, k, err, tc.want)
		}
	}
}

// ParseKey never panics, and whatever it accepts signs a token that
// verifies with its public key.
func FuzzParseKey(f *testing.F) {
	for _, k := range keys(f) {
		f.Add(k)
	}
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n"))
	res := &ear.Result{Profile: ear.Profile, Submods: map[string]*ear.Appraisal{"sim": {Status: ear.StatusNone}}}
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ear.ParseKey(b)
		if err != nil {
			return
		}
		tok, err := ear.Sign(res, k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return k.Public(), nil }, jwt.WithValidMethods([]string{k.Algorithm()})); err != nil {
			t.Fatal(err)
		}
	})
}

// Verify reads back what Sign wrote, under the public half ParsePublicKey
// reads, for every kind of key; a token signed by another key, or with a
// changed payload, is refused; public keys of other kinds are refused.
func TestVerifyWhatSignWrote(t *testing.T) {
	c := newSim(t, []byte("fresh nonce 0006"))
	rep := verify(t, c)
	res, _ := appraisal(t, c.b, rep, c.opts)
	other, err := ear.ParseKey(keys(t)["ES256"])
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := func(k crypto.PublicKey) []byte {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	for name, pemb := range keys(t) {
		k, err := ear.ParseKey(pemb)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := ear.ParsePublicKey(pubPEM(k.Public()))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		tok, err := ear.Sign(res, k)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ear.Verify(tok, pub)
		if err != nil || got.Nonce != res.Nonce || len(got.Submods) != 1 {
			t.Fatalf("%s: Verify: %+v, %v", name, got, err)
		}
		if _, err := ear.Verify(tok, other.Public()); err == nil {
			t.Fatalf("%s: verified under another key", name)
		}
		parts := strings.Split(tok, ".")
		bad := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"eat_nonce":"x"}`)) + "." + parts[2]
		if _, err := ear.Verify(bad, pub); err == nil {
			t.Fatalf("%s: a changed payload verified", name)
		}
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	for name, k := range map[string]crypto.PublicKey{"RSA": &rsaKey.PublicKey, "P-224": &p224.PublicKey} {
		if _, err := ear.ParsePublicKey(pubPEM(k)); err == nil {
			t.Errorf("%s public key accepted", name)
		}
	}
	if _, err := ear.ParsePublicKey(append(pubPEM(other.Public()), pubPEM(other.Public())...)); err == nil {
		t.Error("two PEM blocks accepted")
	}
}
