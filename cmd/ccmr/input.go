package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ccmr-dev/ccmr/mr"
)

// maxInput bounds a file the CLI reads whole (evidence parts, application
// logs): /dev/zero given as one must end in exit 2, not in the OOM killer.
const maxInput = 128 << 20

// chunkSize is how much one read takes from an input.
const chunkSize = 1 << 20

// chunk is one read's result.
type chunk struct {
	b   []byte
	err error
}

// streamInput opens name ("-": stdin, when stdin is not nil) and reads it chunk by chunk on its own
// goroutine, passing each chunk to fn, until EOF, an error, or ctx's end
// (SIGINT/SIGTERM in the CLI). Opening a FIFO blocks until a writer comes and
// a read of standard input until data does, and neither can be interrupted:
// so they happen on that goroutine, and a cancelled ctx returns at once,
// leaving it to end with the process. At most two chunks are in memory.
func streamInput(ctx context.Context, name string, stdin io.Reader, fn func([]byte) error) error {
	ch := make(chan chunk, 1)
	done := make(chan struct{})
	defer close(done)
	send := func(c chunk) bool {
		select {
		case ch <- c:
			return true
		case <-done:
			return false
		}
	}
	go func() {
		r := stdin
		if name != "-" || stdin == nil {
			f, err := os.Open(name)
			if err != nil {
				send(chunk{err: &exitError{code: exitUsage, err: err}})
				return
			}
			defer f.Close()
			r = f
		}
		for {
			b := make([]byte, chunkSize)
			n, err := io.ReadFull(r, b)
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = io.EOF
			}
			if n > 0 && !send(chunk{b: b[:n]}) {
				return
			}
			if err != nil {
				send(chunk{err: err})
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("reading %s: %w", inputName(name), context.Cause(ctx))
		case c := <-ch:
			if errors.Is(c.err, io.EOF) {
				return nil
			}
			if c.err != nil {
				var ee *exitError
				if errors.As(c.err, &ee) {
					return c.err
				}
				return fmt.Errorf("reading %s: %w", inputName(name), c.err)
			}
			if err := fn(c.b); err != nil {
				return err
			}
		}
	}
}

func inputName(name string) string {
	if name == "-" {
		return "standard input"
	}
	return name
}

// hashInput hashes name ("-" for standard input) as a stream, in every
// algorithm of algs at once, honouring ctx.
func hashInput(ctx context.Context, name string, stdin io.Reader, algs []mr.Alg) ([]mr.Digest, error) {
	hs := make([]hash.Hash, len(algs))
	for i, a := range algs {
		if !a.Valid() {
			return nil, fmt.Errorf("%w: algorithm %v", mr.ErrUnsupported, a)
		}
		hs[i] = a.New()
	}
	err := streamInput(ctx, name, stdin, func(b []byte) error {
		for _, h := range hs {
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]mr.Digest, len(algs))
	for i, a := range algs {
		out[i] = mr.Digest{Alg: a, Bytes: hs[i].Sum(nil)}
	}
	return out, nil
}

// readInputFile reads a whole file of at most maxInput bytes, honouring ctx;
// a larger one is bad input (exit 2).
func readInputFile(ctx context.Context, name string) ([]byte, error) {
	return readInput(ctx, name, nil)
}

// readInput is readInputFile that reads standard input for "-" (when stdin
// is not nil): a pipe is read whole, bounded by maxInput, on streamInput's
// goroutine, so SIGTERM ends a read whose writer never writes.
func readInput(ctx context.Context, name string, stdin io.Reader) ([]byte, error) {
	// Chunks are kept apart and joined once: growing one slice would
	// copy, and hold, up to twice the bound more.
	var chunks [][]byte
	n := 0
	err := streamInput(ctx, name, stdin, func(b []byte) error {
		if n += len(b); n > maxInput {
			return usageError("%s: more than %d bytes", inputName(name), maxInput)
		}
		chunks = append(chunks, b)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return bytes.Join(chunks, nil), nil
}

// requireRegular refuses (exit 2) a path that is not a regular file before a
// reader opens it with a blocking open: a FIFO without a writer would block
// there beyond SIGTERM, a device such as /dev/zero never end. The check
// opens with O_NONBLOCK, which neither blocks nor changes a regular file.
func requireRegular(name string) error {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return usageError("%s is not a regular file", name)
	}
	return nil
}

// requireInputFiles applies requireRegular, and the maxInput bound, to every
// named file that exists (empty names are unset flags; a missing file is
// left to the reader to report, as a state file may not exist yet).
func requireInputFiles(names ...string) error {
	for _, n := range names {
		if n == "" {
			continue
		}
		if _, err := os.Stat(n); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := requireRegular(n); err != nil {
			return err
		}
		if fi, err := os.Stat(n); err == nil && fi.Size() > maxInput {
			return usageError("%s: more than %d bytes", n, maxInput)
		}
	}
	return nil
}

// flagFiles returns the values of the named file flags of cmd (string or
// string array); names the command does not define are skipped.
func flagFiles(cmd *cobra.Command, names ...string) []string {
	var out []string
	for _, n := range names {
		f := cmd.Flags().Lookup(n)
		if f == nil {
			continue
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			out = append(out, sv.GetSlice()...)
		} else {
			out = append(out, f.Value.String())
		}
	}
	return out
}
