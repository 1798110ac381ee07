package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ccmr-dev/ccmr/internal/termsafe"
	"github.com/ccmr-dev/ccmr/verifier"
)

// onceValue refuses a second value for a single-valued flag. pflag keeps the
// last of `--policy a --policy b` and drops the first without a word; when a
// script or an attacker appends a flag, the operator's own one must not
// silently lose (issue 15, item 18).
type onceValue struct {
	pflag.Value
	name string
	set  bool
}

func (o *onceValue) Set(s string) error {
	if o.set {
		return fmt.Errorf("--%s given more than once: give it once", o.name)
	}
	o.set = true
	return o.Value.Set(s)
}

// refuseRepeatedFlags wraps every single-valued flag of cmd and its
// subcommands in onceValue. Repeatable flags (string arrays and slices) are
// left alone: each command checks their values for repeated targets itself.
func refuseRepeatedFlags(cmd *cobra.Command) {
	wrap := func(f *pflag.Flag) {
		if _, done := f.Value.(*onceValue); done {
			return
		}
		t := f.Value.Type()
		if strings.HasSuffix(t, "Slice") || strings.HasSuffix(t, "Array") {
			return
		}
		f.Value = &onceValue{Value: f.Value, name: f.Name}
	}
	cmd.Flags().VisitAll(wrap)
	cmd.PersistentFlags().VisitAll(wrap)
	for _, c := range cmd.Commands() {
		refuseRepeatedFlags(c)
	}
}

// writeReportText prints verify's text report as -q and -v ask: the verdict
// line alone under -q (the exit code says the rest), the report and then
// every proven value under -v.
func writeReportText(g *globals, rep *verifier.Report) error {
	if g.quiet {
		_, err := fmt.Fprintf(g.stdout, "%s: %s\n", termsafe.Line(nameOr(rep.Bundle)), termsafe.Line(rep.VerdictLine()))
		return err
	}
	if err := rep.WriteText(g.stdout); err != nil {
		return err
	}
	if !g.verbose || rep.Proven == nil {
		return nil
	}
	var b strings.Builder
	for _, l := range []struct {
		title string
		rs    []verifier.ProvenRegister
	}{{"proven registers (layer 0):", rep.Proven.Registers}, {"proven virtual registers (layer 2):", rep.Proven.Virtual}} {
		if len(l.rs) == 0 {
			continue
		}
		fmt.Fprintf(&b, "%s\n", l.title)
		for _, r := range l.rs {
			fmt.Fprintf(&b, "  %-14s %-7s %s\n", termsafe.Line(r.Name), r.Digest.Alg, r.Digest.Hex())
		}
	}
	_, err := io.WriteString(g.stdout, b.String())
	return err
}

func nameOr(s string) string {
	if s == "" {
		return "bundle"
	}
	return s
}

// regName is a register name as given on the command line, folded to the
// lower case every register name has: RTMR3, PCR10 and MR_IMA name rtmr3,
// pcr10 and mr_ima. Device names are lower case, and a virtual name is mr_
// and [a-z0-9_.-] only (vmr refuses any other), so no two spellings can
// name two registers. Only ASCII A-Z is folded: strings.ToLower would also
// turn U+212A KELVIN SIGN into "k", letting a name that is not ASCII pass as
// one that is.
func regName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// regNames is regName of each of names.
func regNames(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = regName(n)
	}
	return out
}
