package serve_test

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/binary"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/bundle/collect"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/serve"
	"github.com/ccmr-dev/ccmr/serve/client"
	"github.com/ccmr-dev/ccmr/verifier"
	"github.com/ccmr-dev/ccmr/vmr"
)

// syncBuffer collects the daemon's log for the checks of refusals.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// collectNoExtras leaves the host's IMA list and systemd log out of the
// test bundles: only the runtime log is under test.
var collectNoExtras = collect.Options{NoIMA: true, NoSystemdLog: true}

// daemon is a Server on the sim device, in-process, on a socket in a
// temporary folder.
type daemon struct {
	dir, sock string
	dev       *sim.Device
	store     *vmr.Store
	cl        *client.Client
	log       *syncBuffer
}

func startDaemon(t testing.TB, pol *serve.Policy, sockMode os.FileMode) *daemon {
	t.Helper()
	return startDaemonConns(t, pol, sockMode, 0)
}

// startDaemonConns is startDaemon serving at most maxConns connections
// (0: serve.DefaultMaxConns).
func startDaemonConns(t testing.TB, pol *serve.Policy, sockMode os.FileMode, maxConns int) *daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{dir: t.TempDir(), log: &syncBuffer{}}
	d.sock = filepath.Join(d.dir, "sock", "ccmr.sock")
	var err error
	if d.dev, err = sim.Open(ctx, filepath.Join(d.dir, "sim")); err != nil {
		t.Fatal(err)
	}
	if d.store, err = vmr.Open(ctx, d.dev, vmr.Options{Dir: filepath.Join(d.dir, "log")}); err != nil {
		t.Fatal(err)
	}
	l, err := serve.Listen(d.sock, sockMode, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	srv := serve.New(serve.Config{Device: d.dev, Store: d.store, Policy: pol,
		Logger: slog.New(slog.NewTextHandler(d.log, nil)), Quote: collectNoExtras, MaxConns: maxConns})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	d.cl = client.New(d.sock)
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		d.cl.Close()
		d.store.Close()
		d.dev.Close()
	})
	return d
}

// digestOf is the digest client c sends as its i-th extend.
func digestOf(c, i int) mr.Digest {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(c))
	binary.BigEndian.PutUint64(b[8:], uint64(i))
	h := sha512.Sum384(b[:])
	return mr.Digest{Alg: mr.SHA384, Bytes: h[:]}
}

// fold is a sha384 virtual register after client c's first n extends.
func fold(c, n int) mr.Digest {
	v := make([]byte, 48)
	for i := range n {
		h := sha512.New384()
		h.Write(v)
		h.Write(digestOf(c, i).Bytes)
		v = h.Sum(nil)
	}
	return mr.Digest{Alg: mr.SHA384, Bytes: v}
}

// quoteAndVerify asks the daemon for a bundle and verifies it.
func quoteAndVerify(t *testing.T, d *daemon) *verifier.Report {
	t.Helper()
	ctx := context.Background()
	nonce := []byte("serve-test-nonce-0123456789abcdef")
	var buf bytes.Buffer
	if err := d.cl.Quote(ctx, nonce, &buf); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.ReadAt(ctx, bytes.NewReader(buf.Bytes()), int64(buf.Len()), "quote.zip")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	key, err := d.dev.PublicKeyPEM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := verifier.Verify(ctx, b, verifier.Options{AllowSim: true, SimKeys: [][]byte{key}, Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Trusted {
		var w bytes.Buffer
		rep.WriteText(&w)
		t.Fatalf("bundle from the daemon not trusted:\n%s", w.String())
	}
	return rep
}

// rawConn dials the socket without the client.
func rawConn(t *testing.T, sock string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
