// Package pgtest starts a throw-away PostgreSQL server for a test: Debian's
// initdb and postgres (the postgresql package, scripts/deps.sh) in a
// temporary folder, listening on a Unix socket there only (no TCP port),
// run as the unprivileged user nobody when the test runs as root (initdb
// refuses root), and stopped when the test ends.
package pgtest

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// binDir finds the newest /usr/lib/postgresql/N/bin holding initdb.
func binDir() (string, error) {
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(m) == 0 {
		return "", fmt.Errorf("no /usr/lib/postgresql/*/bin/initdb: install Debian's postgresql (make deps)")
	}
	sort.Strings(m)
	return filepath.Dir(m[len(m)-1]), nil
}

// Start starts a server and returns its connection URL. Outside CI a
// missing PostgreSQL skips the test; with CI or CCMR_REQUIRE_TOOLS=1 (make test) it fails it: the suite
// must not pass without the store it claims to test.
func Start(t testing.TB) string {
	t.Helper()
	bin, err := binDir()
	if err != nil {
		if os.Getenv("CI") != "" || os.Getenv("CCMR_REQUIRE_TOOLS") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	// A short path: a Unix socket's name is limited to 107 bytes.
	dir, err := os.MkdirTemp("", "pg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root: nobody owns the folder.
		cred = &syscall.Credential{Uid: 65534, Gid: 65534, NoSetGroups: true}
		for _, p := range []string{dir, data} {
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}
	}
	run := func(name string, args ...string) *exec.Cmd {
		c := exec.Command(filepath.Join(bin, name), args...)
		c.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		c.Dir = dir
		c.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "TZ=UTC"}
		return c
	}
	var out bytes.Buffer
	ini := run("initdb", "-D", data, "-U", "ccmr", "-A", "trust", "-E", "UTF8", "--no-sync")
	ini.Stdout, ini.Stderr = &out, &out
	if err := ini.Run(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out.String())
	}
	var log bytes.Buffer
	srv := run("postgres", "-D", data, "-k", dir, "-c", "listen_addresses=", "-c", "fsync=off",
		"-c", "max_connections=200", "-c", "shared_buffers=16MB")
	srv.Stdout, srv.Stderr = &log, &log
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	t.Cleanup(func() {
		// SIGINT: PostgreSQL's fast shutdown.
		srv.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			srv.Process.Kill()
			<-done
		}
	})
	u := "postgres://ccmr@/postgres?host=" + url.QueryEscape(dir) + "&sslmode=disable"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		c, err := pgx.Connect(ctx, u)
		if err == nil {
			c.Close(ctx)
			return u
		}
		select {
		case e := <-done:
			t.Fatalf("postgres exited: %v\n%s", e, log.String())
		case <-ctx.Done():
			t.Fatalf("postgres did not accept connections: %v\n%s", err, log.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
