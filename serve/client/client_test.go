package client

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
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

// ServerUIDs: a listener of a user the client was not told to trust is
// refused before any request is sent; one of a trusted user is served.
func TestServerUIDs(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SO_PEERCRED is Linux's")
	}
	got := 0
	sock := serveOn(t, func(w http.ResponseWriter, r *http.Request) {
		got++
		w.Write([]byte(`{"status":"ok","device":"sim","backing":"rtmr3","log":"x"}`))
	})
	me := uint32(os.Geteuid())
	ctx := context.Background()
	other := New(sock, ServerUIDs(me+1))
	defer other.Close()
	if _, err := other.Health(ctx); !errors.Is(err, ErrUntrustedServer) {
		t.Errorf("a listener of uid %d, trusting only %d: %v, want ErrUntrustedServer", me, me+1, err)
	}
	if got != 0 {
		t.Errorf("the untrusted listener received %d requests", got)
	}
	mine := New(sock, ServerUIDs(me+1, me))
	defer mine.Close()
	if _, err := mine.Health(ctx); err != nil {
		t.Errorf("a listener of a trusted uid: %v", err)
	}
}
