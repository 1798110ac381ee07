package client

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"testing"
)

// serveOn answers every request on a Unix socket with h.
func serveOn(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// A quote whose stream the daemon cuts (a failure after the status was
// sent) is an error, never a short bundle taken for a whole one.
func TestQuoteCutIsError(t *testing.T) {
	sock := serveOn(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/zip")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("PK\x03\x04 part of a bundle"))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	c := New(sock)
	defer c.Close()
	var buf bytes.Buffer
	if err := c.Quote(context.Background(), []byte{1}, &buf); err == nil {
		t.Fatalf("a cut stream was taken for a bundle (%d bytes)", buf.Len())
	}
}

// Statuses map to errors a caller can test: 403 is ErrForbidden, 404
// ErrNotFound; the daemon's message is kept.
func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		code int
		want error
	}{{403, ErrForbidden}, {404, ErrNotFound}} {
		sock := serveOn(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(tc.code)
			w.Write([]byte(`{"error":"the daemon's reason"}`))
		})
		c := New(sock)
		_, err := c.Read(context.Background(), "mr_x")
		c.Close()
		var ce *Error
		if !errors.Is(err, tc.want) || !errors.As(err, &ce) || ce.Message != "the daemon's reason" {
			t.Errorf("%d: %v", tc.code, err)
		}
	}
}
