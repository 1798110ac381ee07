package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/internal/progress"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *lockedBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *lockedBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls out until it holds want (a meter draws on its own
// goroutine); it fails after a generous deadline, not a timing bound.
func waitFor(t *testing.T, out *lockedBuf, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in %q", want, out.String())
		}
		time.Sleep(time.Millisecond)
	}
}

// Standard error that is not a terminal (a buffer, a file) shows no meter.
func TestMeterNotATerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, w := range []io.Writer{&bytes.Buffer{}, f} {
		g := &globals{env: env{stderr: w}}
		m, show := g.meter("verify", 10)
		m.Done()
		if show {
			t.Fatalf("%T: shown", w)
		}
	}
}

// A verification's reads of the attached logs go through the meter, and
// read the same bytes; the meter, shown, draws the share and clears it.
func TestMeterLogs(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 1000)
	var b bundle.Bundle
	b.Logs = []bundle.Log{{Format: "ima-binary"}, {Format: "dstack-json", Data: []byte("[]")}}
	b.Logs[0].Attach(bytes.NewReader(data), int64(len(data)))
	if got := attachedBytes(&b); got != int64(len(data)) {
		t.Fatalf("attached %d bytes, want %d", got, len(data))
	}
	var out lockedBuf
	m := progress.Start(&out, true, "verify", attachedBytes(&b), progress.Options{Delay: time.Nanosecond, Every: time.Millisecond})
	meterLogs(&b, m)
	got, err := b.Logs[0].Bytes()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read through the meter: %v", err)
	}
	if tail, err := io.ReadAll(b.Logs[0].Open(int64(len(data)) - 5)); err != nil || string(tail) != "56789" {
		t.Fatalf("tail %q, %v", tail, err)
	}
	if b.Logs[1].Data == nil {
		t.Fatal("a log in memory was attached")
	}
	waitFor(t, &out, "verify: 100%")
	m.Done()
	if s := out.String(); !strings.HasSuffix(s, "\r\x1b[K") {
		t.Fatalf("line not cleared: %q", s)
	}
}

// What quote writes goes through the meter unchanged.
func TestMeterWriter(t *testing.T) {
	var out lockedBuf
	var dst bytes.Buffer
	m := progress.Start(&out, true, "quote", 4096, progress.Options{Delay: time.Nanosecond, Every: time.Millisecond})
	w := meterWriter{w: &dst, m: m}
	if _, err := w.Write(make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &out, "quote:  25% (1.0 KiB of 4.0 KiB)")
	m.Done()
	if dst.Len() != 1024 {
		t.Fatalf("wrote %d bytes", dst.Len())
	}
}
