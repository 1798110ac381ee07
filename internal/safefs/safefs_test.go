//go:build unix

package safefs

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestCheckDir(t *testing.T) {
	dir := t.TempDir()
	if err := CheckDir(dir); err != nil {
		t.Fatalf("own 0700 folder: %v", err)
	}
	for _, mode := range []os.FileMode{0o777, 0o770, 0o702} {
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		if err := CheckDir(dir); !errors.Is(err, ErrUnsafe) {
			t.Errorf("mode %04o: %v, want ErrUnsafe", mode, err)
		}
	}
	os.Chmod(dir, 0o755)
	if err := CheckDir(dir); err != nil {
		t.Errorf("own 0755 folder: %v", err)
	}
	f := filepath.Join(dir, "file")
	os.WriteFile(f, nil, 0o600)
	if err := CheckDir(f); !errors.Is(err, ErrUnsafe) {
		t.Errorf("a file as folder: %v", err)
	}
}

func TestOpenFileRefusesLinksAndSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("x"), 0o600)
	link := filepath.Join(dir, "link")
	os.Symlink(target, link)
	if _, err := OpenFile(link, os.O_RDWR, 0); !errors.Is(err, ErrUnsafe) {
		t.Errorf("link: %v, want ErrUnsafe", err)
	}
	if _, err := OpenFile(dir, os.O_RDONLY, 0); !errors.Is(err, ErrUnsafe) {
		t.Errorf("folder: %v, want ErrUnsafe", err)
	}
	fifo := filepath.Join(dir, "fifo")
	syscall.Mkfifo(fifo, 0o600)
	if _, err := OpenFile(fifo, os.O_RDWR, 0); !errors.Is(err, ErrUnsafe) {
		t.Errorf("fifo: %v, want ErrUnsafe", err)
	}
	f, err := OpenFile(target, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func TestCreateTempReplacesLink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "x.tmp")
	// Without the link the test would pass over nothing.
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	f, err := CreateTemp(tmp, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("new")
	f.Close()
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Fatalf("target written through the link: %q", b)
	}
	if fi, err := os.Lstat(tmp); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("temporary is not a regular file: %v %v", fi, err)
	}
}

func TestCheckDirAncestorsAndLinks(t *testing.T) {
	dir := t.TempDir()
	own := filepath.Join(dir, "own")
	os.Mkdir(own, 0o700)
	// A link of the caller's, relative, with "..": followed and checked.
	link := filepath.Join(dir, "link")
	if err := os.Symlink("x/../own", link); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "x"), 0o755)
	if err := CheckDir(link); err != nil {
		t.Errorf("own link to own folder: %v", err)
	}
	// A group-writable ancestor without the sticky bit is refused; with it,
	// accepted.
	os.Chmod(dir, 0o775)
	if err := CheckDir(own); !errors.Is(err, ErrUnsafe) {
		t.Errorf("group-writable parent: %v, want ErrUnsafe", err)
	}
	os.Chmod(dir, os.ModeSticky|0o777)
	if err := CheckDir(own); err != nil {
		t.Errorf("sticky parent: %v", err)
	}
	os.Chmod(dir, 0o755)
	if os.Geteuid() != 0 {
		t.Log("another user's folder and link: not checked, needs root to chown (make test runs as root)")
		return
	}
	// Another user's parent, or another user's link, is refused.
	other := filepath.Join(dir, "other")
	os.Mkdir(other, 0o755)
	sub := filepath.Join(other, "sub")
	os.Mkdir(sub, 0o700)
	os.Chown(other, 65534, 65534)
	if err := CheckDir(sub); !errors.Is(err, ErrUnsafe) {
		t.Errorf("folder in another user's folder: %v, want ErrUnsafe", err)
	}
	os.Lchown(link, 65534, 65534)
	if err := CheckDir(link); !errors.Is(err, ErrUnsafe) {
		t.Errorf("another user's link: %v, want ErrUnsafe", err)
	}
}
