package serve

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ccmr-dev/ccmr/internal/safefs"
)

// DefaultSocket is where the daemon listens unless told otherwise.
const DefaultSocket = "/run/ccmr/ccmr.sock"

// ErrInUse is returned by Listen when a daemon already answers on the socket.
var ErrInUse = errors.New("socket is in use by a running daemon")

// Listen listens on the Unix socket path, with the given mode and owner
// (uid or gid -1 leaves it as it is). A socket file left by a daemon that
// died is replaced; one that a live daemon answers on is ErrInUse; any
// other file at path is an error, and so is a folder of path that anyone but
// the daemon's user could write to (safefs.CheckDir). The mode is set before the first Accept;
// until then the socket is reachable as the umask allows, which grants
// nothing: every request is authorized by the policy.
func Listen(path string, mode os.FileMode, uid, gid int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	// The socket is chmodded, chowned and (when stale) removed by name: a
	// user who could write its folder, or one above it, could swap the
	// name for a link between the bind and the chmod, or bind his own
	// socket there later and take every client's requests.
	if err := safefs.CheckDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("listen %s: exists and is not a socket", path)
		}
		d := net.Dialer{Timeout: time.Second}
		if c, err := d.DialContext(context.Background(), "unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen %s: %w", path, ErrInUse)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("listen %s: removing the stale socket: %w", path, err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if uid >= 0 || gid >= 0 {
		if err := os.Lchown(path, uid, gid); err != nil {
			l.Close()
			return nil, fmt.Errorf("listen %s: %w", path, err)
		}
	}
	return l, nil
}

// Activated returns the listening socket systemd passed (socket
// activation: LISTEN_PID is this process, LISTEN_FDS is 1, the socket is
// descriptor 3), or nil when none was passed. More than one socket, or a
// descriptor that is not a listening Unix socket, is an error: the daemon
// must not guess which one to serve.
func Activated(getenv func(string) string) (net.Listener, error) {
	pid, fds := getenv("LISTEN_PID"), getenv("LISTEN_FDS")
	if pid == "" && fds == "" {
		return nil, nil
	}
	if pid != strconv.Itoa(os.Getpid()) {
		return nil, nil // meant for another process (a parent that exec'd us)
	}
	if fds != "1" {
		return nil, fmt.Errorf("socket activation: LISTEN_FDS=%q: want exactly 1 socket", fds)
	}
	f := os.NewFile(3, "LISTEN_FD_3")
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("socket activation: descriptor 3: %w", err)
	}
	if _, ok := l.(*net.UnixListener); !ok {
		l.Close()
		return nil, fmt.Errorf("socket activation: descriptor 3 is not a Unix socket")
	}
	return l, nil
}
