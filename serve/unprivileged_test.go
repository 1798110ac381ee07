package serve_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/serve"
	"github.com/ccmr-dev/ccmr/serve/client"
)

// clientEnv makes this test binary a client (for the unprivileged test):
// it runs clientCalls against the socket the variable names and prints
// one line per call.
const clientEnv = "CCMR_SERVE_TEST_CLIENT"

// clientCalls are what the unprivileged child tries.
var clientCalls = []struct {
	what string
	call func(ctx context.Context, c *client.Client) error
}{
	{"extend mr_app.nobody", func(ctx context.Context, c *client.Client) error {
		_, err := c.Extend(ctx, "mr_app.nobody", digestOf(7, 0))
		return err
	}},
	{"extend mr_app.nobody.sub (data)", func(ctx context.Context, c *client.Client) error {
		_, err := c.ExtendData(ctx, "mr_app.nobody.sub", []byte("hello"))
		return err
	}},
	{"extend mr_ctr.here", func(ctx context.Context, c *client.Client) error {
		_, err := c.Extend(ctx, "mr_ctr.here", digestOf(7, 1))
		return err
	}},
	{"extend mr_app.root", func(ctx context.Context, c *client.Client) error {
		_, err := c.Extend(ctx, "mr_app.root", digestOf(7, 2))
		return err
	}},
	{"extend mr_ctr.never", func(ctx context.Context, c *client.Client) error {
		_, err := c.Extend(ctx, "mr_ctr.never", digestOf(7, 3))
		return err
	}},
	{"extend rtmr2", func(ctx context.Context, c *client.Client) error {
		_, err := c.Extend(ctx, "rtmr2", digestOf(7, 4))
		return err
	}},
	{"read mr_app.nobody", func(ctx context.Context, c *client.Client) error {
		_, err := c.Read(ctx, "mr_app.nobody")
		return err
	}},
	{"quote", func(ctx context.Context, c *client.Client) error {
		return c.Quote(ctx, []byte("n"), io.Discard)
	}},
	{"cut", func(ctx context.Context, c *client.Client) error {
		_, err := c.Cut(ctx)
		return err
	}},
}

// runClient is the child's side.
func runClient(sock string) {
	c := client.New(sock)
	for _, cc := range clientCalls {
		err := cc.call(context.Background(), c)
		switch {
		case err == nil:
			fmt.Printf("%s: ok\n", cc.what)
		case errors.Is(err, client.ErrForbidden):
			fmt.Printf("%s: refused\n", cc.what)
		default:
			fmt.Printf("%s: error %v\n", cc.what, err)
		}
	}
}

// An unprivileged user (nobody, through setpriv) extends exactly what the
// policy grants it: its own mr_app.nobody*, mr_ctr.here by its cgroup,
// and reads; a register of another user, a cgroup rule that is not its
// own, a real register and quote are refused, written nowhere, and
// logged with the peer.
func TestUnprivilegedPeer(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		missingTool(t, "setpriv (util-linux) not found", err)
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		missingTool(t, "no user nobody", err)
	}
	if os.Getuid() != 0 {
		t.Skip("needs root to drop to nobody")
	}
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skip("no /proc/self/cgroup")
	}
	m := regexp.MustCompile(`(?m)^0::(.*)$`).FindSubmatch(own)
	if m == nil {
		t.Skip("no cgroup v2 line in /proc/self/cgroup")
	}
	pol, err := serve.ParsePolicy(fmt.Appendf(nil, `{"format":"ccmr-serve-policy/v1","rules":[
		{"uids":[%s],"extend":["mr_app.nobody","mr_app.nobody.*"],"read":true},
		{"uids":[%s],"cgroups":[%q],"extend":["mr_ctr.here"]},
		{"uids":[%s],"cgroups":["/system\\.slice/never\\.scope"],"extend":["mr_ctr.never"]}
	]}`, nobody.Uid, nobody.Uid, regexp.QuoteMeta(string(m[1])), nobody.Uid))
	if err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, pol, 0o666)
	cmd := asNobody(t, d, setpriv, nobody, clientEnv)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("unprivileged client: %v\n%s", err, out)
	}
	want := `extend mr_app.nobody: ok
extend mr_app.nobody.sub (data): ok
extend mr_ctr.here: ok
extend mr_app.root: refused
extend mr_ctr.never: refused
extend rtmr2: refused
read mr_app.nobody: ok
quote: refused
cut: refused
`
	if string(out) != want {
		t.Errorf("unprivileged client:\n%s\nwant:\n%s", out, want)
	}
	ctx := context.Background()
	for name, n := range map[string]int{"mr_app.nobody": 1, "mr_app.nobody.sub": 1, "mr_ctr.here": 1, "mr_app.root": 0, "mr_ctr.never": 0} {
		if got, err := d.store.Records(ctx, name); err != nil || got != n {
			t.Errorf("%s: %d records (%v), want %d", name, got, err, n)
		}
	}
	rtmr2, err := d.dev.Read(ctx, "rtmr2")
	if err != nil {
		t.Fatal(err)
	}
	if !rtmr2[0].Digest.Equal(mr.Zero(mr.SHA384)) {
		t.Errorf("rtmr2 was extended: %v", rtmr2[0].Digest)
	}
	if a, err := d.store.Archives(); err != nil || len(a) != 0 {
		t.Errorf("a refused cut archived %v (%v)", a, err)
	}
	logged := d.log.String()
	for _, reg := range []string{"mr_app.root", "mr_ctr.never", "rtmr2"} {
		if !strings.Contains(logged, "register="+reg) || !strings.Contains(logged, "uid="+nobody.Uid) {
			t.Errorf("refusal of %s not logged with the peer:\n%s", reg, logged)
		}
	}
}

// missingTool skips, or fails when CCMR_REQUIRE_TOOLS=1 (make test).
func missingTool(t *testing.T, what string, err error) {
	t.Helper()
	if os.Getenv("CCMR_REQUIRE_TOOLS") == "1" {
		t.Fatalf("%s: %v (CCMR_REQUIRE_TOOLS=1)", what, err)
	}
	t.Skipf("%s: %v", what, err)
}

// asNobody is a command running a copy of this test binary as nobody
// (through setpriv) with env set to d's socket: the folders down to the
// socket are opened to others (t.TempDir and its parent are 0700), and the
// binary is copied out of root's build cache.
func asNobody(t *testing.T, d *daemon, setpriv string, nobody *user.User, env string) *exec.Cmd {
	t.Helper()
	for _, p := range []string{filepath.Dir(d.dir), d.dir, filepath.Dir(d.sock)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(d.dir, "serve.test")
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(setpriv, "--reuid="+nobody.Uid, "--regid="+nobody.Gid, "--clear-groups", "--", bin, "-test.run=^$")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), env + "=" + d.sock}
	cmd.Dir = "/"
	return cmd
}
