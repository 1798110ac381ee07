package main

import (
	"context"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ccmr-dev/ccmr/backend"
	"github.com/ccmr-dev/ccmr/mr"
)

// globals are the persistent flags every command shares.
type globals struct {
	env
	device  string
	output  string
	logDir  string
	backing string
	// resettable acknowledges a backing register the guest can reset.
	resettable bool
	// quiet (-q) leaves only the result: notes on standard error are
	// dropped (errors are not: runTree prints them from env's stderr),
	// and verify prints its verdict line alone.
	quiet bool
	// verbose (-v) adds detail: what was detected or opened, on standard
	// error, and the proven values after verify's report.
	verbose bool
}

// verbosef writes a note on standard error under -v only.
func (g *globals) verbosef(format string, a ...any) {
	if g.verbose {
		tprintf(g.stderr, "ccmr: "+format+"\n", a...)
	}
}

// openDevice opens the --device spec.
func (g *globals) openDevice(ctx context.Context) (mr.Device, error) {
	dev, err := backend.Open(ctx, g.device, backend.Options{Stderr: g.stderr, Getenv: g.getenv})
	if err == nil {
		g.verbosef("device %s (--device %s)", dev.Kind(), g.device)
	}
	return dev, err
}

func (g *globals) json() bool { return g.output == "json" }

// commands are the top-level commands and their constructors. run builds
// only the one a command line names: building all of them (flags, help
// text, closures) was most of the work a short command like `ccmr version`
// did after Go's start-up.
var commands = []struct {
	name  string
	build func(*globals) *cobra.Command
}{
	{"registers", newRegistersCmd},
	{"read", newReadCmd},
	{"extend", newExtendCmd},
	{"version", newVersionCmd},
	{"vmr", newVMRCmd},
	{"ima", newIMACmd},
	{"log", newLogCmd},
	{"quote", newQuoteCmd},
	{"verify", newVerifyCmd},
	{"key", newKeyCmd},
	{"evidence", newEvidenceCmd},
	{"policy", newPolicyCmd},
	{"serve", newServeCmd},
	{"verifier", newVerifierCmd},
	{"attest", newAttestCmd},
}

// newRoot builds the command tree with every command.
func newRoot(e env) *cobra.Command { return newRootFor(e, nil) }

// newRootFor builds the command tree for a command line: the root and,
// when args name a top-level command (as cobra will find it), only that
// command; otherwise (help, completion, no or an unknown command, which
// lists or suggests commands) every command.
func newRootFor(e env, args []string) *cobra.Command {
	g := &globals{env: e}
	root := &cobra.Command{
		Use:           "ccmr",
		Short:         "Measurement registers of confidential VMs: read, extend, virtualise, quote, verify",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if g.output != "text" && g.output != "json" {
				return usageError("-o %q: want text or json%s", g.output, outputHint(g.output))
			}
			if g.quiet && g.verbose {
				return usageError("-q and -v: give one")
			}
			if g.quiet {
				// Every note a command writes goes through g.stderr;
				// errors are printed by runTree from its own env.
				g.stderr = io.Discard
			}
			return nil
		},
	}
	addVersionFlag(root)
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: err}
	})
	dev := e.getenv("CCMR_DEVICE")
	if dev == "" {
		dev = "auto"
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.device, "device", dev, "device: auto, sim[:DIR][?layout=tpm], tpm[:DEV|tcp://H:P|unix:PATH], tdx[:ROOT], snp (env CCMR_DEVICE)")
	pf.StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	pf.StringVar(&g.logDir, "log-dir", "", "runtime log folder (default /run/ccmr; on the sim device, inside its state folder)")
	pf.StringVar(&g.backing, "backing", e.getenv("CCMR_BACKING"), "backing register of virtual registers, recorded in the runtime log folder by its first log (default: the recorded one, else rtmr3, or pcr14 on a TPM; env CCMR_BACKING)")
	pf.BoolVarP(&g.quiet, "quiet", "q", false, "print only the result (verify: the verdict line); no notes on standard error, errors still")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "print more: detected log formats and the device opened on standard error, verify's proven values")
	pf.BoolVar(&g.resettable, "accept-resettable-backing", false, "accept a backing register the guest can reset (TPM PCR 16, 23): every verification of its log is then weakened")

	name, named := commandName(args, pf)
	for _, c := range commands {
		if !named || c.name == name {
			root.AddCommand(c.build(g))
		}
	}
	if named && len(root.Commands()) != 1 {
		// name is not a command: cobra must see them all to say so.
		for _, c := range commands {
			root.AddCommand(c.build(g))
		}
	} else if named {
		// A named command never reaches cobra's "completion" command, so
		// cobra need not build it (and its four subcommands) either.
		root.CompletionOptions.DisableDefaultCmd = true
	}
	addExamples(root)
	if isCompletion(args) {
		// Completion runs no command, and cobra parses its flags
		// more than once, which onceValue would refuse.
		addCompletions(root, g)
		return root
	}
	refuseRepeatedFlags(root)
	refuseUnknownSubcommands(root)
	return root
}

// commandName returns the first word of args that cobra takes for a
// command name: it skips flags and, as cobra's own search does
// (Command.Find, stripFlags), the word after a "--flag" or "-f" written
// without "=" unless the flag takes no value (cobra adds -h/--help only
// after its search, so there they take the next word too). named is false
// when there is no such word before "--".
func commandName(args []string, flags *pflag.FlagSet) (name string, named bool) {
	noValue := func(f *pflag.Flag) bool { return f != nil && f.NoOptDefVal != "" }
	for i := 0; i < len(args); i++ {
		s := args[i]
		switch {
		case s == "--":
			return "", false
		case strings.HasPrefix(s, "--") && !strings.Contains(s, "="):
			if !noValue(flags.Lookup(s[2:])) {
				i++
			}
		case strings.HasPrefix(s, "-") && !strings.Contains(s, "=") && len(s) == 2:
			if !noValue(flags.ShorthandLookup(s[1:])) {
				i++
			}
		case s != "" && !strings.HasPrefix(s, "-"):
			return s, true
		}
	}
	return "", false
}

func run(ctx context.Context, args []string, e env) int {
	return runTree(ctx, newRootFor(e, args), args, e)
}

// runTree runs args on a built command tree and returns the exit code.
func runTree(ctx context.Context, root *cobra.Command, args []string, e env) int {
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	code := exitCode(err)
	// cobra reports unknown commands and wrong argument counts as plain
	// errors; they are usage errors all the same.
	if err != nil && code == exitFail && isCobraUsage(err) {
		code = exitUsage
	}
	if err != nil && code == exitOK {
		code = exitFail
	}
	if err != nil {
		writeError(e.stderr, err, code, outputJSON(root, args))
	}
	return code
}

func isCobraUsage(err error) bool {
	m := err.Error()
	for _, p := range []string{"unknown command", "accepts ", "requires at least", "requires at most", "unknown flag", "unknown shorthand", "invalid argument", "flag needs", "required flag"} {
		if strings.HasPrefix(m, p) || strings.Contains(m, " "+p) {
			return true
		}
	}
	return false
}
