package progress

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Not a terminal: the meter counts and writes nothing, however long the
// work.
func TestSilentWhenNotShown(t *testing.T) {
	var out syncBuf
	m := Start(&out, false, "replay", 100, Options{Delay: time.Millisecond, Every: time.Millisecond})
	io.Copy(io.Discard, m.Reader(strings.NewReader(strings.Repeat("x", 100))))
	time.Sleep(10 * time.Millisecond)
	m.Done()
	if out.String() != "" {
		t.Fatalf("wrote %q though not shown", out.String())
	}
}

// Work that ends within the delay draws nothing.
func TestSilentWhenShort(t *testing.T) {
	var out syncBuf
	m := Start(&out, true, "replay", 100, Options{Delay: time.Hour})
	m.Add(100)
	m.Done()
	if out.String() != "" {
		t.Fatalf("wrote %q for short work", out.String())
	}
}

// Long work on a terminal: the line shows the share done and is cleared
// at the end.
func TestDrawsAndClears(t *testing.T) {
	var out syncBuf
	m := Start(&out, true, "replay ima list", 4<<20, Options{Delay: time.Nanosecond, Every: time.Millisecond})
	m.Add(1 << 20)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "25% (1.0 MiB of 4.0 MiB)") {
		if time.Now().After(deadline) {
			t.Fatalf("no progress line after 10 s: %q", out.String())
		}
		time.Sleep(time.Millisecond)
	}
	m.Done()
	m.Done()
	s := out.String()
	if !strings.HasPrefix(s, "\rreplay ima list:  25%") || !strings.HasSuffix(s, "\r\x1b[K") {
		t.Fatalf("output %q", s)
	}
}
