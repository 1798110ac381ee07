package serve_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/serve"
	"github.com/ccmr-dev/ccmr/vmr"
)

// daemonEnv makes this test binary a daemon (for the SIGKILL test): the
// sim device in DIR/sim, the runtime log in DIR/log, the socket
// DIR/sock/ccmr.sock.
const daemonEnv = "CCMR_SERVE_TEST_DAEMON"

// activatedEnv makes the daemon take its socket from descriptor 3, as
// under systemd socket activation (LISTEN_FDS=1 is set by the parent,
// LISTEN_PID by the child itself, since the parent cannot know it).
const activatedEnv = "CCMR_SERVE_TEST_ACTIVATED"

func TestMain(m *testing.M) {
	if dir := os.Getenv(daemonEnv); dir != "" {
		if err := runDaemon(dir); err != nil {
			fmt.Fprintln(os.Stderr, "daemon:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if sock := os.Getenv(clientEnv); sock != "" {
		runClient(sock)
		os.Exit(0)
	}
	if sock := os.Getenv(holdEnv); sock != "" {
		runHolder(sock)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runDaemon(dir string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	dev, err := sim.Open(ctx, filepath.Join(dir, "sim"))
	if err != nil {
		return err
	}
	defer dev.Close()
	store, err := vmr.Open(ctx, dev, vmr.Options{Dir: filepath.Join(dir, "log")})
	if err != nil {
		return err
	}
	defer store.Close()
	if os.Getenv(activatedEnv) != "" {
		// As systemd does after its fork.
		os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	}
	l, err := serve.Activated(os.Getenv)
	if err != nil {
		return err
	}
	if l == nil {
		if l, err = serve.Listen(filepath.Join(dir, "sock", "ccmr.sock"), 0o600, -1, -1); err != nil {
			return err
		}
	}
	return serve.New(serve.Config{Device: dev, Store: store, Quote: collectNoExtras}).Serve(ctx, l)
}
