package verifier

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/internal/safefs"
)

// A second LockState waits for the first: with its context already ended
// it gives up with the context's error instead of taking the lock; once the
// first is released it gets it.
func TestLockStateExcludes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.json")
	unlock, err := LockState(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if u, err := LockState(ctx, p); !errors.Is(err, context.Canceled) {
		if u != nil {
			u()
		}
		t.Fatalf("second lock while held: %v, want context.Canceled", err)
	}
	unlock()
	unlock2, err := LockState(context.Background(), p)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	unlock2()
}

// A symbolic link planted at the lock file's name is refused, not followed.
func TestLockStateRefusesLink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "state.json")
	if err := os.Symlink(target, p+".lock"); err != nil {
		t.Skipf("no symbolic links here: %v", err)
	}
	if u, err := LockState(context.Background(), p); !errors.Is(err, safefs.ErrUnsafe) {
		if u != nil {
			u()
		}
		t.Fatalf("lock through a planted link: %v, want safefs.ErrUnsafe", err)
	}
}
