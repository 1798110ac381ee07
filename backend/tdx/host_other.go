//go:build !linux

package tdx

// errHost is why this system has no TDX guest device: its interfaces
// (sysfs, configfs-tsm, /dev/tdx_guest) are Linux kernel ABIs.
var errHost = ErrNeedsLinux

// openDeviceNode fails: /dev/tdx_guest exists only on Linux.
func openDeviceNode(string) (QuoteDevice, func() error, error) { return nil, nil, ErrNeedsLinux }
