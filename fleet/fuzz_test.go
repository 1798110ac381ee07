package fleet

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
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
