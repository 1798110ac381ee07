//go:build ccmr_man

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Run by make deb-check: go test -tags ccmr_man -run TestManPages ./cmd/ccmr

// Every command has a man page that names each of its flags, and the pages
// of one SOURCE_DATE_EPOCH are the same bytes each time.
func TestManPages(t *testing.T) {
	gen := func(dir, epoch string) {
		t.Helper()
		var out, errb bytes.Buffer
		e := env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string {
			if k == "SOURCE_DATE_EPOCH" {
				return epoch
			}
			return ""
		}}
		if c := run(context.Background(), []string{"man", dir}, e); c != 0 {
			t.Fatalf("ccmr man: exit %d: %s", c, errb.String())
		}
	}
	a, b := t.TempDir(), t.TempDir()
	gen(a, "1764770000")
	gen(b, "1764770000")
	root := newRoot(env{getenv: func(string) string { return "" }})
	root.InitDefaultCompletionCmd()
	n := 0
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c != root {
			return
		}
		name := strings.ReplaceAll(c.CommandPath(), " ", "-") + ".1"
		page, err := os.ReadFile(filepath.Join(a, name))
		if err != nil {
			t.Errorf("%s: no man page: %v", c.CommandPath(), err)
			return
		}
		n++
		if other, err := os.ReadFile(filepath.Join(b, name)); err != nil || !bytes.Equal(page, other) {
			t.Errorf("%s: two runs wrote different pages", name)
		}
		// md2man writes "-" as "\-" in roff.
		text := strings.ReplaceAll(string(page), `\-`, "-")
		c.NonInheritedFlags().VisitAll(func(f *pflag.Flag) {
			if !f.Hidden && !strings.Contains(text, "--"+f.Name) {
				t.Errorf("%s: flag --%s not in the page", name, f.Name)
			}
		})
		if !strings.Contains(text, "Dec 2025") {
			t.Errorf("%s: date is not SOURCE_DATE_EPOCH's", name)
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	if n < len(commands) {
		t.Errorf("%d pages, fewer than the %d top-level commands", n, len(commands))
	}
	if _, err := os.Stat(filepath.Join(a, "ccmr-man.1")); err == nil {
		t.Errorf("the hidden man command has a page")
	}
	var errb bytes.Buffer
	e := env{stdin: strings.NewReader(""), stdout: &errb, stderr: &errb, getenv: func(k string) string {
		if k == "SOURCE_DATE_EPOCH" {
			return "yesterday"
		}
		return ""
	}}
	if c := run(context.Background(), []string{"man", t.TempDir()}, e); c != exitUsage {
		t.Errorf("SOURCE_DATE_EPOCH=yesterday: exit %d, want %d: %s", c, exitUsage, errb.String())
	}
}
