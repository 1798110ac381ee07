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
	"path/filepath"
	"strings"
)

// ErrUnsafe marks a folder or file that others could have planted or can
// change under the caller.
var ErrUnsafe = errors.New("unsafe state folder")

// CheckDir refuses dir unless it is a folder owned by the caller's effective
// user that neither its group nor others may write to, reached from / only
// through folders and links nobody else controls (the rule of sshd's
// StrictModes and of secure_path): the absolute, cleaned path is walked
// from / with Lstat on each component; a symbolic link is accepted only if
// it belongs to root or the caller, and its target is then walked the same
// way (so /var/run -> /run works); every folder above dir must belong to
// root or the caller and be writable by neither its group nor others unless
// it has the sticky bit (/tmp). A user who can write no ancestor can neither
// rename dir away after the check nor swap a link on the way, so opening
// files in dir by name later stays safe.
func CheckDir(dir string) error {
	if dir == "" {
		return fmt.Errorf("empty folder name: %w", ErrUnsafe)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	uid := os.Geteuid()
	// cur is the part walked so far: free of links, so ".." is its parent.
	cur := "/"
	if err := checkAncestor(cur, dir, uid); err != nil {
		return err
	}
	rest := splitPath(abs)
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, c)
		fi, err := os.Lstat(next)
		if err != nil {
			return err
		}
		stUID, ok := owner(fi)
		if !ok {
			return fmt.Errorf("%s: no owner information: %w", next, ErrUnsafe)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if stUID != 0 && int(stUID) != uid {
				return fmt.Errorf("%s (on the way to %s) is a symbolic link of uid %d, neither root's nor this user's (uid %d): %w", next, dir, stUID, uid, ErrUnsafe)
			}
			links++
			if links > 40 {
				return fmt.Errorf("%s: too many symbolic links: %w", dir, ErrUnsafe)
			}
			target, err := os.Readlink(next)
			if err != nil {
				return err
			}
			if filepath.IsAbs(target) {
				cur = "/"
			}
			rest = append(splitPath(target), rest...)
			continue
		}
		if !more(rest) {
			return checkFolder(next, fi, stUID, uid)
		}
		if err := checkAncestorInfo(next, dir, fi, stUID, uid); err != nil {
			return err
		}
		cur = next
	}
	// The walk ended on a folder already walked through (/, or one a
	// link's ".." led back to): it is the folder.
	fi, err := os.Lstat(cur)
	if err != nil {
		return err
	}
	stUID, ok := owner(fi)
	if !ok {
		return fmt.Errorf("%s: no owner information: %w", cur, ErrUnsafe)
	}
	return checkFolder(cur, fi, stUID, uid)
}

// more reports whether rest names another component to walk into.
func more(rest []string) bool {
	for _, c := range rest {
		if c != "" && c != "." {
			return true
		}
	}
	return false
}

func splitPath(p string) []string { return strings.Split(p, "/") }

func checkAncestor(p, dir string, uid int) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	stUID, ok := owner(fi)
	if !ok {
		return fmt.Errorf("%s: no owner information: %w", p, ErrUnsafe)
	}
	return checkAncestorInfo(p, dir, fi, stUID, uid)
}

// checkAncestorInfo refuses a folder above dir that someone other than root
// and the caller could rename entries in.
func checkAncestorInfo(p, dir string, fi fs.FileInfo, owner uint32, uid int) error {
	if !fi.IsDir() {
		return fmt.Errorf("%s (on the way to %s) is not a folder: %w", p, dir, ErrUnsafe)
	}
	if owner != 0 && int(owner) != uid {
		return fmt.Errorf("%s (a folder above %s) belongs to uid %d, neither root nor this user (uid %d), who could move the folder away: %w", p, dir, owner, uid, ErrUnsafe)
	}
	if m := fi.Mode(); m.Perm()&0o022 != 0 && m&fs.ModeSticky == 0 {
		return fmt.Errorf("%s (a folder above %s) has mode %04o: group or others may write to it and move the folder away (chmod go-w it, or use another folder): %w", p, dir, m.Perm(), ErrUnsafe)
	}
	return nil
}

// checkFolder is the check of the folder itself: the caller's, and writable
// by nobody else.
func checkFolder(dir string, fi fs.FileInfo, owner uint32, uid int) error {
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a folder: %w", dir, ErrUnsafe)
	}
	if int(owner) != uid {
		return fmt.Errorf("%s belongs to uid %d, not to this user (uid %d); use a folder of your own: %w", dir, owner, uid, ErrUnsafe)
	}
	if m := fi.Mode().Perm(); m&0o022 != 0 {
		return fmt.Errorf("%s has mode %04o: group or others may write to it (chmod go-w it): %w", dir, m, ErrUnsafe)
	}
	return nil
}

// OpenFile is os.OpenFile that refuses to follow a symbolic link at name
// and refuses anything but a regular file.
func OpenFile(name string, flag int, perm os.FileMode) (*os.File, error) {
	if err := refuseLink(name); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(name, flag|oNoFollow, perm)
	if err != nil {
		if isLoop(err) {
			return nil, errLink(name)
		}
		return nil, err
	}
	if err := noFollowCheck(name, f); err != nil {
		f.Close()
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

// errLink is the refusal of a symbolic link at name.
func errLink(name string) error {
	return fmt.Errorf("%s is a symbolic link, refused: %w", name, ErrUnsafe)
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
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|oNoFollow, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// WriteFile replaces path with what write writes, through a temporary file
// in the same folder renamed over it: a reader sees the old file or the new
// one, never part of one, and a link at path is replaced, not followed. tmp
// names the temporary file (created anew, as CreateTemp does); "" makes a
// unique one, for writers that may run at once. With sync the file and then
// its folder are fsynced. On failure the temporary file is removed and path
// is untouched.
func WriteFile(path, tmp string, perm os.FileMode, sync bool, write func(io.Writer) error) error {
	var f *os.File
	var err error
	if tmp == "" {
		if f, err = os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp"); err == nil {
			err = f.Chmod(perm)
		}
	} else {
		f, err = CreateTemp(tmp, perm)
	}
	if f == nil {
		return err
	}
	tmp = f.Name()
	if err == nil {
		err = write(f)
	}
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if sync {
		if d, err := os.Open(filepath.Dir(path)); err == nil {
			d.Sync()
			d.Close()
		}
	}
	return nil
}

// Owner is the uid that owns the file fi describes; ok is false where
// ownership is no uid (off Unix), so a caller refuses the file.
func Owner(fi fs.FileInfo) (uid uint32, ok bool) { return owner(fi) }
