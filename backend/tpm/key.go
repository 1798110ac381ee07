package tpm

import (
	"context"

	"github.com/ccmr-dev/ccmr/mr"
)

var _ mr.KeyHolder = (*Device)(nil)

// PublicKeyPEM is AKPublic: the attestation key a verifier pins, making the
// TPM an mr.KeyHolder.
func (d *Device) PublicKeyPEM(ctx context.Context) ([]byte, error) { return d.AKPublic(ctx) }
