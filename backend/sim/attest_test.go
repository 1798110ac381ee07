package sim

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/simverify"
)

var fixedTime = time.Date(2025, 6, 1, 12, 34, 56, 789000000, time.UTC)

func attestT(t testing.TB, d *Device, nonce []byte) (*mr.Evidence, []byte) {
	t.Helper()
	ctx := context.Background()
	ev, err := d.Attest(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := d.PublicKeyPEM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ev, pub
}

func TestAttestRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, l := range []Layout{LayoutTDX, LayoutTPM} {
		t.Run(string(l), func(t *testing.T) {
			d := openT(t, t.TempDir(), WithLayout(l), WithClock(func() time.Time { return fixedTime }))
			reg := "rtmr3"
			if l == LayoutTPM {
				reg = "pcr14"
			}
			if err := d.ExtendData(ctx, reg, []byte("app")); err != nil {
				t.Fatal(err)
			}
			nonce := []byte("a fresh nonce from the verifier")
			ev, pub := attestT(t, d, nonce)
			if ev.Platform != mr.PlatformSim || !bytes.Equal(ev.PublicKey, pub) {
				t.Fatalf("platform %q, key %q", ev.Platform, ev.PublicKey)
			}
			s, err := simverify.VerifyEvidence(ev, pub)
			if err != nil {
				t.Fatal(err)
			}
			want, err := d.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Values) != len(want) {
				t.Fatalf("%d signed values, %d registers", len(s.Values), len(want))
			}
			for i := range want {
				if s.Values[i].Register != want[i].Register || !s.Values[i].Digest.Equal(want[i].Digest) {
					t.Errorf("signed %+v, read %+v", s.Values[i], want[i])
				}
			}
			if !bytes.Equal(s.Nonce, nonce) || !s.Time.Equal(fixedTime) || s.Layout != l {
				t.Errorf("statement nonce %q time %v layout %s", s.Nonce, s.Time, s.Layout)
			}
			// The key is made once and reused, also by another Device on the folder.
			ev2, pub2 := attestT(t, openT(t, d.Dir()), nil)
			if !bytes.Equal(pub, pub2) {
				t.Fatal("second attestation used another key")
			}
			if s2, err := simverify.VerifyEvidence(ev2, pub); err != nil || len(s2.Nonce) != 0 {
				t.Fatalf("empty nonce: %v %v", s2, err)
			}
		})
	}
	d := openT(t, t.TempDir())
	if _, err := d.Attest(ctx, make([]byte, MaxNonce+1)); !errors.Is(err, mr.ErrMalformed) {
		t.Fatalf("oversized nonce: %v", err)
	}
}

