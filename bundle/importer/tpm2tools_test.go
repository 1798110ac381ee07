//go:build unix

package importer_test

import (
	"context"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle/importer"
	"github.com/ccmr-dev/ccmr/internal/swtpmtest"
	"github.com/ccmr-dev/ccmr/verifier"
)

// A real tpm2_quote run on swtpm with -F values and -f plain, for an ECC
// AK and RSA AKs of both schemes (RSASSA, RSAPSS): each imports and
// verifies, and fails with another nonce.
func TestTPM2QuoteOtherFormsOnSwtpm(t *testing.T) {
	for _, tool := range []string{"tpm2_createprimary", "tpm2_readpublic", "tpm2_quote", "tpm2_flushcontext", "tpm2_pcrextend"} {
		swtpmtest.Need(t, tool)
	}
	sw := swtpmtest.Start(t)
	if err := sw.Startup(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = sw.Env()
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v: %s", name, args, err, out)
		}
	}
	rd := func(n string) importer.File {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		return importer.File{Name: n, Data: b}
	}
	run("tpm2_pcrextend", "4:sha256=d65003de52b12528a1ecfedc8854e81fc8dcf52db0d49835d6ae99e2304c7c83")
	nonce := []byte("swtpm forms")
	const attrs = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign|noda"
	for _, c := range []struct{ name, alg, scheme, sel string }{
		{"ecc", "ecc256:ecdsa-sha256:null", "ecdsa", "sha256:0,4,7,10"},
		{"rsassa", "rsa2048:rsassa-sha256:null", "rsassa", "sha256:0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16"},
		{"rsapss", "rsa2048:rsapss-sha256:null", "rsapss", "sha1:0,4,7"},
	} {
		t.Run(c.name, func(t *testing.T) {
			run("tpm2_flushcontext", "-t")
			run("tpm2_createprimary", "-Q", "-C", "o", "-G", c.alg, "-a", attrs, "-c", c.name+".ctx")
			run("tpm2_readpublic", "-Q", "-c", c.name+".ctx", "-f", "pem", "-o", c.name+".pem")
			run("tpm2_flushcontext", "-t")
			run("tpm2_quote", "-Q", "-c", c.name+".ctx", "-l", c.sel, "-q", hex.EncodeToString(nonce), "-g", "sha256", "--scheme", c.scheme,
				"-m", c.name+".attest", "-s", c.name+".plain", "-f", "plain", "-o", c.name+".values", "-F", "values")
			ak := rd(c.name + ".pem")
			pcrs := rd(c.name + ".values")
			b, err := importer.Build(importer.Parts{AK: &ak, TPMQuotes: []importer.TPMQuote{{Attest: rd(c.name + ".attest"), Signature: rd(c.name + ".plain"), PCRs: &pcrs}}})
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range [][]byte{nonce, []byte("another")} {
				rep, err := verifier.Verify(context.Background(), b, verifier.Options{Nonce: n, TrustedKeys: [][]byte{ak.Data}})
				if err != nil {
					t.Fatal(err)
				}
				if rep.Trusted != (string(n) == string(nonce)) {
					t.Fatalf("nonce %q: trusted %v: %+v", n, rep.Trusted, rep.Layers[0])
				}
			}
		})
	}
}
