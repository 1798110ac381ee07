package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
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
