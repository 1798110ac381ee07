package serve_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/serve"
	"github.com/ccmr-dev/ccmr/serve/aattrpc"
)

// The systemd units in contrib/ pass systemd-analyze verify with nothing
// to say (an unknown key is only a warning there, so any output fails),
// with ExecStart pointed at an existing binary.
func TestContribUnits(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		missingTool(t, "systemd-analyze not found", err)
	}
	dir := t.TempDir()
	for _, f := range []string{"ccmr-serve.socket", "ccmr-serve.service"} {
		b, err := os.ReadFile(filepath.Join("..", "contrib", f))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if f == "ccmr-serve.service" {
			if !strings.Contains(s, "ExecStart=/usr/local/bin/ccmr serve ") {
				t.Fatal("ccmr-serve.service: ExecStart does not run ccmr serve")
			}
			s = strings.Replace(s, "/usr/local/bin/ccmr", os.Args[0], 1)
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(analyze, "verify", filepath.Join(dir, "ccmr-serve.socket"), filepath.Join(dir, "ccmr-serve.service")).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// The drop-in that adds the attestation agent's socket passes
// systemd-analyze verify on top of the service, and serves the socket
// where CoCo clients look for the agent.
func TestContribAADropIn(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		missingTool(t, "systemd-analyze not found", err)
	}
	dir := t.TempDir()
	var unit strings.Builder
	for _, f := range []string{"ccmr-serve.socket", "ccmr-serve.service", "ccmr-serve-aa.conf"} {
		b, err := os.ReadFile(filepath.Join("..", "contrib", f))
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "/usr/local/bin/ccmr", os.Args[0])
		switch f {
		case "ccmr-serve.socket":
			if err := os.WriteFile(filepath.Join(dir, f), []byte(s), 0o644); err != nil {
				t.Fatal(err)
			}
		case "ccmr-serve-aa.conf":
			if !strings.Contains(s, " --aa-socket "+aattrpc.DefaultSocket+"\n") {
				t.Errorf("ccmr-serve-aa.conf: ExecStart does not serve %s", aattrpc.DefaultSocket)
			}
			fallthrough
		default:
			// A drop-in's settings apply after the unit's, as here.
			unit.WriteString(s)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "ccmr-serve.service"), []byte(unit.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", filepath.Join(dir, "ccmr-serve.socket"), filepath.Join(dir, "ccmr-serve.service")).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// The sample policy is a policy the daemon accepts.
func TestContribPolicy(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "contrib", "serve-policy.example.json"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := serve.ParsePolicy(b)
	if err != nil {
		t.Fatal(err)
	}
	ctr := serve.Peer{UID: 100000, Cgroup: "/system.slice/docker-0123456789abcdef0123456789abcdef.scope", CgroupKnown: true}
	if !p.Allows(ctr, serve.OpExtend, "mr_ctr.0123456789ab") || p.Allows(ctr, serve.OpExtend, "mr_ctr.ffffffffffff") {
		t.Error("the sample policy does not confine a container to its own mr_ctr register")
	}
}
