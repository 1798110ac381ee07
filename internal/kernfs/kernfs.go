// Package kernfs is the file access the TDX and SNP backends share, on
// kernel paths ("/sys/...", "/dev/..."): a configfsi.Client (so
// go-configfs-tsm's report and rtmr packages run over it) plus Stat, with the
// operating system's files under a root folder, so tests and tdx:ROOT run the
// backends against an emulation of the kernel's files.
package kernfs

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
)

// FS is the file access the backends need. WriteFile must open an existing
// file for writing and write the bytes with one write(2) (no create, no
// truncate), so that sysfs sees exactly the write it is given.
type FS interface {
	configfsi.Client
	Stat(name string) (fs.FileInfo, error)
}

// OS returns the operating system's files under root ("/" for the machine).
func OS(root string) FS { return osFS{root: root} }

type osFS struct{ root string }

func (o osFS) host(p string) string { return filepath.Join(o.root, filepath.FromSlash(p)) }

func (o osFS) ReadFile(name string) ([]byte, error) { return os.ReadFile(o.host(name)) }

func (o osFS) WriteFile(name string, b []byte) error {
	f, err := os.OpenFile(o.host(name), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (o osFS) Stat(name string) (fs.FileInfo, error)      { return os.Stat(o.host(name)) }
func (o osFS) ReadDir(name string) ([]os.DirEntry, error) { return os.ReadDir(o.host(name)) }
func (o osFS) RemoveAll(name string) error                { return os.Remove(o.host(name)) } // configfs: rmdir only

func (o osFS) MkdirTemp(dir, pattern string) (string, error) {
	p, err := os.MkdirTemp(o.host(dir), pattern)
	if err != nil {
		return "", err
	}
	return path.Join(dir, filepath.Base(p)), nil
}
