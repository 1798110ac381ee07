package ima

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// repoRoot walks up from the package directory to the folder holding go.mod.
func repoRoot(t testing.TB) string {
	t.Helper()
	d, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		p := filepath.Dir(d)
		if p == d {
			t.Fatal("no go.mod above the package directory")
		}
		d = p
	}
}

// realDir is the real kernel list copied into the repository.
func realDir(t testing.TB) string {
	return filepath.Join(repoRoot(t), "testdata", "real-kernel-ima-sig")
}

// readAll reads every entry of a list, cloning each.
func readAll(t testing.TB, r *Reader) ([]*Entry, error) {
	t.Helper()
	var out []*Entry
	for {
		e, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, e.Clone())
	}
}

func openList(t testing.TB, path string, f eventlog.Format) *Reader {
	t.Helper()
	r, c, err := OpenFile(path, f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return r
}

// slice is a Source over entries held in memory.
type slice struct {
	e []*Entry
	i int
}

func (s *slice) Next() (*Entry, error) {
	if s.i >= len(s.e) {
		return nil, io.EOF
	}
	s.i++
	return s.e[s.i-1], nil
}

// pcrsTxt reads testdata/real-kernel-ima-sig/pcrs.txt ("BANK INDEX HEX").
func pcrsTxt(t testing.TB, alg mr.Alg) map[int]mr.Digest {
	t.Helper()
	f, err := os.Open(filepath.Join(realDir(t), "pcrs.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := ParsePCRFile(bufio.NewReader(f), alg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func isMismatch(err error) bool { return errors.Is(err, eventlog.ErrMismatch) }

var _ = context.Background
