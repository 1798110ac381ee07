package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ccmr-dev/ccmr/mr"
)

// jsonRegister is one register in -o json output (docs/cli.md).
type jsonRegister struct {
	Name  string   `json:"name"`
	Alg   string   `json:"alg,omitempty"`
	Size  int      `json:"size"`
	Index *int     `json:"index,omitempty"`
	Flags []string `json:"flags"`
}

// jsonValue is one register value in -o json output.
type jsonValue struct {
	Name   string `json:"name"`
	Alg    string `json:"alg,omitempty"`
	Digest string `json:"digest"`
}

func toJSONRegister(r mr.Register) jsonRegister {
	j := jsonRegister{Name: r.Name, Size: r.Size, Flags: strings.Split(r.Flags.String(), ",")}
	if r.Alg != 0 {
		j.Alg = r.Alg.String()
	}
	if r.Index >= 0 {
		i := r.Index
		j.Index = &i
	}
	if r.Flags == 0 {
		j.Flags = []string{}
	}
	return j
}

// valueText is the text form of a value: the digest as ALG:HEX, or plain hex
// for opaque fields that have no algorithm.
func valueText(v mr.Value) string {
	if v.Digest.Alg == 0 {
		return v.Digest.Hex()
	}
	return v.Digest.String()
}

func toJSONValues(vs []mr.Value) []jsonValue {
	out := make([]jsonValue, 0, len(vs))
	for _, v := range vs {
		j := jsonValue{Name: v.Register.Name, Digest: valueText(v)}
		if v.Digest.Alg != 0 {
			j.Alg = v.Digest.Alg.String()
		}
		out = append(out, j)
	}
	return out
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeValues prints one "NAME ALG:HEX" line per value, or JSON.
func (g *globals) writeValues(device string, vs []mr.Value) error {
	if g.json() {
		return writeJSON(g.stdout, struct {
			Device string      `json:"device"`
			Values []jsonValue `json:"values"`
		}{device, toJSONValues(vs)})
	}
	for _, v := range vs {
		if _, err := tprintf(g.stdout, "%s %s\n", v.Register.Name, valueText(v)); err != nil {
			return err
		}
	}
	return nil
}

func newRegistersCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "registers",
		Short: "List the registers of the device (name, algorithm, size, flags)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			dev, err := g.openDevice(ctx)
			if err != nil {
				return err
			}
			defer dev.Close()
			regs, err := dev.Registers(ctx)
			if err != nil {
				return err
			}
			vregs, err := g.virtualRegisters(ctx, dev)
			if err != nil {
				return err
			}
			regs = append(regs, vregs...)
			if g.json() {
				out := make([]jsonRegister, 0, len(regs))
				for _, r := range regs {
					out = append(out, toJSONRegister(r))
				}
				return writeJSON(g.stdout, struct {
					Device    string         `json:"device"`
					Registers []jsonRegister `json:"registers"`
				}{dev.Kind(), out})
			}
			tprintf(g.stdout, "device: %s\n", dev.Kind())
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tALG\tSIZE\tFLAGS")
			for _, r := range regs {
				alg := "-"
				if r.Alg != 0 {
					alg = r.Alg.String()
				}
				tprintf(tw, "%s\t%s\t%d\t%s\n", r.Name, alg, r.Size, r.Flags)
			}
			return tw.Flush()
		},
	}
}

func newReadCmd(g *globals) *cobra.Command {
	var server string
	cmd := &cobra.Command{
		Use:   "read [REG...]",
		Short: "Print current register values (every bank of a TPM PCR); virtual registers too",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if c, err := g.serverClient(server); c != nil || err != nil {
				if err != nil {
					return err
				}
				return g.readViaServer(ctx, c, args)
			}
			dev, err := g.openDevice(ctx)
			if err != nil {
				return err
			}
			defer dev.Close()
			var real, virt []string
			for _, a := range regNames(args) {
				if strings.HasPrefix(a, "mr_") {
					virt = append(virt, a)
				} else {
					real = append(real, a)
				}
			}
			var vs []mr.Value
			if len(real) > 0 || len(args) == 0 {
				if vs, err = dev.Read(ctx, real...); err != nil {
					return err
				}
			}
			if len(virt) > 0 || len(args) == 0 {
				vv, err := g.readVirtual(ctx, dev, virt...)
				if err != nil {
					return err
				}
				vs = append(vs, vv...)
			}
			return g.writeValues(dev.Kind(), vs)
		},
	}
	addServerFlag(cmd, &server)
	return cmd
}
