package vmr

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/internal/safefs"
)

// Red team round 3.

// The resume hint is checked only against the entry forwarded last: a list
// whose earlier entry differs (same sizes, so every offset holds) but whose
// last forwarded entry is the same is taken as the continuation, and its new
// entries are extended onto an mr_ima whose value no prefix of the list
// gives. Forward must refuse it as it does without the hint.
func TestRedteam3_HintEarlierEntryChanged(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	_, s := openSim(t, dir)
	list := filepath.Join(dir, "ima.bin")
	writeFile(t, list, specList(20, -1))
	if n, err := s.Forward(ctx, ForwardOptions{List: list}); err != nil || n != 20 {
		t.Fatalf("Forward = %d, %v", n, err)
	}
	// The hint is kept; entry 5 differs, entry 19 (forwarded last) and
	// every offset are the same; 10 new entries follow.
	writeFile(t, list, specList(30, 5))
	n, err := s.Forward(ctx, ForwardOptions{List: list})
	if !errors.Is(err, ErrInconsistent) {
		t.Fatalf("Forward of a list whose entry 5 changed = %d, %v; want ErrInconsistent", n, err)
	}
	if got, _ := s.Records(ctx, "mr_ima"); got != 20 {
		t.Fatalf("mr_ima has %d records after the refusal, want 20", got)
	}
}

// The folder check looks at the log folder once, by name, at Open. When its
// parent is writable by another user, that user swaps the folder for one of
// their own after Open; a cut (or this swap) makes the Store reopen the log
// by name, and root then replays and appends to a file in the attacker's
// folder: an empty file there restarts the log with an INIT entry, dropping
// every virtual register's history, and the attacker can edit the records
// root wrote. The Store must not write into a folder it did not check.
func TestRedteam3_LogFolderSwappedThroughParent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a folder to another user")
	}
	ctx := context.Background()
	dir := t.TempDir()
	dev := openSimDev(t, filepath.Join(dir, "sim"))
	parent := filepath.Join(dir, "shared")
	if err := os.Mkdir(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	// The parent belongs to another user (uid 65534).
	if err := os.Chown(parent, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	logDir := filepath.Join(parent, "log")
	s, err := Open(ctx, dev, Options{Dir: logDir})
	if err != nil {
		if errors.Is(err, safefs.ErrUnsafe) {
			return // refused up front: safe
		}
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Extend(ctx, "mr_app", digestN("a", 1)); err != nil {
		t.Fatal(err)
	}
	// The attacker (owner of parent) moves root's folder aside and puts
	// their own in its place, with an empty log they own.
	if err := os.Rename(logDir, filepath.Join(parent, "old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	evil := filepath.Join(logDir, s.backing.Name+".log")
	if err := os.WriteFile(evil, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{logDir, evil} {
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	_, err = s.Extend(ctx, "mr_app", digestN("a", 2))
	b, _ := os.ReadFile(evil)
	if len(b) != 0 {
		t.Fatalf("root wrote %d bytes into %s, a log in a folder of uid 65534 (Extend: %v)", len(b), evil, err)
	}
	if err == nil {
		t.Fatal("Extend succeeded after the log folder was swapped for another user's")
	}
}

// Forward builds its lock file's name from opts.Register before checking
// that it is a virtual register name: "--register mr_x/../../../F" makes
// root create F.json.lock outside the log folder (filepath.Join cleans the
// dots away). An invalid register must be refused before any file is made.
func TestRedteam3_ForwardRegisterPathEscape(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	_, s := openSim(t, dir)
	list := filepath.Join(dir, "ima.bin")
	writeFile(t, list, specList(3, -1))
	escaped := filepath.Join(dir, "escaped")
	_, err := s.Forward(ctx, ForwardOptions{List: list, Register: "mr_x/../../escaped"})
	if err == nil {
		t.Fatal("Forward to an invalid register name succeeded")
	}
	for _, p := range []string{escaped + ".json.lock", escaped + ".json", escaped + ".json.tmp"} {
		if _, serr := os.Lstat(p); serr == nil {
			t.Fatalf("Forward with register %q created %s, outside the log folder (err %v)", "mr_x/../../escaped", p, err)
		}
	}
}

// The log folder given as a link another user planted, pointing at a
// folder of root's that only root may write: CheckDir follows the link and
// passes, and root creates its runtime log (and, forwarding, its lock and
// state files) in that folder.
func TestRedteam3_LogFolderIsALinkToRootsFolder(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a folder to another user")
	}
	ctx := context.Background()
	dir := t.TempDir()
	dev := openSimDev(t, filepath.Join(dir, "sim"))
	victim := filepath.Join(dir, "etc")
	home := filepath.Join(dir, "home")
	for _, p := range []string{victim, home} {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(home, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(home, "log")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	os.Lchown(link, 65534, 65534)
	s, err := Open(ctx, dev, Options{Dir: link})
	if err == nil {
		s.Extend(ctx, "mr_app", digestN("a", 1))
		s.Close()
	}
	if es, _ := os.ReadDir(victim); len(es) != 0 {
		t.Fatalf("Open through a link of uid 65534 wrote %d file(s) into root's folder %s (err %v)", len(es), victim, err)
	}
}
