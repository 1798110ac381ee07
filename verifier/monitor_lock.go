package verifier

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// LockState takes an exclusive lock on the monitor state file at path: a
// flock on path+".lock", created beside it (never followed through a
// symbolic link). Hold it from LoadState to Save, so that two verifications
// sharing one state file neither lose each other's update nor read a
// half-written one. It gives up when ctx ends.
func LockState(ctx context.Context, path string) (unlock func(), err error) {
	lp := path + ".lock"
	f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("monitor state lock: %w", err)
	}
	if err := flock(ctx, f); err != nil {
		return nil, fmt.Errorf("monitor state lock %s: %w", lp, err)
	}
	return func() {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}

// flock takes an exclusive flock on f. It blocks in the kernel (fair, no
// polling); when ctx ends first, a goroutine waits for the lock, drops it
// and closes f. On any error f is closed (or will be).
func flock(ctx context.Context, f *os.File) error {
	fd := int(f.Fd())
	err := retryEINTR(func() error { return unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) })
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		f.Close()
		return err
	}
	done := make(chan error, 1)
	go func() { done <- retryEINTR(func() error { return unix.Flock(fd, unix.LOCK_EX) }) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
		}
		return err
	case <-ctx.Done():
		// f stays open until the blocked flock returns: closing it
		// now could hand its descriptor number to another file.
		go func() {
			if <-done == nil {
				unix.Flock(fd, unix.LOCK_UN)
			}
			f.Close()
		}()
		return ctx.Err()
	}
}

func retryEINTR(fn func() error) error {
	for {
		if err := fn(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
