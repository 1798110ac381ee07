package serve_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/serve"
)

// Red team 6, item 1: the socket in a folder another user can write to
// (--socket /tmp/ccmr/ccmr.sock with /tmp/ccmr made 0777 by whoever came
// first, or a shared folder). Listen binds, then chmods and chowns the
// socket by name: between the bind and the chmod that user swaps the name
// for a link to /etc/shadow, which the daemon (root) makes 0660 for the
// socket's group; at any later time he unlinks the socket and binds his
// own, and every client's extends, reads and quotes go to him (a forged
// bundle, or a writer believing its measurement was taken). The stale
// socket removal follows the same name. The rule that stops it: Listen
// refuses a socket folder that anyone but the daemon's user may write to,
// or that is reached through one (safefs.CheckDir, as for the log folder).
func TestAttackRT6_SocketFolderOthersCanWrite(t *testing.T) {
	for _, mode := range []os.FileMode{0o777, 0o777 | os.ModeSticky, 0o770} {
		dir := filepath.Join(t.TempDir(), "run")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		l, err := serve.Listen(filepath.Join(dir, "ccmr.sock"), 0o660, -1, -1)
		if err == nil {
			l.Close()
			t.Fatalf("socket folder %v: Listen served a socket others can swap", mode)
		}
	}
	// Under a folder others can write to (not sticky): they can rename
	// the socket's folder itself away.
	top := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(top, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(top, 0o777); err != nil {
		t.Fatal(err)
	}
	if l, err := serve.Listen(filepath.Join(top, "run", "ccmr.sock"), 0o660, -1, -1); err == nil {
		l.Close()
		t.Fatal("socket under a folder others can write to: Listen served it")
	}
}
