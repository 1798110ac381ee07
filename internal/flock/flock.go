// Package flock takes advisory whole-file locks that honour a context: the
// one lock primitive of ccmr (the sim device's state, the runtime-log store,
// the IMA forwarder and the verifier's monitor state all use it).
//
// On Unix it is flock(2), retried on EINTR, blocking in the kernel (fair,
// no polling); on Windows LockFileEx over the whole file. When ctx ends
// while the lock is awaited, a goroutine keeps waiting, drops the lock as
// soon as it is granted, and only then lets go of the descriptor, so that
// closing it early cannot hand its number to another file.
package flock

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// Mode is a lock's kind.
type Mode int

const (
	// Shared admits other shared holders (readers).
	Shared Mode = iota
	// Exclusive admits no other holder.
	Exclusive
)

// ErrUnsupported is returned where the operating system has no file locks.
var ErrUnsupported = errors.New("flock: file locks are not supported on this system")

// Lock takes a lock of mode m on f, giving up when ctx ends. On an error the
// caller still owns f, except when ctx ended (the error is ctx.Err()): then
// f is closed, at once or when the abandoned wait returns, and the caller
// must not use or close it.
func Lock(ctx context.Context, f *os.File, m Mode) error {
	err := try(f, m)
	if err == nil {
		return nil
	}
	if !wouldBlock(err) {
		return fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	if err := ctx.Err(); err != nil {
		f.Close()
		return err
	}
	done := make(chan error, 1)
	go func() { done <- wait(f, m) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		return nil
	case <-ctx.Done():
		go func() {
			if <-done == nil {
				unlock(f)
			}
			f.Close()
		}()
		return ctx.Err()
	}
}

// Unlock drops the lock on f.
func Unlock(f *os.File) error { return unlock(f) }
