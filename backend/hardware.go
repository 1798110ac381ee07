package backend

import (
	"context"

	"github.com/ccmr-dev/ccmr/backend/snp"
	"github.com/ccmr-dev/ccmr/backend/tdx"
	"github.com/ccmr-dev/ccmr/backend/tpm"
	"github.com/ccmr-dev/ccmr/mr"
)

// probe looks for hardware in the order of docs/design.md ("Registers and
// devices", auto-detection): tdx, snp, tpm. It returns
// nil, nil when there is none.
func probe(ctx context.Context, opts Options) (mr.Device, error) {
	root := opts.root()
	switch {
	case tdx.Probe(root):
		return tdx.Open(ctx, root)
	case snp.Probe(root):
		return snp.Open(ctx, root)
	case opts.ProbeTPM == nil && tpm.Probe(ctx):
		return tpm.Open(ctx, "")
	case opts.ProbeTPM != nil && opts.ProbeTPM(ctx):
		return tpm.Open(ctx, "")
	}
	return nil, nil
}

func openHardware(ctx context.Context, sp Spec, opts Options) (mr.Device, error) {
	switch sp.Kind {
	case "tdx":
		return tdx.Open(ctx, rootOr(sp.Arg))
	case "snp":
		return snp.Open(ctx, rootOr(sp.Arg))
	default: // tpm
		return tpm.Open(ctx, sp.Arg)
	}
}

func rootOr(s string) string {
	if s == "" {
		return "/"
	}
	return s
}
