package sim

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/internal/safefs"
)

// Attacks on the sim state folder (issue 15, item 22). Each test failed
// before its fix.

func plantedVictim(t *testing.T, content []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func requireSame(t *testing.T, p string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("%s was written through a link: %q", p, got)
	}
}

func requireUnsafe(t *testing.T, dir string) {
	t.Helper()
	d, err := Open(context.Background(), dir)
	if err == nil {
		d.Close()
		t.Fatalf("Open(%s) accepted the folder", dir)
	}
	if !errors.Is(err, safefs.ErrUnsafe) {
		t.Fatalf("Open(%s): %v, want ErrUnsafe", dir, err)
	}
}

func TestAttack22_SimFolderOfAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a folder to another user (make test runs as root)")
	}
	dir := filepath.Join(t.TempDir(), "sim")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	requireUnsafe(t, dir)
}

func TestAttack22_WorldWritableSimFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sim")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	requireUnsafe(t, dir)
}

// A link at the state's temporary name is removed, not written through.
func TestAttack22_SimStateTempLink(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sim")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	content := []byte("root's precious file\n")
	target := plantedVictim(t, content)
	if err := os.Symlink(target, filepath.Join(dir, stateTemp)); err != nil {
		t.Fatal(err)
	}
	d := openT(t, dir)
	if err := d.ExtendData(context.Background(), "rtmr0", []byte("a")); err != nil {
		t.Fatal(err)
	}
	requireSame(t, target, content)
}

// The state file replaced by a link to another state is refused: extends
// would otherwise be written into the link's target.
func TestAttack22_SimStateIsALink(t *testing.T) {
	src := openT(t, filepath.Join(t.TempDir(), "src"))
	content := stateBytes(t, src)
	target := plantedVictim(t, content)
	dir := filepath.Join(t.TempDir(), "sim")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, stateFile)); err != nil {
		t.Fatal(err)
	}
	d, err := Open(context.Background(), dir)
	if err == nil {
		d.ExtendData(context.Background(), "rtmr0", []byte("a"))
		d.Close()
	}
	requireSame(t, target, content)
	if !errors.Is(err, safefs.ErrUnsafe) {
		t.Fatalf("Open with state.json a link: %v, want ErrUnsafe", err)
	}
}

// The signing key replaced by a link to a key someone else holds is
// refused, not used to sign.
func TestAttack22_SimKeyIsALink(t *testing.T) {
	ctx := context.Background()
	other := openT(t, filepath.Join(t.TempDir(), "other"))
	if _, err := other.PublicKeyPEM(ctx); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "sim")
	d := openT(t, dir)
	if err := os.Symlink(filepath.Join(other.Dir(), keyFile), filepath.Join(dir, keyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.PublicKeyPEM(ctx); !errors.Is(err, safefs.ErrUnsafe) {
		t.Fatalf("key through a link: %v, want ErrUnsafe", err)
	}
}
