package serve_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
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
	l, err := serve.Listen(filepath.Join(dir, "sock", "ccmr.sock"), 0o600, -1, -1)
	if err != nil {
		return err
	}
	return serve.New(serve.Config{Device: dev, Store: store, Quote: collectNoExtras}).Serve(ctx, l)
}
