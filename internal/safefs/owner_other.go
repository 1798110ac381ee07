//go:build !unix

package safefs

import (
	"io/fs"
	"os"
)

// oNoFollow is 0: this system's open has no O_NOFOLLOW; OpenFile checks for
// a link with Lstat before and after opening instead (noFollowCheck).
const oNoFollow = 0

// isLoop is false: without O_NOFOLLOW, open never reports a link this way.
func isLoop(error) bool { return false }

// owner reports no owner: file ownership here is not a uid, so CheckDir
// refuses every folder (fail closed: the state folders of the devices and
// the runtime-log store are for Linux guests).
func owner(fs.FileInfo) (uint32, bool) { return 0, false }

// noFollowCheck refuses name if it is a symbolic link now, or if the file
// just opened as f is not the one at name (a link swapped in between).
func noFollowCheck(name string, f *os.File) error {
	li, err := os.Lstat(name)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if li.Mode()&fs.ModeSymlink != 0 || !os.SameFile(li, fi) {
		return errLink(name)
	}
	return nil
}

// refuseLink refuses name if it is a symbolic link, before opening it (so
// that O_TRUNC or O_CREATE do not act on a link's target); noFollowCheck
// then catches a link swapped in between.
func refuseLink(name string) error {
	if li, err := os.Lstat(name); err == nil && li.Mode()&fs.ModeSymlink != 0 {
		return errLink(name)
	}
	return nil
}
