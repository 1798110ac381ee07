package main

import (
	"io"
	"os"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/internal/progress"
)

// meter starts a progress meter for work of total bytes (0: unknown) on
// standard error, shown only when that is a terminal; internal/progress
// then draws only once the work has run over a second. show says whether
// it is shown: callers wrap their readers only then, so scripts, pipes and
// the testscript sessions read exactly as without it.
func (g *globals) meter(label string, total int64) (m *progress.Meter, show bool) {
	f, ok := g.stderr.(*os.File)
	show = ok && progress.IsTerminal(f)
	return progress.Start(g.stderr, show, label, total, progress.Options{}), show
}

// attachedBytes is the size of b's logs that are read from the bundle file
// (a v2 bundle's members), not held in memory.
func attachedBytes(b *bundle.Bundle) int64 {
	var total int64
	for i := range b.Logs {
		if b.Logs[i].Data == nil {
			total += b.Logs[i].Size()
		}
	}
	return total
}

// meterLogs makes the attached logs of b read through m. Logs held in
// memory (a v1 bundle's, decoded already) are left as they are. A log read
// more than once counts each time, so the share shown is of the first pass.
func meterLogs(b *bundle.Bundle, m *progress.Meter) {
	for i := range b.Logs {
		lg := &b.Logs[i]
		if lg.Data != nil || lg.Size() == 0 {
			continue
		}
		lg.Attach(meteredLog{lg: *lg, m: m}, lg.Size())
	}
}

// meteredLog reads a bundle log's bytes and counts them on a meter.
type meteredLog struct {
	lg bundle.Log
	m  *progress.Meter
}

func (r meteredLog) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= r.lg.Size() {
		return 0, io.EOF
	}
	n, err := io.ReadFull(r.lg.Open(off), p)
	r.m.Add(int64(n))
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	return n, err
}

// meterWriter counts what is written through it on a meter.
type meterWriter struct {
	w io.Writer
	m *progress.Meter
}

func (w meterWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.m.Add(int64(n))
	return n, err
}
