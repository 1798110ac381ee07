package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// Each way a binary is built gives its version: -X from make build, the
// module version from go install, the VCS revision from a plain go build.
func TestBuildVersion(t *testing.T) {
	saved, savedRead := version, readBuildInfo
	t.Cleanup(func() { version, readBuildInfo = saved, savedRead })
	info := func(v string, settings ...debug.BuildSetting) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{Main: debug.Module{Path: "github.com/ccmr-dev/ccmr", Version: v}, Settings: settings}, true
		}
	}
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "0123456789abcdef0123"}
	for _, c := range []struct {
		name, x string
		read    func() (*debug.BuildInfo, bool)
		want    string
	}{
		{"make build", "v0.3.0-4-gabcdef", info("v9.9.9"), "v0.3.0-4-gabcdef"},
		{"go install", "devel", info("v1.2.3"), "v1.2.3"},
		{"go build in a checkout", "devel", info("v0.0.0-20261203144000-0123456789ab+dirty"), "v0.0.0-20261203144000-0123456789ab+dirty"},
		{"go build, revision only", "devel", info("(devel)", rev, debug.BuildSetting{Key: "vcs.modified", Value: "true"}), "devel-0123456789ab-dirty"},
		{"go build, nothing recorded", "devel", info("(devel)"), "devel"},
		{"no build information", "devel", func() (*debug.BuildInfo, bool) { return nil, false }, "devel"},
	} {
		version, readBuildInfo = c.x, c.read
		if got := buildVersion(); got != c.want {
			t.Errorf("%s: version %q, want %q", c.name, got, c.want)
		}
	}
}

// `ccmr --version` prints what `ccmr version` prints, and leaves -v free.
func TestVersionFlag(t *testing.T) {
	saved := version
	t.Cleanup(func() { version = saved })
	version = "v1.2.3"
	runOut := func(line string) (int, string) {
		var out, errb bytes.Buffer
		e := env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
		return run(context.Background(), strings.Fields(line), e), out.String() + errb.String()
	}
	c1, o1 := runOut("version")
	c2, o2 := runOut("--version")
	if c1 != 0 || c2 != 0 || o1 != o2 || !strings.HasPrefix(o1, "ccmr v1.2.3 (go") {
		t.Errorf("version: exit %d %q; --version: exit %d %q", c1, o1, c2, o2)
	}
	// -v is for verbosity (issue 21 item 5), not cobra's --version shorthand.
	root := newRoot(env{getenv: func(string) string { return "" }})
	if f := root.Flags().Lookup("version"); f == nil || f.Shorthand != "" {
		t.Errorf("--version flag %+v: want one without a shorthand", f)
	}
}

// The completion scripts cobra writes load in their shells: bash is
// required (it is on every machine that runs these tests); zsh and fish are
// checked where installed.
func TestCompletionScripts(t *testing.T) {
	dir := t.TempDir()
	for _, sh := range []string{"bash", "zsh", "fish"} {
		var out, errb bytes.Buffer
		e := env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
		if c := run(context.Background(), []string{"completion", sh}, e); c != 0 || out.Len() == 0 {
			t.Fatalf("completion %s: exit %d: %s", sh, c, errb.String())
		}
		file := filepath.Join(dir, "ccmr."+sh)
		if err := os.WriteFile(file, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		path, err := exec.LookPath(sh)
		if err != nil {
			if sh == "bash" {
				t.Fatalf("bash: %v", err)
			}
			t.Logf("%s not installed: its completion script is not checked", sh)
			continue
		}
		if b, err := exec.Command(path, "-n", file).CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v\n%s", sh, err, b)
		}
		if sh == "bash" {
			// Loaded, it registers a completion function for ccmr.
			b, err := exec.Command(path, "--norc", "-c", `source "$1" && complete -p ccmr`, "bash", file).CombinedOutput()
			if err != nil || !strings.Contains(string(b), "ccmr") {
				t.Errorf("bash: sourcing the completion: %v\n%s", err, b)
			}
		}
	}
}
