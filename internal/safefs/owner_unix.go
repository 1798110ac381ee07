//go:build unix

package safefs

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// oNoFollow makes open(2) refuse a symbolic link as the last component.
const oNoFollow = syscall.O_NOFOLLOW

// isLoop reports whether err is open(2)'s answer to O_NOFOLLOW meeting a link.
func isLoop(err error) bool { return errors.Is(err, syscall.ELOOP) }

// owner returns the uid that owns fi.
func owner(fi fs.FileInfo) (uint32, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Uid, true
}

// refuseLink does nothing: O_NOFOLLOW refuses a link atomically.
func refuseLink(string) error { return nil }

// noFollowCheck does nothing: O_NOFOLLOW refused a link atomically.
func noFollowCheck(string, *os.File) error { return nil }
