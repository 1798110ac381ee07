//go:build ccmr_man

package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// This file is built only with -tags ccmr_man (scripts/deb.sh does): the
// man page generator links cobra/doc, go-md2man, blackfriday and yaml,
// whose package initialisation alone (blackfriday's tables: 0.3 ms, 214 KB)
// would cost every start of the binary users run, for pages it never
// writes.

// init adds `man` to the commands table. The table cannot name it itself:
// newManCmd builds the whole tree from the table, so the table's
// initialisation would refer to itself.
func init() {
	commands = append(commands, struct {
		name  string
		build func(*globals) *cobra.Command
	}{"man", newManCmd})
}

// newManCmd is the hidden `ccmr man DIR`: it writes one man page (section
// 1) per command into DIR, from the same command tree the CLI runs, so the
// pages cannot drift from the flags. scripts/deb.sh calls it; users read
// the pages it wrote (man ccmr-verify).
func newManCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "Write the man pages of every command into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			date, err := manDate(g.getenv("SOURCE_DATE_EPOCH"))
			if err != nil {
				return err
			}
			dir := args[0]
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			// The whole tree, whatever this command line built, and
			// cobra's completion command, which it adds only when it runs.
			root := newRoot(g.env)
			root.InitDefaultCompletionCmd()
			root.DisableAutoGenTag = true
			header := &doc.GenManHeader{
				Title:   "CCMR",
				Section: "1",
				Source:  "ccmr " + buildVersion(),
				Manual:  "ccmr manual",
				Date:    &date,
			}
			if err := doc.GenManTree(root, header, dir); err != nil {
				return fmt.Errorf("man pages in %s: %w", dir, err)
			}
			return nil
		},
	}
}

// manDate is the date the pages carry: SOURCE_DATE_EPOCH (seconds since
// 1970, set by make release from the last commit) so that two builds of
// one commit write the same bytes, else today.
func manDate(epoch string) (time.Time, error) {
	if epoch == "" {
		return time.Now().UTC(), nil
	}
	s, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil || s < 0 {
		return time.Time{}, usageError("SOURCE_DATE_EPOCH %q: want seconds since 1970", epoch)
	}
	return time.Unix(s, 0).UTC(), nil
}
