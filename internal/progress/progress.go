// Package progress shows how far a long piece of work has come, on a
// terminal only: `ccmr log replay`, `verify`, `quote` and `ima forward` may
// read hundreds of megabytes, and a user at a terminal should see that the
// work moves. Nothing is written when the output is not a terminal (a
// script, a pipe, a log file) or when the work ends within the delay
// (a second by default), so short commands and scripted use see no
// difference. A few lines of our own: the CLI needs one line rewritten in
// place, not a progress-bar library's widgets.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Meter counts work done towards a total and redraws one status line.
type Meter struct {
	w     io.Writer
	label string
	total int64 // bytes; 0 when unknown
	done  atomic.Int64

	mu      sync.Mutex
	stop    chan struct{}
	stopped chan struct{}
	drawn   bool
}

// Options tune a Meter; the zero value is the CLI's behaviour.
type Options struct {
	// Delay before the first line; 0 means one second.
	Delay time.Duration
	// Every is the redraw interval; 0 means 200 ms.
	Every time.Duration
}

// IsTerminal reports whether f is a character device (a terminal; also
// /dev/null, where a status line harms nobody).
func IsTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Start begins a meter writing to w when show is true; with show false it
// returns a meter that counts and never writes. total is the amount of
// work in bytes (0 when not known ahead).
func Start(w io.Writer, show bool, label string, total int64, o Options) *Meter {
	m := &Meter{w: w, label: label, total: total}
	if !show {
		return m
	}
	if o.Delay <= 0 {
		o.Delay = time.Second
	}
	if o.Every <= 0 {
		o.Every = 200 * time.Millisecond
	}
	m.stop, m.stopped = make(chan struct{}), make(chan struct{})
	go m.run(o)
	return m
}

// Stderr starts a meter on standard error when it is a terminal.
func Stderr(label string, total int64) *Meter {
	return Start(os.Stderr, IsTerminal(os.Stderr), label, total, Options{})
}

func (m *Meter) run(o Options) {
	defer close(m.stopped)
	select {
	case <-m.stop:
		return
	case <-time.After(o.Delay):
	}
	t := time.NewTicker(o.Every)
	defer t.Stop()
	for {
		m.draw()
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
	}
}

func (m *Meter) draw() {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.done.Load()
	line := fmt.Sprintf("%s: %s", m.label, size(n))
	if m.total > 0 {
		line = fmt.Sprintf("%s: %3d%% (%s of %s)", m.label, min(100, n*100/m.total), size(n), size(m.total))
	}
	// \r and clear-to-end-of-line: the line is rewritten in place.
	fmt.Fprintf(m.w, "\r%s\x1b[K", line)
	m.drawn = true
}

// Add counts n more bytes of work done.
func (m *Meter) Add(n int64) { m.done.Add(n) }

// Done stops the meter and clears its line, if it drew one. It is safe to
// call more than once.
func (m *Meter) Done() {
	if m.stop == nil {
		return
	}
	m.mu.Lock()
	select {
	case <-m.stop:
		m.mu.Unlock()
		return
	default:
		close(m.stop)
	}
	m.mu.Unlock()
	<-m.stopped
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.drawn {
		fmt.Fprint(m.w, "\r\x1b[K")
	}
}

// Reader counts what is read from r as work done.
func (m *Meter) Reader(r io.Reader) io.Reader { return &reader{r: r, m: m} }

type reader struct {
	r io.Reader
	m *Meter
}

func (c *reader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.m.Add(int64(n))
	return n, err
}

func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
