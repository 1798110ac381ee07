package main

import (
	"context"
	"fmt"

	"github.com/ccmr-dev/ccmr/mr"
)

func (g *globals) virtualRegisters(ctx context.Context, dev mr.Device) ([]mr.Register, error) {
	return nil, nil
}

func (g *globals) readVirtual(ctx context.Context, dev mr.Device, names ...string) ([]mr.Value, error) {
	return nil, nil
}

func (g *globals) extendVirtual(ctx context.Context, dev mr.Device, name string, d mr.Digest, data []byte) error {
	return fmt.Errorf("virtual registers: %w", mr.ErrUnsupported)
}
