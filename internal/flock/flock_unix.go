//go:build unix

package flock

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

func how(m Mode) int {
	if m == Exclusive {
		return unix.LOCK_EX
	}
	return unix.LOCK_SH
}

func try(f *os.File, m Mode) error {
	return retryEINTR(func() error { return unix.Flock(int(f.Fd()), how(m)|unix.LOCK_NB) })
}

func wait(f *os.File, m Mode) error {
	return retryEINTR(func() error { return unix.Flock(int(f.Fd()), how(m)) })
}

func unlock(f *os.File) error { return unix.Flock(int(f.Fd()), unix.LOCK_UN) }

func wouldBlock(err error) bool { return errors.Is(err, unix.EWOULDBLOCK) }

func retryEINTR(fn func() error) error {
	for {
		if err := fn(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
