package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/backend/tpm"
	"github.com/ccmr-dev/ccmr/mr"
)

// newKeyCmd prints the public key that signs the device's evidence, for a
// verifier to pin with verify --trust-ak (TPM AK) or --trust-sim-key (sim key).
func newKeyCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "key [-O FILE]",
		Short: "Print the attestation public key as PEM: a TPM AK to pin with verify --trust-ak, a sim key with --trust-sim-key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			dev, err := g.openDevice(ctx)
			if err != nil {
				return err
			}
			defer dev.Close()
			pem, err := attestationKey(ctx, dev)
			if err != nil {
				return err
			}
			if out != "" {
				return writeOutput(out, 0o644, func(w io.Writer) error {
					_, err := w.Write(pem)
					return err
				})
			}
			_, err = g.stdout.Write(pem)
			return err
		},
	}
	cmd.Flags().StringVarP(&out, "out", "O", "", "write the PEM to FILE")
	return cmd
}

// The devices whose evidence a pinned key vouches for.
var (
	_ mr.KeyHolder = (*sim.Device)(nil)
	_ mr.KeyHolder = (*tpm.Device)(nil)
)

// attestationKey is the key a verifier pins for dev's evidence: devices
// that sign with a key of their own are mr.KeyHolders.
func attestationKey(ctx context.Context, dev mr.Device) ([]byte, error) {
	if k, ok := dev.(mr.KeyHolder); ok {
		return k.PublicKeyPEM(ctx)
	}
	return nil, fmt.Errorf("device %s has no pinnable attestation key (its evidence chains to the vendor's roots): %w", dev.Kind(), mr.ErrUnsupported)
}
