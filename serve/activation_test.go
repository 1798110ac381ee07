package serve_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/ccmr-dev/ccmr/serve"
	"github.com/ccmr-dev/ccmr/serve/client"
)

// A daemon started with a listening socket on descriptor 3 and
// LISTEN_FDS=1 serves that socket.
func TestSocketActivation(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "activated.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, err := l.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), daemonEnv+"="+dir, activatedEnv+"=1", "LISTEN_FDS=1")
	cmd.ExtraFiles = []*os.File{f}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	cl := client.New(sock)
	defer cl.Close()
	// The socket already listens: the first call waits in the backlog
	// until the daemon accepts.
	h, err := cl.Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != "ok" || h.Backing != "rtmr3" {
		t.Fatalf("health %+v", h)
	}
	if _, err := os.Stat(filepath.Join(dir, "sock")); !os.IsNotExist(err) {
		t.Errorf("the activated daemon made its own socket folder too (%v)", err)
	}
}

func TestActivatedRefuses(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	pid := strconv.Itoa(os.Getpid())
	if l, err := serve.Activated(env(nil)); l != nil || err != nil {
		t.Errorf("no activation: %v, %v", l, err)
	}
	if l, err := serve.Activated(env(map[string]string{"LISTEN_PID": "1", "LISTEN_FDS": "1"})); l != nil || err != nil {
		t.Errorf("another process's sockets: %v, %v", l, err)
	}
	for _, fds := range []string{"2", "0", "x", ""} {
		if _, err := serve.Activated(env(map[string]string{"LISTEN_PID": pid, "LISTEN_FDS": fds})); err == nil {
			t.Errorf("LISTEN_FDS=%q accepted", fds)
		}
	}
}

// Listen replaces a dead daemon's socket, refuses a live one's
// (ErrInUse) and anything that is not a socket, and sets the mode.
func TestListen(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "ccmr.sock")
	l, err := serve.Listen(sock, 0o640, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("socket mode: %v, %v", fi, err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if _, err := serve.Listen(sock, 0o640, -1, -1); !errors.Is(err, serve.ErrInUse) {
		t.Errorf("second Listen on a live socket: %v, want ErrInUse", err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	l2, err := serve.Listen(sock, 0o600, -1, -1)
	if err != nil {
		t.Fatalf("Listen over a dead daemon's socket: %v", err)
	}
	l2.Close()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o600)
	if _, err := serve.Listen(file, 0o600, -1, -1); err == nil {
		t.Error("Listen replaced a regular file")
	}
	if b, _ := os.ReadFile(file); string(b) != "x" {
		t.Error("the regular file was changed")
	}
}
