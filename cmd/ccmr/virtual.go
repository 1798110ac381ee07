package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/vmr"
)

// runtimeLogDir is --log-dir, else the sim device's state folder/runtime,
// else vmr.DefaultDir.
func (g *globals) runtimeLogDir(dev mr.Device) string {
	if g.logDir != "" {
		return g.logDir
	}
	if s, ok := dev.(*sim.Device); ok {
		return filepath.Join(s.Dir(), "runtime")
	}
	return vmr.DefaultDir
}

// openStore opens the virtual registers of dev, on the backing register the
// log folder records (vmr.RecordedBacking) unless --backing (CCMR_BACKING)
// names one; a disagreement is a usage error naming both. With create false
// it returns nil, nil when the folder holds no runtime log yet, so that
// reading never creates files.
func (g *globals) openStore(ctx context.Context, dev mr.Device, create bool) (*vmr.Store, error) {
	dir := g.runtimeLogDir(dev)
	if !create {
		recorded, err := vmr.RecordedBacking(dir)
		if errors.Is(err, vmr.ErrUnrecorded) && g.backing != "" {
			recorded, err = g.backing, nil // an old folder; vmr.Open opens the named log
		}
		if err != nil {
			return nil, g.storeError(err)
		}
		if recorded == "" {
			return nil, nil
		}
	}
	s, err := vmr.Open(ctx, dev, vmr.Options{Dir: dir, Backing: g.backing, AllowResettable: g.resettable})
	return s, g.storeError(err)
}

// storeError adds what the user can do to vmr's errors.
func (g *globals) storeError(err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w (use --log-dir to put runtime logs elsewhere)", err)
	case errors.Is(err, vmr.ErrBackingMismatch), errors.Is(err, vmr.ErrUnrecorded):
		return &exitError{code: exitUsage, err: err}
	}
	return err
}

func (g *globals) virtualRegisters(ctx context.Context, dev mr.Device) ([]mr.Register, error) {
	vs, err := g.readVirtual(ctx, dev)
	if err != nil {
		return nil, err
	}
	out := make([]mr.Register, len(vs))
	for i, v := range vs {
		out[i] = v.Register
	}
	return out, nil
}

// readVirtual returns the named virtual registers, or all when none is named.
func (g *globals) readVirtual(ctx context.Context, dev mr.Device, names ...string) ([]mr.Value, error) {
	s, err := g.openStore(ctx, dev, false)
	if err != nil || s == nil {
		if err == nil && len(names) > 0 {
			err = fmt.Errorf("virtual register %q: no runtime log in %s: %w", names[0], g.runtimeLogDir(dev), mr.ErrUnknownRegister)
		}
		return nil, err
	}
	defer s.Close()
	all, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return all, nil
	}
	var out []mr.Value
	for _, n := range names {
		found := false
		for _, v := range all {
			if v.Register.Name == n {
				out = append(out, v)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("virtual register %q has no records in %s: %w", n, s.Path(), mr.ErrUnknownRegister)
		}
	}
	return out, nil
}

func (g *globals) extendVirtual(ctx context.Context, dev mr.Device, name string, d mr.Digest) error {
	if !mr.IsVirtualName(name) {
		return fmt.Errorf("virtual register name %q: want mr_ followed by 1 to 60 of [a-z0-9_.-]: %w", name, mr.ErrUnknownRegister)
	}
	s, err := g.openStore(ctx, dev, true)
	if err != nil {
		return err
	}
	defer s.Close()
	v, err := s.Extend(ctx, name, d)
	if err != nil {
		return err
	}
	return g.writeValues(dev.Kind(), []mr.Value{{
		Register: mr.Register{Name: name, Alg: v.Alg, Size: v.Alg.Size(), Flags: mr.Readable | mr.Extendable | mr.Virtual, Index: -1},
		Digest:   v,
	}})
}

func newVMRCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vmr",
		Short: "Virtual registers kept on the runtime log",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List virtual registers with their values",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.vmrRead(cmd.Context())
		},
	}, &cobra.Command{
		Use:   "read [NAME...]",
		Short: "Print virtual register values (all when none is named)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.vmrRead(cmd.Context(), regNames(args)...)
		},
	})
	return cmd
}

func (g *globals) vmrRead(ctx context.Context, names ...string) error {
	dev, err := g.openDevice(ctx)
	if err != nil {
		return err
	}
	defer dev.Close()
	vs, err := g.readVirtual(ctx, dev, names...)
	if err != nil {
		return err
	}
	return g.writeValues(dev.Kind(), vs)
}
