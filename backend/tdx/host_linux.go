//go:build linux

package tdx

import "github.com/google/go-tdx-guest/client"

// errHost is nil: the TDX guest interfaces are Linux kernel ABIs, and this
// is Linux.
var errHost error

// openDeviceNode opens the /dev/tdx_guest ioctl device at p.
func openDeviceNode(p string) (QuoteDevice, func() error, error) {
	ld := &client.LinuxDevice{}
	if err := ld.Open(p); err != nil {
		return nil, nil, err
	}
	return ld, ld.Close, nil
}
