package aattrpc_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccmr-dev/ccmr/serve"
	"github.com/ccmr-dev/ccmr/serve/aattrpc"
	"github.com/ccmr-dev/ccmr/serve/aattrpc/aapb"
)

// clientEnv makes this test binary an agent-API client (for the
// unprivileged test): it sends nobodyCalls to the socket the variable
// names and prints one line per call.
const clientEnv = "CCMR_AA_TEST_CLIENT"

var nobodyCalls = []*aapb.ExtendRuntimeMeasurementRequest{
	{Domain: "github.com/confidential-containers", Operation: "PullImage", Content: "granted"},
	{Domain: "example.org/other", Operation: "op", Content: "not granted"},
	{Domain: "mr_app.root", Operation: "extend", Content: "sha384/" + strings.Repeat("00", 48)},
}

func TestMain(m *testing.M) {
	if sock := os.Getenv(clientEnv); sock != "" {
		runClient(sock)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runClient(sock string) {
	conn, err := net.Dial("unix", sock)
	if err != nil {
		fmt.Println("dial:", err)
		return
	}
	c := ttrpc.NewClient(conn)
	defer c.Close()
	for _, req := range nobodyCalls {
		var resp aapb.ExtendRuntimeMeasurementResponse
		err := c.Call(context.Background(), aattrpc.Service, aattrpc.MethodExtend, req, &resp)
		fmt.Printf("%s: %v\n", req.Domain, status.Code(err))
	}
}

// An unprivileged peer (nobody, through setpriv) records the domain its
// rule grants over a real socket, and nothing else: the refused calls
// write nothing and are logged with its uid.
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
	pol, err := serve.ParsePolicy(fmt.Appendf(nil, `{"format":"ccmr-serve-policy/v1","rules":[
		{"uids":[%s],"aa":["github.com/*"]}
	]}`, nobody.Uid))
	if err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, pol)
	for _, p := range []string{filepath.Dir(d.dir), d.dir, filepath.Dir(d.aaSock)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(d.dir, "aattrpc.test")
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	before := d.state(t)
	cmd := exec.Command(setpriv, "--reuid="+nobody.Uid, "--regid="+nobody.Gid, "--clear-groups", "--", bin, "-test.run=^$")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), clientEnv + "=" + d.aaSock}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("unprivileged client: %v\n%s", err, out)
	}
	want := fmt.Sprintf("github.com/confidential-containers: %v\nexample.org/other: %v\nmr_app.root: %v\n", codes.OK, codes.PermissionDenied, codes.PermissionDenied)
	if string(out) != want {
		t.Errorf("unprivileged client:\n%s\nwant:\n%s", out, want)
	}
	recs := d.records(t)
	if len(recs) != 1 || recs[0].Content != "granted" {
		t.Errorf("records %v, want the granted one alone", recs)
	}
	if n, err := d.store.Records(context.Background(), "mr_app.root"); err != nil || n != 0 {
		t.Errorf("mr_app.root: %d records (%v)", n, err)
	}
	if d.state(t).size == before.size {
		t.Error("the granted record was not written")
	}
	logged := d.log.String()
	for _, dom := range []string{"example.org/other", "mr_app.root"} {
		if !strings.Contains(logged, "domain="+dom) || !strings.Contains(logged, "uid="+nobody.Uid) {
			t.Errorf("refusal of %s not logged with the peer:\n%s", dom, logged)
		}
	}
	if err := d.store.Verify(context.Background()); err != nil {
		t.Error(err)
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
