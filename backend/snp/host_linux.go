//go:build linux

package snp

import "github.com/google/go-sev-guest/client"

// errHost is nil: the SEV-SNP guest interfaces are Linux kernel ABIs, and this
// is Linux.
var errHost error

// openDeviceNode opens the /dev/sev-guest ioctl device at p.
func openDeviceNode(p string) (ReportDevice, func() error, error) {
	ld := &client.LinuxDevice{}
	if err := ld.Open(p); err != nil {
		return nil, nil, err
	}
	return ld, ld.Close, nil
}
