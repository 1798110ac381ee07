//go:build !linux

package tdx_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ccmr-dev/ccmr/backend/tdx"
	"github.com/ccmr-dev/ccmr/mr"
)

// Off Linux the device says it needs Linux (exit 1 in the CLI), not that the
// input is bad: ErrNeedsLinux does not wrap mr.ErrUnsupported.
func TestNeedsLinux(t *testing.T) {
	_, err := tdx.Open(context.Background(), "")
	if !errors.Is(err, tdx.ErrNeedsLinux) || errors.Is(err, mr.ErrUnsupported) {
		t.Fatalf("Open on this system: %v, want tdx.ErrNeedsLinux", err)
	}
}
