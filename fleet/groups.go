package fleet

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"

	"github.com/ccmr-dev/ccmr/verifier"
)

// Groups are the policies by machine group: DIR/GROUP.json is the policy
// (docs/policy.md) of the machines enrolled in GROUP. Reload reads the
// folder again (on SIGHUP); a folder that no longer loads whole keeps the
// policies in force, so a half-edited file never judges anything.
type Groups struct {
	dir string
	cur atomic.Pointer[map[string]*verifier.Policy]
}

// validName is what a machine id or group name may be: it names files and
// appears in URLs and logs.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// LoadGroups reads the policies of dir.
func LoadGroups(dir string) (*Groups, error) {
	g := &Groups{dir: dir}
	if err := g.Reload(); err != nil {
		return nil, err
	}
	return g, nil
}

// Reload replaces the policies with the folder's, all or nothing.
func (g *Groups) Reload() error {
	ents, err := os.ReadDir(g.dir)
	if err != nil {
		return fmt.Errorf("policy groups: %w", err)
	}
	m := map[string]*verifier.Policy{}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		if !validName.MatchString(name) {
			return fmt.Errorf("policy groups: %s: not a group name", e.Name())
		}
		p, err := verifier.LoadPolicy(filepath.Join(g.dir, e.Name()))
		if err != nil {
			return fmt.Errorf("policy groups: %w", err)
		}
		m[name] = p
	}
	g.cur.Store(&m)
	return nil
}

// Policy is the group's policy; a group without one is an error (the
// machine's evidence is refused, never judged without the policy meant).
func (g *Groups) Policy(group string) (*verifier.Policy, error) {
	if p := (*g.cur.Load())[group]; p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("group %q has no policy file in %s", group, g.dir)
}
