package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ccmr-dev/ccmr/mr"
)

func newExtendCmd(g *globals) *cobra.Command {
	var digest, dataFile, server string
	cmd := &cobra.Command{
		Use:   "extend REG (--digest ALG:HEX | --data FILE|-)",
		Short: "Extend a register; a name starting with mr_ is a virtual register (logged)",
		Long: `Extend a real register with a digest, or with the hash of data in the
register's algorithm (on a TPM, every bank with its own hash). A name
starting with mr_ is a virtual register: the extend is logged in the runtime
log and the log record is extended into the backing register.
Data is hashed as it is read, so any size works; SIGINT or SIGTERM stops
the read (and a FIFO waiting for its writer) with nothing extended.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := regName(args[0])
			if (digest == "") == (dataFile == "") {
				return usageError("extend: give exactly one of --digest ALG:HEX or --data FILE|-")
			}
			var d mr.Digest
			var err error
			if digest != "" {
				if d, err = mr.ParseDigest(digest); err != nil {
					return fmt.Errorf("--digest: %w", err)
				}
			}
			ctx := cmd.Context()
			if c, err := g.serverClient(server); c != nil || err != nil {
				if err != nil {
					return err
				}
				return g.extendViaServer(ctx, c, name, d, dataFile)
			}
			dev, err := g.openDevice(ctx)
			if err != nil {
				return err
			}
			defer dev.Close()
			if strings.HasPrefix(name, "mr_") {
				if dataFile != "" {
					// A virtual register's algorithm is its first record's;
					// for --data use sha384, the algorithm of mr_ima and of
					// the TDX RTMRs.
					ds, err := hashInput(ctx, dataFile, g.stdin, []mr.Alg{mr.SHA384})
					if err != nil {
						return dataFlagError(dataFile, err)
					}
					d = ds[0]
				}
				return g.extendVirtual(ctx, dev, name, d)
			}
			if digest != "" {
				err = dev.Extend(ctx, name, d)
			} else {
				err = dataFlagError(dataFile, extendData(ctx, dev, name, dataFile, g))
			}
			if err != nil {
				return err
			}
			vs, err := dev.Read(ctx, name)
			if err != nil {
				return err
			}
			return g.writeValues(dev.Kind(), vs)
		},
	}
	cmd.Flags().StringVar(&digest, "digest", "", "digest to extend, ALG:HEX")
	cmd.Flags().StringVar(&dataFile, "data", "", "file whose hash is extended (- for standard input)")
	addServerFlag(cmd, &server)
	return cmd
}

// bankExtender extends every bank of a register with its own digest in one
// update (a TPM's single PCR_Extend).
type bankExtender interface {
	ExtendBanks(ctx context.Context, name string, ds []mr.Digest) error
}

// extendData extends every bank of register name with that bank's hash of
// the input, read as a stream: what dev.ExtendData does, without holding
// the data in memory.
func extendData(ctx context.Context, dev mr.Device, name, input string, g *globals) error {
	regs, err := dev.Registers(ctx)
	if err != nil {
		return err
	}
	// Refuse an unknown or read-only register before reading any input.
	var algs []mr.Alg
	known := false
	for _, r := range regs {
		if r.Name != name {
			continue
		}
		known = true
		if r.Flags&mr.Extendable != 0 && r.Alg.Valid() {
			algs = append(algs, r.Alg)
		}
	}
	if !known {
		return fmt.Errorf("%q is not a register of this %s device: %w", name, dev.Kind(), mr.ErrUnknownRegister)
	}
	if len(algs) == 0 {
		return fmt.Errorf("%s cannot be extended on this %s device: %w", name, dev.Kind(), mr.ErrNotExtendable)
	}
	ds, err := hashInput(ctx, input, g.stdin, algs)
	if err != nil {
		return err
	}
	// The input is read: the extend itself is short and must not stop
	// half way, with some banks extended and others not.
	ctx = context.WithoutCancel(ctx)
	switch e := dev.(type) {
	case bankExtender:
		return e.ExtendBanks(ctx, name, ds)
	case mr.MultiExtender:
		return e.ExtendMany(ctx, name, ds)
	}
	for _, dg := range ds {
		if err := dev.Extend(ctx, name, dg); err != nil {
			return err
		}
	}
	return nil
}
