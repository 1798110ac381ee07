package main

import (
	"context"
	"strings"

	"github.com/spf13/cobra"

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
}

// openDevice opens the --device spec.
func (g *globals) openDevice(ctx context.Context) (mr.Device, error) {
	return backend.Open(ctx, g.device, backend.Options{Stderr: g.stderr, Getenv: g.getenv})
}

func (g *globals) json() bool { return g.output == "json" }

func newRoot(e env) *cobra.Command {
	g := &globals{env: e}
	root := &cobra.Command{
		Use:           "ccmr",
		Short:         "Measurement registers of confidential VMs: read, extend, virtualise, quote, verify",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if g.output != "text" && g.output != "json" {
				return usageError("-o %q: want text or json", g.output)
			}
			return nil
		},
	}
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
	pf.StringVar(&g.backing, "backing", "", "backing register of virtual registers (default rtmr3, or pcr17 on a TPM)")

	root.AddCommand(
		newRegistersCmd(g),
		newReadCmd(g),
		newExtendCmd(g),
		newVersionCmd(g),
		newVMRCmd(g),
		newIMACmd(g),
		newLogCmd(g),
		newQuoteCmd(g),
		newVerifyCmd(g),
		newKeyCmd(g),
		newEvidenceCmd(g),
	)
	refuseRepeatedFlags(root)
	return root
}

func run(ctx context.Context, args []string, e env) int {
	root := newRoot(e)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil {
		printError(e.stderr, err)
	}
	code := exitCode(err)
	// cobra reports unknown commands and wrong argument counts as plain
	// errors; they are usage errors all the same.
	if err != nil && code == exitFail && isCobraUsage(err) {
		code = exitUsage
	}
	if err != nil && code == exitOK {
		code = exitFail
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
