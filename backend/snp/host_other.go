//go:build !linux

package snp

// errHost is why this system has no SEV-SNP guest device: its interfaces
// (sysfs, configfs-tsm, /dev/sev-guest) are Linux kernel ABIs.
var errHost = ErrNeedsLinux

// openDeviceNode fails: /dev/sev-guest exists only on Linux.
func openDeviceNode(string) (ReportDevice, func() error, error) { return nil, nil, ErrNeedsLinux }
