package fleet

import (
	"os"
	"path/filepath"
	"testing"
)

// Policies by group: a group without a file has no policy (its evidence is
// refused); a reload that fails keeps the policies in force; a good one
// replaces them.
func TestGroupsReload(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("web.json", `{}`)
	g, err := LoadGroups(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Policy("web"); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Policy("db"); err == nil {
		t.Error("a group without a policy file has a policy")
	}
	write("db.json", `{"no such member": 1}`)
	if err := g.Reload(); err == nil {
		t.Fatal("a broken policy file reloaded")
	}
	if _, err := g.Policy("web"); err != nil {
		t.Errorf("a failed reload dropped the policies in force: %v", err)
	}
	write("db.json", `{}`)
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Policy("db"); err != nil {
		t.Errorf("reloaded group: %v", err)
	}
}

// A machine whose group has no policy file is refused with 400, nothing
// written (fail closed: never judged without its policy).
func TestGroupWithoutPolicyRefused(t *testing.T) {
	g, err := LoadGroups(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	url := "sqlite:" + filepath.Join(t.TempDir(), "f.db")
	r := newReplica(t, url, Config{Groups: g})
	guest := newGuest(t, 1)
	if err := r.st.Enroll(t.Context(), guest.machine("nopolicy")); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, r.st)
	if code, _ := r.post(t, guest.id, guest.evidence(t, r.challenge(t), false)); code != 400 {
		t.Errorf("status %d, want 400", code)
	}
	if snapshot(t, r.st) != before {
		t.Error("the store changed")
	}
}