func TestAttestTamper(t *testing.T) {
	d := openT(t, t.TempDir())
	if err := d.ExtendData(context.Background(), "rtmr1", []byte("x")); err != nil {
		t.Fatal(err)
	}
	ev, pub := attestT(t, d, []byte("nonce"))
	if _, err := simverify.VerifyEvidence(ev, pub); err != nil {
		t.Fatal(err)
	}
	clone := func() *mr.Evidence {
		c := *ev
		c.Report = append([]byte{}, ev.Report...)
		c.Signature = append([]byte{}, ev.Signature...)
		c.Nonce = append([]byte{}, ev.Nonce...)
		c.Registers = append([]mr.Value{}, ev.Registers...)
		return &c
	}
	// Every byte of the report and of the signature matters.
	for i := range ev.Report {
		c := clone()
		c.Report[i] ^= 0x01
		if _, err := simverify.VerifyEvidence(c, pub); !errors.Is(err, simverify.ErrSignature) {
			t.Fatalf("report byte %d flipped: %v", i, err)
		}
	}
	for i := range ev.Signature {
		c := clone()
		c.Signature[i] ^= 0x80
		if _, err := simverify.VerifyEvidence(c, pub); err == nil {
			t.Fatalf("signature byte %d flipped: verified", i)
		}
	}
	c := clone()
	c.Signature = c.Signature[:len(c.Signature)-1]
	if _, err := simverify.VerifyEvidence(c, pub); err == nil {
		t.Fatal("truncated signature verified")
	}
	// Another device's key.
	_, other := attestT(t, openT(t, t.TempDir()), nil)
	if _, err := simverify.VerifyEvidence(ev, other); !errors.Is(err, simverify.ErrUntrustedKey) {
		t.Fatalf("other trusted key: %v", err)
	}
	c = clone()
	c.PublicKey = nil
	if _, err := simverify.VerifyEvidence(c, other); !errors.Is(err, simverify.ErrSignature) {
		t.Fatalf("other trusted key, no key in evidence: %v", err)
	}
	if _, err := simverify.VerifyStatement(ev.Report, ev.Signature, other); !errors.Is(err, simverify.ErrSignature) {
		t.Fatalf("simverify.VerifyStatement with another key: %v", err)
	}
	if _, err := simverify.VerifyEvidence(ev, []byte("not a key")); !errors.Is(err, mr.ErrMalformed) {
		t.Fatalf("garbage trusted key: %v", err)
	}
	// Unsigned copies that disagree with the statement.
	for name, mut := range map[string]func(*mr.Evidence){
		"nonce":    func(e *mr.Evidence) { e.Nonce[0] ^= 1 },
		"time":     func(e *mr.Evidence) { e.Time = e.Time.Add(time.Second) },
		"platform": func(e *mr.Evidence) { e.Platform = mr.PlatformTDX },
		"register": func(e *mr.Evidence) {
			v := e.Registers[2]
			v.Digest = mr.SHA384.Sum([]byte("forged"))
			e.Registers[2] = v
		},
		"count": func(e *mr.Evidence) { e.Registers = e.Registers[1:] },
	} {
		c := clone()
		mut(c)
		if _, err := simverify.VerifyEvidence(c, pub); !errors.Is(err, simverify.ErrEvidenceMismatch) {
			t.Errorf("%s changed: %v", name, err)
		}
	}
}

func TestKeyCreatedOnceUnderRace(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	var wg sync.WaitGroup
	keys := make([][]byte, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Separate Devices, separate lock file descriptions: the same
			// exclusion two processes get.
			d, err := Open(context.Background(), dir)
			if err == nil {
				keys[i], err = d.PublicKeyPEM(context.Background())
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i := range keys {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("goroutine %d got another key", i)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, keyTemp)); !os.IsNotExist(err) {
		t.Errorf("temporary key file left behind: %v", err)
	}
}

// OpenSSL, not Go, checks the signature and reads the key file.
func TestAttestOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CCMR_REQUIRE_TOOLS") == "1" {
			t.Fatal("openssl not found")
		}
		t.Skip("openssl not found")
	}
	d := openT(t, t.TempDir())
	ev, pub := attestT(t, d, []byte("n"))
	tmp := t.TempDir()
	for name, b := range map[string][]byte{"report": ev.Report, "sig": ev.Signature, "pub.pem": pub} {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(openssl, "dgst", "-sha384", "-verify", filepath.Join(tmp, "pub.pem"),
		"-signature", filepath.Join(tmp, "sig"), filepath.Join(tmp, "report")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Verified OK") {
		t.Fatalf("openssl dgst -verify: %v\n%s", err, out)
	}
	ev.Report[10] ^= 1
	os.WriteFile(filepath.Join(tmp, "report"), ev.Report, 0o600)
	if out, err := exec.Command(openssl, "dgst", "-sha384", "-verify", filepath.Join(tmp, "pub.pem"),
		"-signature", filepath.Join(tmp, "sig"), filepath.Join(tmp, "report")).CombinedOutput(); err == nil {
		t.Fatalf("openssl verified a tampered report:\n%s", out)
	}
	out, err = exec.Command(openssl, "pkey", "-in", filepath.Join(d.Dir(), keyFile), "-noout", "-text").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "P-384") {
		t.Fatalf("openssl pkey: %v\n%s", err, out)
	}
	derived, err := exec.Command(openssl, "pkey", "-in", filepath.Join(d.Dir(), keyFile), "-pubout").Output()
	if err != nil || !bytes.Equal(derived, pub) {
		t.Fatalf("openssl's public key of the key file differs from PublicKeyPEM: %v\n%s", err, derived)
	}
}
