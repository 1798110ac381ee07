// Package safefs opens the files of a state folder (runtime logs, the
// forwarder's state, the sim device's state) without being turned by
// whoever else can write there. A process running as root that follows a
// symbolic link planted in a folder another user controls overwrites the
// file the link points to; so the folder must belong to the caller and be
// writable by nobody else, files are opened with O_NOFOLLOW, and temporary
// files are created anew with O_EXCL.
package safefs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// ErrUnsafe marks a folder or file that others could have planted or can
// change under the caller.
var ErrUnsafe = errors.New("unsafe state folder")

// CheckDir refuses dir unless it is a folder owned by the caller's effective
// user that neither its group nor others may write to.
func CheckDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a folder: %w", dir, ErrUnsafe)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner information: %w", dir, ErrUnsafe)
	}
	if uid := os.Geteuid(); int(st.Uid) != uid {
		return fmt.Errorf("%s belongs to uid %d, not to this user (uid %d); use a folder of your own: %w", dir, st.Uid, uid, ErrUnsafe)
	}
	if m := fi.Mode().Perm(); m&0o022 != 0 {
		return fmt.Errorf("%s has mode %04o: group or others may write to it (chmod go-w it): %w", dir, m, ErrUnsafe)
	}
	return nil
}

// OpenFile is os.OpenFile that refuses to follow a symbolic link at name
// and refuses anything but a regular file.
func OpenFile(name string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(name, flag|syscall.O_NOFOLLOW, perm)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%s is a symbolic link, refused: %w", name, ErrUnsafe)
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file (%v): %w", name, fi.Mode().Type(), ErrUnsafe)
	}
	return f, nil
}

// Open opens name for reading like OpenFile.
func Open(name string) (*os.File, error) { return OpenFile(name, os.O_RDONLY, 0) }

// ReadFile reads name like os.ReadFile, refusing a symbolic link.
func ReadFile(name string) ([]byte, error) {
	f, err := Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// CreateTemp creates the temporary file name anew for writing: whatever is
// at name (a file left by a crash, or a link someone planted) is removed
// first, which never touches a link's target, and the file is then created
// with O_EXCL|O_NOFOLLOW, so no link can be followed in between.
func CreateTemp(name string, perm os.FileMode) (*os.File, error) {
	if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}
