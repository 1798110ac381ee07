package verifier

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle"
)

// FuzzReadBundle: any bytes either fail to read as a bundle or verify to a
// report (trusted or not) without a panic.
func FuzzReadBundle(f *testing.F) {
	if b, err := os.ReadFile("../testdata/e2e/guest/bundle.json"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"format":"ccmr-evidence/v1","platform":"sim","nonce":"AA==","evidence":{},"logs":[{"format":"runtime","register":"rtmr3","data":"AAAA"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := bundle.Read(bytes.NewReader(data), "fuzz")
		if err != nil {
			return
		}
		rep, err := Verify(context.Background(), b, Options{AllowSim: true})
		if err == nil && rep.Trusted {
			t.Fatal("a bundle with no pinned key was trusted")
		}
	})
}

// FuzzParsePolicy: policies parse or fail, never panic.
func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(`{"registers":{"rtmr0":"sha384:` + string(bytes.Repeat([]byte("00"), 48)) + `"},"ima":{"keylime":{"digests":{"/a":["00"]},"excludes":["^/tmp/"]},"aggregate":""}}`))
	f.Add([]byte(`{"nonce":"0102","allow_duplicate_separator":true}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ParsePolicy(data, t.TempDir())
	})
}

// FuzzParseRuntimePolicy: Keylime runtime policies (excludes translated from
// Python's regular-expression syntax included) parse or fail, never panic;
// an accepted policy's excludes and digests can be used.
func FuzzParseRuntimePolicy(f *testing.F) {
	f.Add([]byte(`{"meta":{"version":1},"release":0,"digests":{"/usr/bin/a":["00ff"]},"excludes":["/tmp/.*","(?i)^/var/log","[[:alpha:]]"],"keyrings":{},"ima":{"ignored_keyrings":[],"log_hash_alg":"sha1"},"ima-buf":{},"verification-keys":""}`))
	f.Add([]byte(`{"digests":{},"excludes":["(?=x)", "\\d+\\Z"]}`))
	// Complete policies (every member Keylime's schema requires), so that
	// the fuzzer starts from inputs that reach the members' checks.
	f.Add([]byte(keylimeEmpty))
	f.Add([]byte(`{"meta":{"version":1,"generator":0},"release":0,"digests":{"/a":["` + strings.Repeat("ab", 32) + `"]},"excludes":["(?=x)","\\d+\\Z"],"keyrings":{},"ima":{"ignored_keyrings":["*"],"log_hash_alg":"sha1","dm_policy":null},"ima-buf":{},"verification-keys":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rp, err := ParseRuntimePolicy(data)
		if err != nil {
			return
		}
		rp.Excluded("/tmp/x\n/evil")
		rp.Allowed("/usr/bin/a", "00ff")
	})
}

// FuzzParseState: monitor state files load or fail (exit 2), never panic,
// with or without a key; what loads saves and loads again the same.
func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"format":"ccmr-monitor-state/v2","machines":{}}`), false)
	f.Add([]byte(`{"format":"ccmr-monitor-state/v2","machines":{"m":null}}`), true)
	f.Fuzz(func(t *testing.T, data []byte, keyed bool) {
		var key []byte
		if keyed {
			key = bytes.Repeat([]byte{7}, 32)
		}
		ParseState(data, key)
	})
}
