package tpm

import (
	"context"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"

	"github.com/ccmr-dev/ccmr/mr"
)

// ExtendBanks extends register name with one digest per bank in a single
// TPM2_PCR_Extend, as ExtendData does with data's hashes: a caller that
// hashes its data as a stream (of any size) extends every bank at once.
func (d *Device) ExtendBanks(ctx context.Context, name string, ds []mr.Digest) error {
	return d.extendBanks(ctx, name, func(banks []mr.Alg) ([]mr.Digest, error) {
		for _, dg := range ds {
			if !slices.Contains(banks, dg.Alg) {
				return nil, fmt.Errorf("%w: %s has no %v bank on this TPM (banks: %v)", mr.ErrUnknownRegister, name, dg.Alg, banks)
			}
			if len(dg.Bytes) != dg.Alg.Size() {
				return nil, fmt.Errorf("%w: %s in %v needs %d bytes, got %d", mr.ErrDigestSize, name, dg.Alg, dg.Alg.Size(), len(dg.Bytes))
			}
		}
		return ds, nil
	})
}

// extendBanks extends PCR name with the digests digests gives for the
// allocated banks, in one TPM2_PCR_Extend.
func (d *Device) extendBanks(ctx context.Context, name string, digests func(banks []mr.Alg) ([]mr.Digest, error)) error {
	i, err := extendablePCR(name)
	if err != nil {
		return err
	}
	return d.op(ctx, func() error {
		banks, err := d.banksLocked()
		if err != nil {
			return err
		}
		ds, err := digests(banks)
		if err != nil {
			return err
		}
		var dv tpm2.TPMLDigestValues
		for _, dg := range ds {
			dv.Digests = append(dv.Digests, tpm2.TPMTHA{HashAlg: tpm2.TPMIAlgHash(dg.Alg), Digest: dg.Bytes})
		}
		if _, err := (tpm2.PCRExtend{PCRHandle: pcrAuth(i), Digests: dv}).Execute(d.c); err != nil {
			return fmt.Errorf("tpm: TPM2_PCR_Extend %s: %w", name, err)
		}
		return nil
	})
}
