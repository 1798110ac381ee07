package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=..." (make
// build and make release set it from git describe). Left at "devel", the
// version comes from the binary's build information instead.
var version = "devel"

// readBuildInfo is runtime/debug.ReadBuildInfo; tests replace it to check
// each way a binary can be built.
var readBuildInfo = debug.ReadBuildInfo

// buildVersion returns the version of this binary: the -X version when one
// was linked in; else the main module's version from the build information,
// which `go install github.com/ccmr-dev/ccmr/cmd/ccmr@v1.2.3` sets to
// v1.2.3 and `go build` in a git checkout to a pseudo-version (with
// "+dirty" for uncommitted changes); else "devel" with the VCS revision
// when the build recorded one.
func buildVersion() string {
	if version != "devel" && version != "" {
		return version
	}
	bi, ok := readBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		return "devel-" + rev + dirty
	}
	return "devel"
}

// versionLine is the text `ccmr version` and `ccmr --version` print.
func versionLine() string {
	return fmt.Sprintf("ccmr %s (%s %s/%s)\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// addVersionFlag gives root a --version flag that prints what `ccmr
// version` prints. The flag is declared here, without a shorthand, before
// cobra would add its own: cobra's takes -v, which belongs to verbosity.
func addVersionFlag(root *cobra.Command) {
	// cobra prints Version through the template as data, not as template
	// text, so the line is printed as it is.
	root.Version = strings.TrimSuffix(versionLine(), "\n")
	root.SetVersionTemplate("{{.Version}}\n")
	root.Flags().Bool("version", false, "print the ccmr version")
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the ccmr version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if g.json() {
				return writeJSON(g.stdout, map[string]string{"version": buildVersion(), "go": runtime.Version()})
			}
			_, err := fmt.Fprint(g.stdout, versionLine())
			return err
		},
	}
}
