//go:build !linux

package tpm

import "os"

// openDeviceNode fails: ccmr drives TPM device nodes (/dev/tpmrm0) through
// the Linux driver only. A simulator at tcp://HOST:PORT or unix:PATH works
// on any system.
func openDeviceNode(string) (*os.File, error) { return nil, ErrNeedsLinux }
