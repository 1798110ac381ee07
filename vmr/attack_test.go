package vmr

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/internal/imatest"
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

// forwardPrefix forwards the first n entries of the real list from list and
// returns the entries.
func forwardPrefix(t *testing.T, s *Store, list string, n int) [][]byte {
	t.Helper()
	entries := splitIMA(t, realList(t))
	writeFile(t, list, joinEntries(entries[:n]))
	if got, err := s.Forward(context.Background(), ForwardOptions{List: list}); err != nil || got != n {
		t.Fatalf("Forward = %d, %v; want %d", got, err, n)
	}
	return entries
}

func joinEntries(es [][]byte) []byte {
	var b []byte
	for _, e := range es {
		b = append(b, e...)
	}
	return b
}

// Item 24: a list shorter than what was forwarded said "forwarded 0" and
// succeeded; it is refused.
func TestAttack24_ShorterList(t *testing.T) {
	dir := t.TempDir()
	_, s := openSim(t, dir)
	list := filepath.Join(dir, "ima.bin")
	entries := forwardPrefix(t, s, list, 30)
	writeFile(t, list, joinEntries(entries[:20]))
	n, err := s.Forward(context.Background(), ForwardOptions{List: list})
	if !errors.Is(err, ErrInconsistent) {
		t.Fatalf("Forward of a shorter list = %d, %v; want ErrInconsistent", n, err)
	}
}

// specList is a list of n ima-ng entries; the entry at index changed (if
// any) has another file name of the same length, so every entry keeps its
// offset.
func specList(n, changed int) []byte {
	specs := make([]imatest.Spec, n)
	for i := range specs {
		name := fmt.Sprintf("/usr/bin/f%04d", i)
		if i == changed {
			name = fmt.Sprintf("/usr/bin/x%04d", i)
		}
		specs[i] = imatest.Spec{Template: "ima-ng", FileAlg: "sha256", Name: name}
	}
	return imatest.Binary(specs, binary.LittleEndian)
}

// Item 24: a different list was forwarded from the old offset without
// comparing what came before. Refused: with the hint when the entry
// forwarded last differs, and without it when any forwarded entry does.
func TestAttack24_DifferentList(t *testing.T) {
	for _, tc := range []struct {
		name     string
		changed  int
		keepHint bool
	}{
		{"last forwarded entry differs", 19, true},
		{"earlier entry differs, no hint", 5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			_, s := openSim(t, dir)
			list := filepath.Join(dir, "ima.bin")
			writeFile(t, list, specList(20, -1))
			if n, err := s.Forward(ctx, ForwardOptions{List: list}); err != nil || n != 20 {
				t.Fatalf("Forward = %d, %v", n, err)
			}
			// Another list whose entries keep their offsets, and longer.
			writeFile(t, list, specList(30, tc.changed))
			if !tc.keepHint {
				os.Remove(s.forwardStatePath("mr_ima"))
			}
			n, err := s.Forward(ctx, ForwardOptions{List: list})
			if !errors.Is(err, ErrInconsistent) {
				t.Fatalf("Forward of another list = %d, %v; want ErrInconsistent", n, err)
			}
			if got, _ := s.Records(ctx, "mr_ima"); got != 20 {
				t.Fatalf("mr_ima has %d records after the refusal, want 20", got)
			}
		})
	}
}

// The sound case: the same list grown by the kernel is forwarded on.
func TestForwardGrownList(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	_, s := openSim(t, dir)
	list := filepath.Join(dir, "ima.bin")
	writeFile(t, list, specList(20, -1))
	if n, err := s.Forward(ctx, ForwardOptions{List: list}); err != nil || n != 20 {
		t.Fatalf("Forward = %d, %v", n, err)
	}
	writeFile(t, list, specList(30, -1))
	if n, err := s.Forward(ctx, ForwardOptions{List: list}); err != nil || n != 10 {
		t.Fatalf("Forward of the grown list = %d, %v; want 10", n, err)
	}
	checkForwarded(t, s, list, 30)
}

// Item 24: an error in the part of the list after the resume point names
// the entry and byte offset from the list's start.
func TestAttack24_TornTailOffsets(t *testing.T) {
	dir := t.TempDir()
	_, s := openSim(t, dir)
	list := filepath.Join(dir, "ima.bin")
	entries := forwardPrefix(t, s, list, 20)
	whole := joinEntries(entries[:21])
	torn := append(append([]byte(nil), whole...), entries[21][:len(entries[21])/2]...)
	writeFile(t, list, torn)
	_, err := s.Forward(context.Background(), ForwardOptions{List: list})
	var le *eventlog.Error
	if !errors.As(err, &le) {
		t.Fatalf("Forward of a torn list: %v, want a *eventlog.Error", err)
	}
	if le.Record != 21 || le.Offset != int64(len(whole)) {
		t.Fatalf("torn entry reported as record %d at byte %d, want record 21 at byte %d (%v)", le.Record, le.Offset, len(whole), err)
	}
}
