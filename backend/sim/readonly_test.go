package sim

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// readOnlyChildEnv marks the unprivileged child run of TestReadOnlyFolder.
const readOnlyChildEnv = "CCMR_SIM_READONLY_CHILD"

// TestReadOnlyFolder: a device whose folder its user cannot write still
// reads, refuses to extend and changes nothing. Root ignores file modes, so
// as root (make test runs as root) the check runs again in a child process
// of this test binary as the unprivileged user nobody, through setpriv.
func TestReadOnlyFolder(t *testing.T) {
	if os.Geteuid() != 0 {
		readOnlyFolder(t)
		return
	}
	if os.Getenv(readOnlyChildEnv) == "1" {
		t.Fatal("the child meant to run unprivileged runs as root")
	}
	out := runUnprivileged(t, "^TestReadOnlyFolder$")
	for _, want := range []string{"--- PASS: TestReadOnlyFolder", "read-only folder checked as uid "} {
		if !strings.Contains(out, want) {
			t.Fatalf("unprivileged run lacks %q:\n%s", want, out)
		}
	}
}

// readOnlyFolder makes a device's folder and files read-only, as a user
// would with chmod -R a-w, and opens it again the way the next command
// does. (A Device opened before the chmod keeps writing through the
// descriptor it holds: Unix checks modes at open, and the in-place state
// write keeps that descriptor on purpose.)
func readOnlyFolder(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	w := openT(t, dir)
	if err := w.ExtendData(ctx, "rtmr0", []byte("a")); err != nil {
		t.Fatal(err)
	}
	before := stateBytes(t, w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{lockFile, stateFile} {
		if err := os.Chmod(filepath.Join(dir, f), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	d, err := Open(ctx, dir)
	if err != nil {
		t.Fatalf("open of a read-only folder: %v", err)
	}
	defer d.Close()
	if _, err := d.Read(ctx); err != nil {
		t.Fatalf("read of a read-only folder: %v", err)
	}
	if err := d.ExtendData(ctx, "rtmr0", []byte("a")); err == nil {
		t.Fatal("extend in a read-only folder succeeded")
	}
	if !bytes.Equal(before, stateBytes(t, d)) {
		t.Fatal("state changed")
	}
	t.Logf("read-only folder checked as uid %d", os.Geteuid())
}

// runUnprivileged runs the tests matching run in a copy of this test binary
// as nobody (setpriv --reuid --regid --clear-groups), in a folder nobody
// owns, and returns its output; a failing child fails t. Without setpriv
// or the nobody user it skips with one line (fails when
// CCMR_REQUIRE_TOOLS=1, as make test sets).
func runUnprivileged(t *testing.T, run string) string {
	t.Helper()
	missing := func(what string, err error) {
		t.Helper()
		if os.Getenv("CCMR_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%s: %v (CCMR_REQUIRE_TOOLS=1): root ignores file modes, the check needs an unprivileged user", what, err)
		}
		t.Skipf("%s: %v: root ignores file modes and the check cannot drop root", what, err)
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		missing("setpriv (util-linux) not found", err)
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		missing("no user nobody", err)
	}
	uid, err := strconv.Atoi(nobody.Uid)
	if err != nil {
		t.Fatal(err)
	}
	gid, err := strconv.Atoi(nobody.Gid)
	if err != nil {
		t.Fatal(err)
	}
	// The go build cache and t.TempDir's parents are root's (0700): the
	// child gets its own copy of the binary in a folder nobody can enter.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "sim.test")
	copyFile(t, os.Args[0], bin, 0o755)
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, uid, gid); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(setpriv, "--reuid="+nobody.Uid, "--regid="+nobody.Gid, "--clear-groups", "--",
		bin, "-test.run="+run, "-test.count=1", "-test.v")
	cmd.Dir = home
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "TMPDIR=" + home, readOnlyChildEnv + "=1"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("%s: %v", setpriv, err)
		}
		t.Fatalf("unprivileged run (uid %d): %v:\n%s", uid, err, out)
	}
	return string(out)
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
