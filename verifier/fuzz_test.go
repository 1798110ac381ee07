package verifier

import (
	"bytes"
	"context"
	"os"
	"testing"
)

// FuzzReadBundle: any bytes either fail to read as a bundle or verify to a
// report (trusted or not) without a panic.
func FuzzReadBundle(f *testing.F) {
	if b, err := os.ReadFile("../testdata/e2e/guest/bundle.json"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"format":"ccmr-evidence/v1","platform":"sim","nonce":"AA==","evidence":{},"logs":[{"format":"runtime","register":"rtmr3","data":"AAAA"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ReadBundle(bytes.NewReader(data), "fuzz")
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
