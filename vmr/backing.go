package vmr

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ccmr-dev/ccmr/internal/safefs"
	"github.com/ccmr-dev/ccmr/mr"
)

// BackingFile names the file of a runtime-log folder that records the
// folder's backing register: one line, the register's name ("pcr14\n").
// Open writes it before the folder's first log, so every later command
// (and every other process) uses the register the first one chose without
// being told again; a different Options.Backing is an error naming both.
const BackingFile = "backing"

// TPMDefaultBacking is the backing register on a device without rtmr3 (a
// TPM): PCR 14, which the OS can extend (locality 0) and nobody can reset.
// PCRs 17-22 need localities an OS lacks, 16 and 23 can be reset from the
// guest, and shim's MokList events, the only others on PCR 14, are what the
// verifier accepts before a runtime log's start (docs/tpm.md).
const TPMDefaultBacking = "pcr14"

// ErrBackingMismatch means a backing register was named that is not the
// one the runtime-log folder records.
var ErrBackingMismatch = errors.New("backing register differs from the one the runtime-log folder records")

// ErrUnrecorded means a folder from before the backing file holds the logs
// of several registers: the caller must name one (Options.Backing), which
// is then used without being recorded.
var ErrUnrecorded = errors.New("several runtime logs and no backing file")

// maxBackingFile bounds what is read of a backing file: a name and a newline.
const maxBackingFile = 64

// RecordedBacking returns the backing register the runtime-log folder dir
// records, or "" when dir does not exist or holds no runtime log yet. A
// folder written before the backing file existed records the register of
// its one REGISTER.log; several logs and no backing file is an error, as
// is a folder or backing file someone else owns or may write (a planted
// file would choose the register root extends), or a backing file that is
// not one register name and a newline.
func RecordedBacking(dir string) (string, error) {
	path := filepath.Join(dir, BackingFile)
	// Nothing to read (no folder, an empty one, or one this user cannot
	// look into): no runtime log, as before the backing file existed, so
	// that reading real registers never fails on someone else's folder.
	// Anything found is used only once the folder is proven ours.
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		if logs, _ := filepath.Glob(filepath.Join(dir, "*.log")); len(logs) == 0 {
			return "", nil
		}
	}
	if err := safefs.CheckDir(dir); err != nil {
		return "", fmt.Errorf("vmr: runtime log folder: %w", err)
	}
	name, err := readBackingFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return name, err
	}
	// No backing file: a folder from before it, with the logs' names.
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		return "", fmt.Errorf("vmr: %w", err)
	}
	switch len(logs) {
	case 0:
		return "", nil
	case 1:
		name := strings.TrimSuffix(filepath.Base(logs[0]), ".log")
		if !validBackingName(name) {
			return "", fmt.Errorf("vmr: %s: %q is no register name, and %s has no %s file: %w", logs[0], name, dir, BackingFile, mr.ErrMalformed)
		}
		return name, nil
	}
	sort.Strings(logs)
	for i := range logs {
		logs[i] = filepath.Base(logs[i])
	}
	return "", fmt.Errorf("vmr: %s holds runtime logs %s and no %s file: name the backing register (--backing): %w", dir, strings.Join(logs, ", "), BackingFile, ErrUnrecorded)
}

// readBackingFile reads and checks a backing file; a missing file is an
// error that wraps fs.ErrNotExist.
func readBackingFile(path string) (string, error) {
	f, err := safefs.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		return "", fmt.Errorf("vmr: %w", err)
	}
	defer f.Close()
	if err := checkOwned(f, path); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxBackingFile+1))
	if err != nil {
		return "", fmt.Errorf("vmr: %s: %w", path, err)
	}
	return parseBacking(path, b)
}

// parseBacking checks a backing file's bytes: a register name and "\n".
func parseBacking(path string, b []byte) (string, error) {
	if len(b) > maxBackingFile {
		return "", fmt.Errorf("vmr: %s: longer than %d bytes: %w", path, maxBackingFile, mr.ErrMalformed)
	}
	i := strings.IndexByte(string(b), '\n')
	if i < 0 {
		return "", fmt.Errorf("vmr: %s: byte %d: no newline after the register name: %w", path, len(b), mr.ErrMalformed)
	}
	if i != len(b)-1 {
		return "", fmt.Errorf("vmr: %s: byte %d: data after the register name's line: %w", path, i+1, mr.ErrMalformed)
	}
	name := string(b[:i])
	if !validBackingName(name) {
		for j := 0; j < len(name); j++ {
			if c := name[j]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
				return "", fmt.Errorf("vmr: %s: byte %d: %q is not a register name (want [a-z][a-z0-9]{0,15}): %w", path, j, name, mr.ErrMalformed)
			}
		}
		return "", fmt.Errorf("vmr: %s: byte 0: %q is not a register name (want [a-z][a-z0-9]{0,15}): %w", path, name, mr.ErrMalformed)
	}
	return name, nil
}

// validBackingName: a real register's name (pcr14, rtmr3), never a
// virtual one, a path or anything a terminal would interpret.
func validBackingName(s string) bool {
	if len(s) == 0 || len(s) > 16 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// recordBacking writes dir's backing file naming name, unless one exists:
// the file is written in full under a temporary name and then linked to its
// place, which fails when another process recorded a register first; that
// one then wins and must be name too.
func recordBacking(dir, name string) error {
	path := filepath.Join(dir, BackingFile)
	f, err := os.CreateTemp(dir, "."+BackingFile+".*.tmp")
	if err != nil {
		return fmt.Errorf("vmr: recording the backing register: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.WriteString(name + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("vmr: recording the backing register: %w", err)
	}
	if err := os.Link(tmp, path); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("vmr: recording the backing register: %w", err)
		}
		got, rerr := readBackingFile(path)
		if rerr != nil {
			return rerr
		}
		if got != name {
			return fmt.Errorf("vmr: %s records %s, not %s: %w", path, got, name, ErrBackingMismatch)
		}
		return nil
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// checkOwned refuses an open file of the log folder that belongs to another
// user or that its group or others may write: the folder is ours
// (safefs.CheckDir), but a file in it may have been made by another user
// before it became so (a stale log of another user's run), and such a file
// would choose what root extends.
func checkOwned(f *os.File, path string) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("vmr: %w", err)
	}
	if u, ok := safefs.Owner(fi); !ok || int(u) != os.Geteuid() {
		uid := -1
		if ok {
			uid = int(u)
		}
		return fmt.Errorf("vmr: %s belongs to uid %d, not to this user (uid %d): refused: %w", path, uid, os.Geteuid(), safefs.ErrUnsafe)
	}
	if m := fi.Mode().Perm(); m&0o022 != 0 {
		return fmt.Errorf("vmr: %s has mode %04o: group or others may write to it: refused: %w", path, m, safefs.ErrUnsafe)
	}
	return nil
}
