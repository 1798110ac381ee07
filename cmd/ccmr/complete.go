package main

import (
	"context"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ccmr-dev/ccmr/backend"
	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/logfile"
	"github.com/ccmr-dev/ccmr/mr"
)

// completeTimeout bounds how long completing a register name waits for the
// device (and its runtime log) to answer: a shell must not hang on a tab
// key, so a slow or absent device gives the static names instead.
const completeTimeout = 500 * time.Millisecond

// isCompletion says whether args run cobra's hidden completion command
// (__complete, __completeNoDesc), the only one that calls completion
// functions: the others need not register them.
func isCompletion(args []string) bool {
	return len(args) > 0 && strings.HasPrefix(args[0], cobra.ShellCompRequestCmd)
}

// staticRegisters are the register names offered when no device answers:
// TDX's and the TPM's PCRs.
func staticRegisters() []string {
	names := []string{"mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3"}
	for i := 0; i < 24; i++ {
		names = append(names, "pcr"+strconv.Itoa(i))
	}
	return names
}

// deviceKinds are the --device values offered.
var deviceKinds = []string{"auto", "sim", "tpm", "tpm:/dev/tpmrm0", "tdx", "snp"}

// addCompletions registers the completion functions of root's tree:
// register names as arguments of read, extend and vmr read, and the values
// of --device, -o, --format and --bundle-format.
func addCompletions(root *cobra.Command, g *globals) {
	fixed := func(vals ...string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return vals, cobra.ShellCompDirectiveNoFileComp
		}
	}
	root.RegisterFlagCompletionFunc("device", fixed(deviceKinds...))
	root.RegisterFlagCompletionFunc("output", fixed("text", "json"))
	registers := func(virtualOnly bool, max int) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			if max > 0 && len(args) >= max {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			names := g.registerNames(cmd.Context(), virtualOnly)
			return matchNames(names, args, toComplete), cobra.ShellCompDirectiveNoFileComp
		}
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		switch c.CommandPath() {
		case "ccmr read":
			c.ValidArgsFunction = registers(false, 0)
		case "ccmr extend":
			c.ValidArgsFunction = registers(false, 1)
		case "ccmr vmr read":
			c.ValidArgsFunction = registers(true, 0)
		case "ccmr ima aggregate":
			c.RegisterFlagCompletionFunc("format", fixed(formats(logfile.RoleIMA)...))
		case "ccmr log show", "ccmr log replay", "ccmr log export":
			c.RegisterFlagCompletionFunc("format", fixed(formats(-1)...))
		case "ccmr quote":
			c.RegisterFlagCompletionFunc("bundle-format", fixed("v2", "v1"))
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
}

// formats lists auto and the log registry's formats of role (-1: every
// role).
func formats(role logfile.Role) []string {
	out := []string{string(eventlog.FormatAuto)}
	for _, f := range logfile.Formats() {
		if c, ok := logfile.Lookup(f); ok && (role < 0 || c.Role() == role) {
			out = append(out, string(f))
		}
	}
	return out
}

// registerNames returns the names of the device's registers and its
// virtual registers, or the static names when the device does not open
// and answer within completeTimeout. Nothing is written on standard error:
// it would land in the middle of the user's command line.
func (g *globals) registerNames(ctx context.Context, virtualOnly bool) []string {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completeTimeout)
	defer cancel()
	ch := make(chan []string, 1)
	go func() {
		ch <- g.deviceNames(ctx, virtualOnly)
	}()
	select {
	case names := <-ch:
		if names != nil {
			return names
		}
	case <-ctx.Done():
		// The device goroutine ends with the process.
	}
	if virtualOnly {
		return nil
	}
	return staticRegisters()
}

// deviceNames opens the device and lists its register names (nil on any
// error).
func (g *globals) deviceNames(ctx context.Context, virtualOnly bool) []string {
	if !g.deviceExists() {
		return nil
	}
	quiet := *g
	quiet.stderr = io.Discard
	dev, err := backend.Open(ctx, g.device, backend.Options{Stderr: io.Discard, Getenv: g.getenv})
	if err != nil {
		return nil
	}
	defer dev.Close()
	var regs []mr.Register
	if !virtualOnly {
		if regs, err = dev.Registers(ctx); err != nil {
			return nil
		}
	}
	// A device without a runtime log has no virtual registers; an error
	// reading one leaves them out rather than the device's names.
	if vs, err := quiet.virtualRegisters(ctx, dev); err == nil {
		regs = append(regs, vs...)
	}
	names := []string{}
	for _, r := range regs {
		if !slices.Contains(names, r.Name) {
			names = append(names, r.Name)
		}
	}
	return names
}

// matchNames returns the names that start with toComplete, ignoring case
// as register names do, leaving out those already given; typed in upper
// case (RTMR), they are offered in upper case, so the shell's own prefix
// filter keeps them.
func matchNames(names, given []string, toComplete string) []string {
	upper := toComplete != "" && toComplete != regName(toComplete)
	prefix := regName(toComplete)
	var out []string
	for _, n := range names {
		if !strings.HasPrefix(n, prefix) || slices.Contains(regNames(given), n) {
			continue
		}
		if upper {
			n = strings.ToUpper(n)
		}
		out = append(out, n)
	}
	return out
}

// deviceExists says whether opening the --device spec only opens: a tab key
// must not create the sim device's state folder, which opening it does. So
// the sim device (named, or auto's fallback) is opened only when its folder
// exists; auto without one gives the static names even on hardware, where
// they are the hardware's names.
func (g *globals) deviceExists() bool {
	sp, err := backend.ParseSpec(g.device)
	if err != nil {
		return false
	}
	if sp.Kind != "sim" && sp.Kind != "auto" {
		return true
	}
	dir := sp.Arg
	if sp.Kind == "auto" || dir == "" {
		if dir, err = sim.DefaultDir(g.getenv); err != nil {
			return false
		}
	}
	fi, err := os.Stat(dir)
	return err == nil && fi.IsDir()
}
