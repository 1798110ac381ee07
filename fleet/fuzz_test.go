package fleet

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
)

// FuzzEvidence posts arbitrary bodies as a machine's evidence: the answer
// is a verdict (200) or a 4xx, never a 5xx, and a refusal writes nothing.
func FuzzEvidence(f *testing.F) {
	url := "sqlite:" + filepath.Join(f.TempDir(), "f.db")
	st := openStore(f, url)
	svc := New(Config{Store: st, TempDir: f.TempDir(), MaxBundle: 1 << 20})
	g := newGuest(f, 1)
	if err := st.Enroll(f.Context(), g.machine("default")); err != nil {
		f.Fatal(err)
	}
	nonce := []byte("fuzz-nonce-0123456789abcdef01234")
	good := g.evidence(f, nonce, false)
	f.Add(good)
	f.Add(g.evidence(f, nonce, true))
	f.Add(good[:len(good)/2])
	f.Add([]byte("{}"))
	f.Add([]byte(`{"format":"ccmr-evidence/v1"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		before := snapshot(t, st)
		w := httptest.NewRecorder()
		svc.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/machines/"+g.id+"/evidence", bytes.NewReader(body)))
		if w.Code >= 500 || (w.Code != 200 && w.Code < 400) {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		if w.Code != 200 && snapshot(t, st) != before {
			t.Fatalf("a refused body (%d) changed the store", w.Code)
		}
	})
}

// FuzzIdentity reads arbitrary bytes as an SNP report and a TDX quote: an
// identity or an error, never a panic; an identity read back by
// ParseIdentity is itself; arbitrary text as --hw-id is refused or
// canonical.
func FuzzIdentity(f *testing.F) {
	for _, s := range corpus.Seeds(f, "go-sev-guest/attestation.bin", "trustee/snp/test-vlek-report.bin", "dcap-qvl/tdx_quote", "trustee/tdx/tdx_quote_5.dat") {
		f.Add(s)
	}
	f.Add(make([]byte, 0x2A0))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, p := range []mr.Platform{mr.PlatformSNP, mr.PlatformTDX} {
			id, err := Identity(p, b)
			if err != nil {
				continue
			}
			back, err := ParseIdentity(p, id)
			if err != nil || back != id {
				t.Fatalf("%s identity %q reads back as %q (%v)", p, id, back, err)
			}
		}
		for _, p := range []mr.Platform{mr.PlatformSNP, mr.PlatformTDX} {
			if id, err := ParseIdentity(p, string(b)); err == nil {
				if again, err := ParseIdentity(p, id); err != nil || again != id {
					t.Fatalf("%q: canonical %q is not stable (%q, %v)", b, id, again, err)
				}
			}
		}
		if tr, err := parseTrust(b); err == nil {
			if _, err := tr.Marshal(); err != nil {
				t.Fatal(err)
			}
		}
	})
}
