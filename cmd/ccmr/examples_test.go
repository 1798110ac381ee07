package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestExamples checks that every command has an Example section and that
// each of its ccmr lines names an existing command with flags it has and
// an argument count it accepts: an example that no longer parses fails.
func TestExamples(t *testing.T) {
	root := newRoot(env{getenv: func(string) string { return "" }})
	seen := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Name() == "help" || c.Name() == "completion" || c.Hidden || (c.Parent() != nil && c.Parent().Name() == "completion") {
			return
		}
		seen[c.CommandPath()] = true
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%s: no Example", c.CommandPath())
		}
		n := 0
		for _, line := range strings.Split(c.Example, "\n") {
			for _, part := range strings.Split(line, "|") {
				args := strings.Fields(part)
				if i := slices.Index(args, "<"); i >= 0 {
					args = args[:i]
				}
				if len(args) == 0 || args[0] != "ccmr" {
					continue
				}
				n++
				checkExample(t, c.CommandPath(), args[1:])
			}
		}
		if n == 0 {
			t.Errorf("%s: Example has no ccmr line", c.CommandPath())
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	for p := range examples {
		if !seen[p] {
			t.Errorf("examples[%q]: no such command", p)
		}
	}
}

// checkExample parses one example command line as cobra would run it.
func checkExample(t *testing.T, owner string, args []string) {
	t.Helper()
	root := newRoot(env{getenv: func(string) string { return "" }})
	cmd, rest, err := root.Find(args)
	if err != nil || cmd == root && len(rest) > 0 {
		t.Errorf("%s: example %q: no command (%v)", owner, args, err)
		return
	}
	if !cmd.Runnable() {
		t.Errorf("%s: example %q: %s only groups commands", owner, args, cmd.CommandPath())
		return
	}
	// Find strips the command names; the flags are parsed from what is
	// left of args after them, as cobra's execute does.
	fl := cmd.Flags()
	if err := fl.Parse(stripNames(args, cmd)); err != nil {
		t.Errorf("%s: example %q: %v", owner, args, err)
		return
	}
	if cmd.Args != nil {
		if err := cmd.Args(cmd, fl.Args()); err != nil {
			t.Errorf("%s: example %q: %v", owner, args, err)
		}
	}
}

// stripNames removes the command path's names from args.
func stripNames(args []string, cmd *cobra.Command) []string {
	names := strings.Fields(cmd.CommandPath())[1:]
	var out []string
	for _, a := range args {
		if len(names) > 0 && a == names[0] {
			names = names[1:]
			continue
		}
		out = append(out, a)
	}
	return out
}
