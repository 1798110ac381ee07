package sim

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/internal/safefs"
	"github.com/ccmr-dev/ccmr/mr"
)

// Red team round 3: the state folder is checked once, by name, at Open;
// every later access goes by name again. When the folder's parent is
// writable by another user, that user swaps the folder for one of their own
// after Open, and root reads the registers from (and writes them to) the
// attacker's state.json: the attacker sets register values at will.
func TestRedteam3_StateFolderSwappedThroughParent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a folder to another user")
	}
	ctx := context.Background()
	root := t.TempDir()
	parent := filepath.Join(root, "shared")
	if err := os.Mkdir(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(parent, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "sim")
	d, err := Open(ctx, dir)
	if err != nil {
		if errors.Is(err, safefs.ErrUnsafe) {
			return // refused up front: safe
		}
		t.Fatal(err)
	}
	defer d.Close()
	dg := mr.Digest{Alg: mr.SHA384, Bytes: bytes.Repeat([]byte{7}, 48)}
	if err := d.Extend(ctx, "rtmr3", dg); err != nil {
		t.Fatal(err)
	}
	before, err := d.Read(ctx, "rtmr3")
	if err != nil {
		t.Fatal(err)
	}
	// The attacker's folder: a fresh device's state (all registers zero).
	other := filepath.Join(root, "other")
	od, err := Open(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	od.Close()
	if err := os.Rename(dir, filepath.Join(parent, "old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, dir); err != nil {
		t.Fatal(err)
	}
	filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, 65534, 65534) })
	evil, _ := os.ReadFile(filepath.Join(dir, stateFile))

	after, err := d.Read(ctx, "rtmr3")
	if err == nil && !after[0].Digest.Equal(before[0].Digest) {
		t.Fatalf("rtmr3 read %s from the swapped-in folder of uid 65534, was %s", after[0].Digest.Hex(), before[0].Digest.Hex())
	}
	d.Extend(ctx, "rtmr3", dg)
	if got, _ := os.ReadFile(filepath.Join(dir, stateFile)); !bytes.Equal(got, evil) {
		t.Fatal("root wrote the state into the swapped-in folder of uid 65534")
	}
}

// CheckDir stats the folder through a symbolic link: a link another user
// planted where the state folder goes (sudo keeping the user's HOME makes
// $HOME/.local/state/ccmr/sim such a place) and pointing at any folder of
// root's that only root may write (/etc, say) passes the check, and root
// creates its lock, state and runtime log there.
func TestRedteam3_StateFolderIsALinkToRootsFolder(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a folder to another user")
	}
	ctx := context.Background()
	root := t.TempDir()
	victim := filepath.Join(root, "etc") // root's, 0755
	if err := os.Mkdir(victim, 0o755); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(root, "home") // the other user's
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(home, "sim")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{home} {
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	os.Lchown(link, 65534, 65534)
	d, err := Open(ctx, link)
	if err == nil {
		d.Close()
	}
	if es, _ := os.ReadDir(victim); len(es) != 0 {
		t.Fatalf("Open through a link of uid 65534 wrote %d file(s) into root's folder %s (err %v)", len(es), victim, err)
	}
}
