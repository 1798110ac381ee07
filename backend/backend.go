package backend

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/mr"
)

// Options carry what Open needs from the process, passed in so that nothing
// reads globals.
type Options struct {
	// Stderr receives the one-line warning when auto falls back to the
	// software device. Nil discards it.
	Stderr io.Writer
	// Getenv looks up XDG_STATE_HOME and HOME for the sim state folder.
	// Nil means os.Getenv.
	Getenv func(string) string
	// Root is prefixed to every sysfs/configfs path auto-detection looks at
	// ("/" by default), so tests run it against emulated machines.
	Root string
	// ProbeTPM replaces the TPM device probe in auto-detection (tests).
	ProbeTPM func(context.Context) bool
}

func (o Options) root() string { return rootOr(o.Root) }

func (o Options) getenv(k string) string {
	if o.Getenv == nil {
		return os.Getenv(k)
	}
	return o.Getenv(k)
}

// Open opens the device a --device spec names. For "auto" it tries the
// hardware backends in the order of docs/design.md ("Registers and
// devices", auto-detection) and falls back to the software
// device with one warning line on opts.Stderr naming its state folder.
func Open(ctx context.Context, spec string, opts Options) (mr.Device, error) {
	sp, err := ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	switch sp.Kind {
	case "sim":
		return openSim(ctx, sp, opts)
	case "auto":
		if dev, err := probe(ctx, opts); dev != nil || err != nil {
			return dev, err
		}
		dir, err := sim.DefaultDir(opts.getenv)
		if err != nil {
			return nil, err
		}
		if opts.Stderr != nil {
			fmt.Fprintf(opts.Stderr, "ccmr: warning: no TDX, SNP or TPM found; using the software device (state in %s), whose evidence is never trusted by default\n", dir)
		}
		return openSim(ctx, Spec{Kind: "sim", Arg: dir}, opts)
	}
	return openHardware(ctx, sp, opts)
}

func openSim(ctx context.Context, sp Spec, opts Options) (mr.Device, error) {
	dir := sp.Arg
	if dir == "" {
		var err error
		if dir, err = sim.DefaultDir(opts.getenv); err != nil {
			return nil, err
		}
	}
	var so []sim.Option
	if l := sp.Options.Get("layout"); l != "" {
		layout, err := sim.ParseLayout(l)
		if err != nil {
			return nil, err
		}
		so = append(so, sim.WithLayout(layout))
	}
	return sim.Open(ctx, dir, so...)
}
