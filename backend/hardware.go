package backend

import (
	"context"
	"fmt"

	"github.com/ccmr-dev/ccmr/mr"
)

// probe looks for hardware in DESIGN.md's order: tdx, snp, tpm. It returns
// nil, nil when there is none.
func probe(ctx context.Context, opts Options) (mr.Device, error) {
	return nil, nil
}

func openHardware(ctx context.Context, sp Spec, opts Options) (mr.Device, error) {
	return nil, fmt.Errorf("device %s: %w: backend not built yet", sp, mr.ErrUnsupported)
}
