package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ccmr-dev/ccmr/mr"
)

func newExtendCmd(g *globals) *cobra.Command {
	var digest, dataFile string
	cmd := &cobra.Command{
		Use:   "extend REG (--digest ALG:HEX | --data FILE|-)",
		Short: "Extend a register; a name starting with mr_ is a virtual register (logged)",
		Long: `Extend a real register with a digest, or with the hash of data in the
register's algorithm (on a TPM, every bank with its own hash). A name
starting with mr_ is a virtual register: the extend is logged in the runtime
log and the log record is extended into the backing register.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if (digest == "") == (dataFile == "") {
				return usageError("extend: give exactly one of --digest ALG:HEX or --data FILE|-")
			}
			var d mr.Digest
			var data []byte
			var err error
			if digest != "" {
				if d, err = mr.ParseDigest(digest); err != nil {
					return fmt.Errorf("--digest: %w", err)
				}
			} else {
				if data, err = readInput(g, dataFile); err != nil {
					return err
				}
			}
			ctx := cmd.Context()
			dev, err := g.openDevice(ctx)
			if err != nil {
				return err
			}
			defer dev.Close()
			if strings.HasPrefix(name, "mr_") {
				return g.extendVirtual(ctx, dev, name, d, data)
			}
			if digest != "" {
				err = dev.Extend(ctx, name, d)
			} else {
				err = dev.ExtendData(ctx, name, data)
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
	return cmd
}

// readInput reads a file argument, "-" meaning standard input.
func readInput(g *globals, name string) ([]byte, error) {
	if name == "-" {
		b, err := io.ReadAll(g.stdin)
		if err != nil {
			return nil, fmt.Errorf("reading standard input: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, &exitError{code: exitUsage, err: err}
	}
	return b, nil
}
