// Package modcache finds files of a dependency in the Go module cache, so
// that tests read a dependency's own test data in place instead of keeping
// copies of it.
package modcache

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// File returns the path of rel inside module's folder in the module cache
// (`go list -m -f {{.Dir}} MODULE`, at the version go.mod requires).
func File(module, rel string) (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	if err != nil {
		return "", fmt.Errorf("modcache: go list -m %s: %w", module, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("modcache: %s is not in the module cache (go mod download %s)", module, module)
	}
	return filepath.Join(dir, filepath.FromSlash(rel)), nil
}
