package vmr

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/internal/safefs"
)

// Attacks on the guest side (issue 15). Each test failed before its fix.

// victim is a file an attacker wants root to overwrite through a link.
func victim(t *testing.T) (string, []byte) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "victim")
	content := []byte("root's precious file\n")
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, content
}

func requireUntouched(t *testing.T, p string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("%s was written through a link: %q", p, got)
	}
}

func openSimDev(t *testing.T, dir string) *sim.Device {
	t.Helper()
	dev, err := sim.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	return dev
}

// Item 22: a log folder another user owns is refused: they could plant
// links in it that root's writes follow.
func TestAttack22_LogFolderOfAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a folder to another user (make test runs as root)")
	}
	dir := t.TempDir()
	dev := openSimDev(t, filepath.Join(dir, "sim"))
	logDir := filepath.Join(dir, "log")
	if err := os.Mkdir(logDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(logDir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), dev, Options{Dir: logDir})
	if err == nil {
		s.Close()
		t.Fatal("Open accepted a log folder owned by uid 65534")
	}
	if !errors.Is(err, safefs.ErrUnsafe) {
		t.Fatalf("Open: %v, want ErrUnsafe", err)
	}
}

// Item 22 variant: a folder others may write to is refused too.
func TestAttack22_WorldWritableLogFolder(t *testing.T) {
	dir := t.TempDir()
	dev := openSimDev(t, filepath.Join(dir, "sim"))
	logDir := filepath.Join(dir, "log")
	if err := os.Mkdir(logDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(logDir, 0o777); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(context.Background(), dev, Options{Dir: logDir}); !errors.Is(err, safefs.ErrUnsafe) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("Open of a world-writable folder: %v, want ErrUnsafe", err)
	}
}

// Item 22: a link planted at the cut's temporary name (rtmr3.log.new) is
// not followed: the cut writes its own new file and the link's target, and
// later extends, leave the victim alone.
func TestAttack22_CutFollowsPlantedLink(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	_, s := openSim(t, dir)
	if _, err := s.Extend(ctx, "mr_app", digestN("a", 0)); err != nil {
		t.Fatal(err)
	}
	target, content := victim(t)
	if err := os.Symlink(target, s.Path()+".new"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cut(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Extend(ctx, "mr_app", digestN("a", 1)); err != nil {
		t.Fatal(err)
	}
	requireUntouched(t, target, content)
	if fi, err := os.Lstat(s.Path()); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("the log is not a regular file after the cut: %v %v", fi, err)
	}
}

// Item 22 variant: the log itself replaced by a link is refused, and the
// link's target is not extended into.
func TestAttack22_LogIsALink(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dev := openSimDev(t, filepath.Join(dir, "sim"))
	logDir := filepath.Join(dir, "log")
	if err := os.Mkdir(logDir, 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(logDir, "rtmr3.log")); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, dev, Options{Dir: logDir})
	if err == nil {
		s.Extend(ctx, "mr_app", digestN("a", 0))
		s.Close()
	}
	requireUntouched(t, target, nil)
	if !errors.Is(err, safefs.ErrUnsafe) {
		t.Fatalf("Open through a link: %v, want ErrUnsafe", err)
	}
}

// Item 22 variant: the forwarder's state is written through a temporary
// file; a link planted at that name is not followed.
func TestAttack22_ForwardStateLink(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	_, s := openSim(t, dir)
	list := filepath.Join(dir, "ima.bin")
	writeFile(t, list, realList(t))
	target, content := victim(t)
	if err := os.Symlink(target, s.forwardStatePath("mr_ima")+".tmp"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Forward(ctx, ForwardOptions{List: list}); err != nil {
		t.Fatal(err)
	}
	requireUntouched(t, target, content)
}
