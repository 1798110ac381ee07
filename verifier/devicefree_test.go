package verifier

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// The offline verifier touches no device (issue 20 item 1): no package of
// verifier/... or bundle/... depends, directly or not, on a backend
// package, on this system or on those security engineers verify from.
// Tests may use a backend (the sim device makes real evidence); programs
// may not, so `go list -deps` without -test is what is checked.
func TestVerifierImportsNoBackend(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			t.Fatalf("no go command to list the dependencies with: %v", err)
		}
	}
	const backend = "github.com/ccmr-dev/ccmr/backend"
	for _, target := range []string{"", "darwin/arm64", "windows/amd64", "linux/arm64"} {
		cmd := exec.Command(goBin, "list", "-deps", "./verifier/...", "./bundle/...")
		cmd.Dir = ".."
		cmd.Env = os.Environ()
		if target != "" {
			goos, goarch, _ := strings.Cut(target, "/")
			cmd.Env = append(cmd.Env, "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
		}
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("go list -deps (%s): %v\n%s", target, err, stderr)
		}
		pkgs := strings.Fields(string(out))
		if len(pkgs) < 20 || !slices.Contains(pkgs, "github.com/ccmr-dev/ccmr/verifier") || !slices.Contains(pkgs, "github.com/ccmr-dev/ccmr/bundle/importer") {
			t.Fatalf("go list -deps (%s) listed %d packages, not the verifier's: %q", target, len(pkgs), out)
		}
		for _, p := range pkgs {
			if p == backend || strings.HasPrefix(p, backend+"/") {
				t.Errorf("%s: verifier/... or bundle/... depends on %s", orHost(target), p)
			}
		}
	}
}

func orHost(target string) string {
	if target == "" {
		return runtime.GOOS + "/" + runtime.GOARCH
	}
	return target
}
