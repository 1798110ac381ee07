package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/ccmr-dev/ccmr/serve/aattrpc"
	"github.com/ccmr-dev/ccmr/serve/aattrpc/aapb"
)

// serveStderr is the daemon's stderr, read while it runs (its own type:
// fleet_test.go's lockedBuffer is another file's).
type serveStderr struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *serveStderr) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *serveStderr) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// `ccmr serve --aa-socket` serves the attestation agent's method: a ttrpc
// client's record is in the runtime log `ccmr log show` reads, and both
// sockets are removed when the daemon stops.
func TestServeAASocket(t *testing.T) {
	dir := t.TempDir()
	sock, aaSock := filepath.Join(dir, "run", "ccmr.sock"), filepath.Join(dir, "aa", "aa.sock")
	vars := map[string]string{"CCMR_DEVICE": "sim:" + filepath.Join(dir, "sim"), "XDG_STATE_HOME": filepath.Join(dir, "state")}
	logDir := filepath.Join(dir, "log")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb serveStderr
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--log-dir", logDir, "--socket", sock, "--aa-socket", aaSock,
			"--ima-log", "", "--systemd-log", ""},
			env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return vars[k] }})
	}()
	var conn net.Conn
	for {
		var err error
		if conn, err = net.Dial("unix", aaSock); err == nil {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("ccmr serve exited %d:\n%s", code, errb.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	c := ttrpc.NewClient(conn)
	var resp aapb.ExtendRuntimeMeasurementResponse
	err := c.Call(ctx, aattrpc.Service, aattrpc.MethodExtend, &aapb.ExtendRuntimeMeasurementRequest{
		Domain: "github.com/confidential-containers", Operation: "PullImage", Content: `{"image":"busybox"}`}, &resp)
	c.Close()
	if err != nil {
		t.Fatalf("ExtendRuntimeMeasurement: %v\n%s", err, errb.String())
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("ccmr serve exited %d:\n%s", code, errb.String())
	}
	for _, p := range []string{sock, aaSock} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
	stdout, stderr, code := ccmrRun(t, vars, "log", "show", filepath.Join(logDir, "rtmr3.log"))
	if code != 0 || !strings.Contains(stdout, `github.com/confidential-containers PullImage {"image":"busybox"}`) {
		t.Errorf("log show (exit %d):\n%s%s", code, stdout, stderr)
	}
}
