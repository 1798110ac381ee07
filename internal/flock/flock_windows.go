//go:build windows

package flock

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// The whole file: LockFileEx locks a byte range; this one covers every
// offset.
const allLow, allHigh = ^uint32(0), ^uint32(0)

func flags(m Mode) uint32 {
	if m == Exclusive {
		return windows.LOCKFILE_EXCLUSIVE_LOCK
	}
	return 0
}

func try(f *os.File, m Mode) error {
	ol := new(windows.Overlapped)
	return windows.LockFileEx(windows.Handle(f.Fd()), flags(m)|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, allLow, allHigh, ol)
}

func wait(f *os.File, m Mode) error {
	ol := new(windows.Overlapped)
	return windows.LockFileEx(windows.Handle(f.Fd()), flags(m), 0, allLow, allHigh, ol)
}

func unlock(f *os.File) error {
	ol := new(windows.Overlapped)
	return windows.UnlockFileEx(windows.Handle(f.Fd()), 0, allLow, allHigh, ol)
}

func wouldBlock(err error) bool { return errors.Is(err, windows.ERROR_LOCK_VIOLATION) }
