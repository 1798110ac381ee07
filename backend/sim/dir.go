package sim

import (
	"fmt"
	"path/filepath"
)

// DefaultDir returns the default state folder: $XDG_STATE_HOME/ccmr/sim when
// XDG_STATE_HOME is set to an absolute path (the XDG base-directory spec
// ignores relative ones), else $HOME/.local/state/ccmr/sim. getenv is the
// environment lookup, os.Getenv in a program.
func DefaultDir(getenv func(string) string) (string, error) {
	if x := getenv("XDG_STATE_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "ccmr", "sim"), nil
	}
	h := getenv("HOME")
	if h == "" || !filepath.IsAbs(h) {
		return "", fmt.Errorf("sim: no state folder: neither XDG_STATE_HOME nor HOME is an absolute path; give one with --device sim:DIR")
	}
	return filepath.Join(h, ".local", "state", "ccmr", "sim"), nil
}
