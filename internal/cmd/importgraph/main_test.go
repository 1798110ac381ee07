package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDesignDocUpToDate fails when the import graph in docs/design.md is
// not what `go list` says today: run `go run ./internal/cmd/importgraph -w`.
func TestDesignDocUpToDate(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	g, err := Load(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"mr", "eventlog", "vmr", "bundle", "verifier", "cmd/ccmr", "internal/cmd/importgraph"} {
		if _, ok := g.Imports[p]; !ok {
			t.Fatalf("go list did not list %s: %v", p, g.sorted())
		}
	}
	doc, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(DocPath)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Section(doc)
	if err != nil {
		t.Fatalf("%s: %v", DocPath, err)
	}
	if want := g.Render(); got != want {
		t.Errorf("%s: the import graph is stale; run `go run ./internal/cmd/importgraph -w`.\n--- in the document\n%s\n--- from go list\n%s", DocPath, got, want)
	}
}

// The layers put every package above what it imports; the diagram drops
// only implied edges; module-external imports are left out.
func TestLayersAndReduction(t *testing.T) {
	g, err := Parse("example.com/m", strings.Join([]string{
		"example.com/m/a",
		"example.com/m/b example.com/m/a fmt",
		"example.com/m/c example.com/m/a example.com/m/b golang.org/x/sys/unix",
		"example.com/m example.com/m/c",
	}, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	layers, err := g.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(join(layers), " | "); got != "a | b | c | ." {
		t.Fatalf("layers %s", got)
	}
	if got := g.reduced("c"); len(got) != 1 || got[0] != "b" {
		t.Fatalf("c's reduced imports %v, want [b] (c → a is implied by c → b → a)", got)
	}
	out := g.Render()
	for _, want := range []string{"| 2 | `c` | `a`, `b` |", "c[c] --> b[b]", "root[.] --> c[c]", "| 0 | `a` | — |"} {
		if !strings.Contains(out, want) {
			t.Errorf("rendered section lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "c[c] --> a[a]") || strings.Contains(out, "fmt") || strings.Contains(out, "x/sys") {
		t.Errorf("implied or external edge drawn:\n%s", out)
	}
}

func join(layers [][]string) []string {
	var out []string
	for _, l := range layers {
		out = append(out, strings.Join(l, ","))
	}
	return out
}

// Hostile listings: a cycle, an import of an unlisted package, a package
// outside the module and an empty listing are errors, not a partial graph.
func TestBadListings(t *testing.T) {
	cyc, err := Parse("m", "m/a m/b\nm/b m/a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cyc.Layers(); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("cycle: %v", err)
	}
	if !strings.Contains(cyc.Render(), "import graph unavailable") {
		t.Error("a cycle rendered as a graph")
	}
	missing, err := Parse("m", "m/a m/zz")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := missing.Layers(); err == nil {
		t.Error("an import of an unlisted package was accepted")
	}
	for name, list := range map[string]string{"outside": "other/a", "empty": "\n", "twice": "m/a\nm/a"} {
		if g, err := Parse("m", list); err == nil {
			t.Errorf("%s: parsed to %v", name, g.Imports)
		}
	}
}

// Replace rewrites exactly the marked lines and refuses a document whose
// markers are missing, doubled or out of order.
func TestReplace(t *testing.T) {
	doc := "# d\n\nbefore\n" + Begin + "\nold line\n" + End + "\nafter\n"
	sec := Begin + "\nnew\n" + End + "\n"
	got, err := Replace([]byte(doc), sec)
	if err != nil {
		t.Fatal(err)
	}
	if want := "# d\n\nbefore\n" + sec + "after\n"; string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if s, err := Section(got); err != nil || s != sec {
		t.Fatalf("Section = %q, %v", s, err)
	}
	for name, bad := range map[string]string{
		"no markers":   "# d\n",
		"no end":       Begin + "\nx\n",
		"reversed":     End + "\n" + Begin + "\n",
		"begin twice":  Begin + "\n" + Begin + "\n" + End + "\n",
		"end twice":    Begin + "\n" + End + "\n" + End + "\n",
		"inline begin": "text " + Begin + "\n" + End + "\n",
	} {
		if _, err := Replace([]byte(bad), sec); !errors.Is(err, ErrMarkers) {
			t.Errorf("%s: %v, want ErrMarkers", name, err)
		}
	}
}

// FuzzReplace: no document panics Replace; what it accepts holds the new
// section exactly once, found again by Section.
func FuzzReplace(f *testing.F) {
	f.Add("a\n" + Begin + "\nold\n" + End + "\nb\n")
	f.Add(Begin + "\n" + End + "\n")
	f.Add("no markers")
	f.Add("x" + Begin + "\n" + Begin + "\nold\n" + End + "\n")
	sec := Begin + "\nnew\n" + End + "\n"
	f.Fuzz(func(t *testing.T, doc string) {
		out, err := Replace([]byte(doc), sec)
		if err != nil {
			return
		}
		if strings.Count(string(out), sec) != 1 {
			t.Fatalf("section not once in %q", out)
		}
		if s, err := Section(out); err != nil || s != sec {
			t.Fatalf("Section = %q, %v in %q", s, err, out)
		}
	})
}
