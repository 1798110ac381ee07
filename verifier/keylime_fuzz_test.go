package verifier

import (
	"crypto/ecdsa"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzKeylimeExcludes: any list of excludes compiles or is refused (exit 2),
// never panics, and an accepted list matches any path without panicking.
func FuzzKeylimeExcludes(f *testing.F) {
	for _, c := range keylimeExcludeCases {
		if len(c.excludes) > 0 {
			f.Add(c.excludes[0], "(x)\\2", c.path)
		}
	}
	f.Add(`(?P<a>x)`, `(?P=a)`, "/xx")
	f.Add(`.*(?<=\.so)`, `[]]`, "/a.so")
	f.Fuzz(func(t *testing.T, e1, e2, path string) {
		x, err := compileKeylimeExcludes([]string{e1, e2})
		if err != nil {
			return
		}
		x.match(path)
	})
}

// FuzzParseSignedRuntimePolicy: envelopes verify or are refused, never
// panic; what verifies is Keylime's own signed policy.
func FuzzParseSignedRuntimePolicy(f *testing.F) {
	env, err := os.ReadFile(filepath.Join("testdata", "keylime", "signed-ecdsa.json"))
	if err != nil {
		f.Fatal(err)
	}
	pemKey, err := os.ReadFile(filepath.Join("testdata", "keylime", "ec-p521-public.pem"))
	if err != nil {
		f.Fatal(err)
	}
	key, err := ParseDSSEKey(pemKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(env)
	f.Add([]byte(`{"payload":"00","payloadType":"application/vnd.keylime+json","signatures":[{"sig":"00"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rp, err := ParseSignedRuntimePolicy(data, (*ecdsa.PublicKey)(key))
		if err != nil {
			return
		}
		if _, err := json.Marshal(rp); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzBufferKey: any ima-buf buffer is a key, not a key, or refused; never
// a panic.
func FuzzBufferKey(f *testing.F) {
	f.Add([]byte("root=/dev/vda1"))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, buf []byte) {
		bufferKey(buf, "fuzz")
	})
}
