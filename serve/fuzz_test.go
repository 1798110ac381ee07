package serve

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/vmr"
)

// FuzzExtendRequest sends arbitrary bodies to POST /v1/extend as root: the
// answer is 200, or a 4xx with the runtime log unchanged; never a 5xx
// (every request the daemon cannot serve is the caller's to fix).
func FuzzExtendRequest(f *testing.F) {
	f.Add([]byte(`{"register":"mr_a","digest":"sha384:` + string(bytes.Repeat([]byte("00"), 48)) + `"}`))
	f.Add([]byte(`{"register":"mr_a","data":"aGVsbG8="}`))
	f.Add([]byte(`{"register":"rtmr2","data":"aGVsbG8="}`))
	f.Add([]byte(`{"register":"rtmr3","digest":"sha384:00"}`))
	f.Add([]byte(`{"register":"mr_a","digest":"sha256:` + string(bytes.Repeat([]byte("00"), 32)) + `"}`))
	dir := f.TempDir()
	ctx := context.Background()
	dev, err := sim.Open(ctx, filepath.Join(dir, "sim"))
	if err != nil {
		f.Fatal(err)
	}
	store, err := vmr.Open(ctx, dev, vmr.Options{Dir: filepath.Join(dir, "log")})
	if err != nil {
		f.Fatal(err)
	}
	defer store.Close()
	s := New(Config{Device: dev, Store: store, Logger: slog.New(slog.DiscardHandler)})
	h := http.MaxBytesHandler(s.mux, MaxRequestBody)
	size := func() int64 {
		fi, err := os.Stat(store.Path())
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before := size()
		req := httptest.NewRequestWithContext(context.WithValue(ctx, peerKey{}, peerResult{}), "POST", "/v1/extend", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch {
		case w.Code == http.StatusOK:
		case w.Code >= 400 && w.Code < 500:
			if after := size(); after != before {
				t.Fatalf("answered %d and the log grew from %d to %d bytes: %s", w.Code, before, after, w.Body)
			}
		default:
			t.Fatalf("answered %d: %s", w.Code, w.Body)
		}
	})
}
