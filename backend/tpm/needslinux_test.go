//go:build !linux

package tpm_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/ccmr-dev/ccmr/backend/tpm"
)

// Off Linux a device node is refused with ErrNeedsLinux before anything is
// sent to it: the null device, which every system has, stands in for a TPM.
func TestNeedsLinux(t *testing.T) {
	_, err := tpm.Open(context.Background(), os.DevNull)
	if !errors.Is(err, tpm.ErrNeedsLinux) {
		t.Fatalf("Open(%s): %v, want tpm.ErrNeedsLinux", os.DevNull, err)
	}
}
