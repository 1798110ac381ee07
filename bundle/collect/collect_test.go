//go:build unix

package collect_test

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/bundle/collect"
	"github.com/ccmr-dev/ccmr/internal/imatest"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier"
	"github.com/ccmr-dev/ccmr/vmr"
)

type guest struct {
	dir   string
	dev   *sim.Device
	store *vmr.Store
	key   []byte
}

func newGuest(t *testing.T) *guest {
	t.Helper()
	ctx := context.Background()
	g := &guest{dir: t.TempDir()}
	var err error
	if g.dev, err = sim.Open(ctx, filepath.Join(g.dir, "sim")); err != nil {
		t.Fatal(err)
	}
	if g.store, err = vmr.Open(ctx, g.dev, vmr.Options{Dir: filepath.Join(g.dir, "log")}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.store.Close() })
	if g.key, err = g.dev.PublicKeyPEM(ctx); err != nil {
		t.Fatal(err)
	}
	return g
}

func (g *guest) extend(t *testing.T, name, data string) {
	t.Helper()
	h := sha512.Sum384([]byte(data))
	if _, err := g.store.Extend(context.Background(), name, mr.Digest{Alg: mr.SHA384, Bytes: h[:]}); err != nil {
		t.Fatal(err)
	}
}

// verify writes b as v2, reads it back and verifies it.
func (g *guest) verify(t *testing.T, b *bundle.Bundle, nonce []byte) *verifier.Report {
	t.Helper()
	ctx := context.Background()
	var buf bytes.Buffer
	if err := b.WriteArchive(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	back, err := bundle.ReadAt(ctx, bytes.NewReader(buf.Bytes()), int64(buf.Len()), "b.zip")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := verifier.Verify(ctx, back, verifier.Options{AllowSim: true, SimKeys: [][]byte{g.key}, Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// A guest with an archived segment, a current runtime log and an IMA
// list: every log is attached where it is, in order, and the bundle
// verifies after a v2 round trip.
func TestBundle(t *testing.T) {
	ctx := context.Background()
	g := newGuest(t)
	g.extend(t, "mr_app", "v1")
	if _, err := g.store.Cut(ctx); err != nil {
		t.Fatal(err)
	}
	g.extend(t, "mr_app", "v2")
	list := filepath.Join(g.dir, "ima.bin")
	specs := []imatest.Spec{imatest.NG(1), imatest.NG(2)}
	if err := os.WriteFile(list, imatest.Binary(specs, binary.LittleEndian), 0o600); err != nil {
		t.Fatal(err)
	}
	// The forwarder puts the list into mr_ima, which proves it.
	if _, err := g.store.Forward(ctx, vmr.ForwardOptions{List: list}); err != nil {
		t.Fatal(err)
	}
	extra := bundle.Log{Format: "dstack-json", Source: "dstack.json", Data: []byte("[]")}
	nonce := []byte("nonce")
	b, err := collect.Bundle(ctx, g.dev, g.store, nonce, collect.Options{IMAList: list, Logs: []bundle.Log{extra}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var formats []string
	for _, l := range b.Logs {
		formats = append(formats, l.Format)
	}
	if got := strings.Join(formats, " "); got != "runtime runtime ima-binary dstack-json" {
		t.Fatalf("logs %s, want the archive, the runtime log, the IMA list, the extra log", got)
	}
	for i, l := range b.Logs[:3] {
		if l.Data != nil {
			t.Errorf("logs[%d] (%s) read into memory", i, l.Format)
		}
	}
	if ima, _ := b.Logs[2].Bytes(); !bytes.Equal(ima, imatest.Binary(specs, binary.LittleEndian)) {
		t.Error("IMA list differs")
	}
	if b.Nonce == nil || !bytes.Equal(b.Nonce, nonce) || len(b.Registers) == 0 {
		t.Fatalf("evidence: nonce %q, %d registers", b.Nonce, len(b.Registers))
	}
	// The extra dstack log is empty, so it proves nothing and fails
	// nothing; without it the bundle verifies the same.
	b.Logs = b.Logs[:3]
	if rep := g.verify(t, b, nonce); !rep.Trusted {
		t.Fatalf("not trusted: %+v", rep)
	}
	// A wrong nonce is caught.
	if rep := g.verify(t, b, []byte("other")); rep.Trusted {
		t.Fatal("trusted with another nonce")
	}
}

// Without a store the evidence is taken alone; a missing IMA list is left
// out, not an error.
func TestBundleNoStore(t *testing.T) {
	g := newGuest(t)
	b, err := collect.Bundle(context.Background(), g.dev, nil, []byte("n"), collect.Options{IMAList: filepath.Join(g.dir, "absent")})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if len(b.Logs) != 0 {
		t.Fatalf("%d logs, want none", len(b.Logs))
	}
	if rep := g.verify(t, b, []byte("n")); !rep.Trusted {
		t.Fatalf("not trusted: %+v", rep)
	}
}

// A store not written yet (a daemon's first quote): its empty log is left
// out and the bundle verifies, with the backing register at its reset
// value; once a record is written, the log is carried.
func TestBundleEmptyStore(t *testing.T) {
	ctx := context.Background()
	g := newGuest(t)
	b, err := collect.Bundle(ctx, g.dev, g.store, []byte("n"), collect.Options{NoIMA: true, NoSystemdLog: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if len(b.Logs) != 0 {
		t.Fatalf("%d logs, want none for an empty store", len(b.Logs))
	}
	if rep := g.verify(t, b, []byte("n")); !rep.Trusted {
		t.Fatalf("not trusted: %+v", rep)
	}
	g.extend(t, "mr_app", "v1")
	b2, err := collect.Bundle(ctx, g.dev, g.store, []byte("n"), collect.Options{NoIMA: true, NoSystemdLog: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if len(b2.Logs) != 1 {
		t.Fatalf("%d logs after an extend, want the runtime log", len(b2.Logs))
	}
	if rep := g.verify(t, b2, []byte("n")); !rep.Trusted {
		t.Fatalf("not trusted after an extend: %+v", rep)
	}
}

// An IMA list that is a FIFO (or any non-regular file) is refused at
// once, not read until SIGTERM.
func TestBundleIMAListFIFO(t *testing.T) {
	g := newGuest(t)
	fifo := filepath.Join(g.dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip(err)
	}
	for _, list := range []string{fifo, "/dev/zero"} {
		_, err := collect.Bundle(context.Background(), g.dev, g.store, []byte("n"), collect.Options{IMAList: list})
		if !errors.Is(err, mr.ErrMalformed) || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("%s: %v, want not a regular file", list, err)
		}
	}
}

// A cancelled context stops the collection (here, the pass over the IMA
// list).
func TestBundleContext(t *testing.T) {
	g := newGuest(t)
	list := filepath.Join(g.dir, "ima.bin")
	if err := os.WriteFile(list, imatest.Binary([]imatest.Spec{imatest.NG(1)}, binary.LittleEndian), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if b, err := collect.Bundle(ctx, g.dev, g.store, []byte("n"), collect.Options{IMAList: list}); !errors.Is(err, context.Canceled) {
		if b != nil {
			b.Close()
		}
		t.Fatalf("cancelled: %v", err)
	}
}

// With a since file from a monitor state, the bundle carries only the
// tails past the state's point, attached (not read), and they verify with
// that state; the same tails without the state are not trusted.
func TestBundleSince(t *testing.T) {
	ctx := context.Background()
	g := newGuest(t)
	g.extend(t, "mr_app", "v1")
	list := filepath.Join(g.dir, "ima.bin")
	specs := []imatest.Spec{imatest.NG(1), imatest.NG(2)}
	if err := os.WriteFile(list, imatest.Binary(specs, binary.LittleEndian), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := g.store.Forward(ctx, vmr.ForwardOptions{List: list}); err != nil {
		t.Fatal(err)
	}
	opts := verifier.Options{AllowSim: true, SimKeys: [][]byte{g.key}, Monitor: verifier.NewState()}
	b1, err := collect.Bundle(ctx, g.dev, g.store, nil, collect.Options{IMAList: list})
	if err != nil {
		t.Fatal(err)
	}
	defer b1.Close()
	if rep, err := verifier.Verify(ctx, b1, opts); err != nil || !rep.Trusted {
		t.Fatalf("first: %v %+v", err, rep)
	}
	since, ok := opts.Monitor.Since(verifier.MachineID(b1))
	if !ok {
		t.Fatal("no since")
	}
	g.extend(t, "mr_app", "v2")
	specs = append(specs, imatest.NG(3))
	if err := os.WriteFile(list, imatest.Binary(specs, binary.LittleEndian), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := g.store.Forward(ctx, vmr.ForwardOptions{List: list}); err != nil {
		t.Fatal(err)
	}
	b2, err := collect.Bundle(ctx, g.dev, g.store, nil, collect.Options{IMAList: list, Since: since})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if len(b2.Logs) != 2 {
		t.Fatalf("%d logs", len(b2.Logs))
	}
	for i, l := range b2.Logs {
		if l.Offset == 0 || l.Data != nil {
			t.Fatalf("logs[%d] (%s): offset %d, in memory %v: want an attached tail", i, l.Format, l.Offset, l.Data != nil)
		}
	}
	if rep := g.verify(t, b2, nil); rep.Trusted {
		t.Fatal("tails trusted without the state")
	}
	if rep, err := verifier.Verify(ctx, b2, opts); err != nil || !rep.Trusted {
		t.Fatalf("tails with the state: %v %+v", err, rep)
	}
}
