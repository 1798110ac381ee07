package serve_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/mr"

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

// Red team 6, item 1: root in a container. A container run without a user
// namespace (docker's default) runs as uid 0, which SO_PEERCRED reports as
// 0, and the daemon let uid 0 do everything whatever the policy says: with
// the socket mounted in, the container extends another container's
// mr_ctr.<id>, another user's mr_app.*, a real register (rtmr2) and
// quotes, though it can write neither the host's log nor its registers
// (it has neither /run/ccmr nor the device; runtimes drop CAP_SYS_ADMIN).
// The rule that stops it: uid 0 is all-powerful only with CAP_SYS_ADMIN
// in the daemon's user namespace (Peer.Admin, read through the pidfd like
// the cgroup); elsewhere the policy decides, and the default policy grants
// it nothing. The child here is root in another mount namespace without
// CAP_SYS_ADMIN, as docker starts one.
func TestAttackRT6_RootInContainer(t *testing.T) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		missingTool(t, "unshare (util-linux) not found", err)
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		missingTool(t, "setpriv (util-linux) not found", err)
	}
	if os.Getuid() != 0 {
		t.Skip("needs root to make a mount namespace")
	}
	if err := exec.Command(unshare, "--mount", "true").Run(); err != nil {
		missingTool(t, "unshare --mount fails here", err)
	}
	d := startDaemon(t, nil, 0o600)
	cmd := exec.Command(unshare, "--mount", "--", setpriv, "--bounding-set=-sys_admin", "--", os.Args[0], "-test.run=^$")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), clientEnv + "=" + d.sock}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client in a mount namespace: %v\n%s", err, out)
	}
	want := `extend mr_app.nobody: refused
extend mr_app.nobody.sub (data): refused
extend mr_ctr.here: refused
extend mr_app.root: refused
extend mr_ctr.never: refused
extend rtmr2: refused
read mr_app.nobody: refused
quote: refused
cut: refused
`
	if string(out) != want {
		t.Errorf("root in another mount namespace:\n%s\nwant:\n%s", out, want)
	}
	ctx := context.Background()
	for _, name := range []string{"mr_app.nobody", "mr_ctr.here", "mr_app.root"} {
		if n, err := d.store.Records(ctx, name); err != nil || n != 0 {
			t.Errorf("%s: %d records (%v), want none", name, n, err)
		}
	}
	if v, err := d.dev.Read(ctx, "rtmr2"); err != nil || !v[0].Digest.Equal(mr.Zero(mr.SHA384)) {
		t.Errorf("rtmr2 was extended: %v %v", v, err)
	}
	// Root with CAP_SYS_ADMIN keeps every right (this process's client).
	if _, err := d.cl.Extend(ctx, "mr_app.root", digestOf(9, 0)); err != nil {
		t.Fatalf("root in the daemon's namespace: %v", err)
	}
}

// holdEnv makes this test binary a slot holder: it opens holdConns
// connections to the socket the variable names, sends each one request
// (keep-alive), prints "served" or "closed" for each, then "holding", and
// keeps them open until its standard input ends.
const holdEnv = "CCMR_SERVE_TEST_HOLD"

const holdConns = 4

func runHolder(sock string) {
	var conns []net.Conn
	for i := 0; i < holdConns; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			fmt.Println("dial:", err)
			continue
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET /v1/health HTTP/1.1\r\nHost: ccmr\r\n\r\n")
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil && strings.HasPrefix(line, "HTTP/1.1 200") {
			fmt.Println("served")
		} else {
			fmt.Println("closed")
		}
	}
	fmt.Println("holding")
	bufio.NewReader(os.Stdin).ReadString(0)
	for _, c := range conns {
		c.Close()
	}
}

// Red team 6, item 1: slot exhaustion. An unprivileged local user (nobody)
// opens as many connections as the daemon serves at once (256 by default,
// 4 here), sends each a health request and keeps them idle (60 s of
// keep-alive, renewed); every other client, root's measurement writers
// too, waited in the listen backlog while he held them. The rule that
// stops it: one uid holds at most a quarter of the slots, and its further
// connections are closed at once (limitListener.perUID). The deadline on
// root's extend only bounds the hang: before the fix it waited for the
// idle timeout (60 s).
func TestAttackRT6_OneUserHoldsEverySlot(t *testing.T) {
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
	d := startDaemonConns(t, nil, 0o666, holdConns)
	cmd := asNobody(t, d, setpriv, nobody, holdEnv)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	var got []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "holding" {
		got = append(got, sc.Text())
	}
	if want := "served closed closed closed"; strings.Join(got, " ") != want {
		t.Errorf("nobody's connections: %q, want %q", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := d.cl.Extend(ctx, "mr_app.root", digestOf(9, 1)); err != nil {
		t.Fatalf("root's extend while nobody holds his connections: %v", err)
	}
}
