package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier"
)

// Exit codes, as docs/design.md fixes them ("Verifier layers" and "CLI").
const (
	exitOK    = 0
	exitFail  = 1 // not trusted, mismatch, device failure
	exitUsage = 2 // unusable input or arguments
)

// exitError carries an exit code chosen by a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError marks err as bad input or arguments (exit 2).
func usageError(format string, a ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

// exitCode maps an error to the process exit code: bad input is 2 whatever
// package reported it; mismatches and everything else are 1.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var le *eventlog.Error
	switch {
	case errors.Is(err, eventlog.ErrMismatch):
		return exitFail
	case errors.As(err, &le),
		errors.Is(err, mr.ErrUnknownRegister),
		errors.Is(err, mr.ErrNotExtendable),
		errors.Is(err, mr.ErrDigestSize),
		errors.Is(err, mr.ErrMalformed),
		errors.Is(err, mr.ErrUnsupported),
		errors.Is(err, fs.ErrNotExist),
		// A read of a folder: a folder given where a file is wanted.
		errors.Is(err, syscall.EISDIR):
		return exitUsage
	}
	return exitFail
}

// inputError marks a failure to open or read an input file as bad input
// (exit 2): a missing file, one the user may not read and a folder given
// as a file are all the caller's to fix, whichever reader met them. Other
// errors pass unchanged.
func inputError(err error) error {
	var pe *fs.PathError
	if err == nil || !errors.As(err, &pe) {
		return err
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EISDIR) {
		return &exitError{code: exitUsage, err: err}
	}
	return err
}

// jsonError is the one object `-o json` writes on standard error for an
// error: scripts read the message, the exit code and, for an error in a
// log, where it is, without parsing text.
type jsonError struct {
	Error string `json:"error"`
	Exit  int    `json:"exit"`
	// Errors lists each message when several errors were joined.
	Errors []string `json:"errors,omitempty"`
	// File, Record and Offset locate an error in a log; Record and Offset
	// are absent when no record or byte can be named.
	File   string `json:"file,omitempty"`
	Record *int   `json:"record,omitempty"`
	Offset *int64 `json:"offset,omitempty"`
	// Report is the verify report behind the error, where there is one
	// that standard output does not carry (policy create --from).
	Report *verifier.Report `json:"report,omitempty"`
}

// writeError reports err, which makes the process exit with code: as
// "ccmr: MESSAGE" lines for people, or as one JSON object on one line when
// asJSON (-o json), so that standard error never mixes text into the
// output a script parses.
func writeError(w io.Writer, err error, code int, asJSON bool) {
	if !asJSON {
		printError(w, err)
		return
	}
	je := jsonError{Error: err.Error(), Exit: code}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			je.Errors = append(je.Errors, e.Error())
		}
	}
	var le *eventlog.Error
	if errors.As(err, &le) {
		je.File = le.File
		if le.Record >= 0 {
			r := le.Record
			je.Record = &r
		}
		if le.Record >= 0 || le.Offset > 0 {
			o := le.Offset
			je.Offset = &o
		}
	}
	var re *reportError
	if errors.As(err, &re) {
		je.Report = re.report
	}
	b, mErr := json.Marshal(je)
	if mErr != nil {
		// A message is a Go string: Marshal cannot fail on it. Should it,
		// the error still reaches the user.
		printError(w, err)
		return
	}
	w.Write(append(b, '\n'))
}

// outputJSON reports whether the command line asked for -o json: root's
// flag once parsed, else a scan of args (an error in parsing the flags
// leaves the flag unset).
func outputJSON(root *cobra.Command, args []string) bool {
	if f := root.PersistentFlags().Lookup("output"); f != nil && f.Changed {
		return f.Value.String() == "json"
	}
	for i, a := range args {
		switch {
		case a == "--":
			return false
		case a == "-ojson" || a == "--output=json" || a == "-o=json":
			return true
		case (a == "-o" || a == "--output") && i+1 < len(args) && args[i+1] == "json":
			return true
		}
	}
	return false
}

// refuseUnknownSubcommands makes every command that only groups others
// (`ccmr evidence`, `ccmr log`, `ccmr vmr`…) refuse a word that names none
// of them: cobra prints the help and exits 0 for `ccmr log bogus`, which a
// script takes for success. Alone, such a command still prints its help.
func refuseUnknownSubcommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		refuseUnknownSubcommands(sub)
	}
	if !c.HasParent() || !c.HasSubCommands() || c.Runnable() {
		return
	}
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		hint := ""
		if cmd.SuggestionsMinimumDistance <= 0 {
			cmd.SuggestionsMinimumDistance = 2 // cobra's default for the root
		}
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			hint = "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return usageError("unknown command %q for %q (its commands: %s)%s", args[0], cmd.CommandPath(), subcommandNames(cmd), hint)
	}
}

// subcommandNames lists the commands under c a user may run.
func subcommandNames(c *cobra.Command) string {
	var names []string
	for _, s := range c.Commands() {
		if s.IsAvailableCommand() {
			names = append(names, s.Name())
		}
	}
	return strings.Join(names, ", ")
}

// dataFlagError names the --data flag in an error reading its file, so that
// "open /x: no such file" says which argument was wrong; an error of the
// device passes unchanged.
func dataFlagError(name string, err error) error {
	var pe *fs.PathError
	if err == nil || !errors.As(err, &pe) || (name != "-" && pe.Path != name) {
		return err
	}
	return fmt.Errorf("--data %s: %w", name, inputError(err))
}
