package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// The table of top-level commands names each command as it names itself.
func TestCommandTable(t *testing.T) {
	g := &globals{env: env{getenv: func(string) string { return "" }}}
	seen := map[string]bool{}
	for _, c := range commands {
		if got := c.build(g).Name(); got != c.name || seen[c.name] {
			t.Errorf("table entry %q builds %q (or is listed twice)", c.name, got)
		}
		seen[c.name] = true
	}
	if n := len(newRoot(env{getenv: func(string) string { return "" }}).Commands()); n != len(commands) {
		t.Errorf("full tree has %d commands, table %d", n, len(commands))
	}
}

// run builds only the command a command line names; for every kind of
// command line (flags before the name, flag values that look like names,
// help, unknown and misspelt commands, "--") it must answer exactly as
// the full tree does: same exit code, same output.
func TestLazyTreeAnswersAsTheFullTree(t *testing.T) {
	for _, line := range []string{
		"", "version", "-o json version", "--output=json version", "-ojson version", "--output json version",
		"-o", "--device", "version --help", "--help version", "-h version", "version -h", "help", "help version",
		"verion", "version extra", "--bogus version", "--bogus x version", "-x version", "--device version read",
		"-o version", "log", "log rplay", "log --help", "vmr list --help", "evidence import --help", "verify", "verify --help",
		"completion bash", "version completion", "completion", "--", "-- version", "-h", "--help", "read --nosuch", "key --help", "version -o yaml", "-o yaml version",
		"--log-dir=/nonexistent version", "--backing rtmr2 --device=sim:/nonexistent version",
		"-q version", "-v version", "-qv version", "-q -v version", "version -v --help", "-v", "-q help version",
	} {
		args := strings.Fields(line)
		get := func(string) string { return "" }
		var o1, e1, o2, e2 bytes.Buffer
		env1 := env{stdin: strings.NewReader(""), stdout: &o1, stderr: &e1, getenv: get}
		env2 := env{stdin: strings.NewReader(""), stdout: &o2, stderr: &e2, getenv: get}
		c1 := runTree(context.Background(), newRoot(env1), args, env1)
		c2 := run(context.Background(), args, env2)
		if c1 != c2 || o1.String() != o2.String() || e1.String() != e2.String() {
			t.Errorf("ccmr %s: full tree exit %d\n%s%s\nlazy tree exit %d\n%s%s", line, c1, o1.String(), e1.String(), c2, o2.String(), e2.String())
		}
	}
}

// Only the named command is built.
func TestLazyTreeBuildsOneCommand(t *testing.T) {
	e := env{getenv: func(string) string { return "" }}
	for line, want := range map[string]int{"version": 1, "-o json verify x": 1, "--device read version": 1, "help": len(commands), "": len(commands), "nosuch": len(commands)} {
		if n := len(newRootFor(e, strings.Fields(line)).Commands()); n != want {
			t.Errorf("ccmr %s: %d commands built, want %d", line, n, want)
		}
	}
}
