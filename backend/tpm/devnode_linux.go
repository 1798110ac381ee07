//go:build linux

package tpm

import (
	"os"

	"golang.org/x/sys/unix"
)

// openDeviceNode opens the TPM character device at p (/dev/tpmrm0).
//
// It opens it blocking, outside Go's poller: os.OpenFile would set
// O_NONBLOCK on a character device, and then the TPM driver runs the
// command asynchronously and read() returns 0 bytes while the answer is not
// ready, which Go takes for end of file (seen on a real kernel under QEMU:
// reads failed at random). Timeouts then come from sendAbandon, as the file
// has no deadlines.
func openDeviceNode(p string) (*os.File, error) {
	fd, err := unix.Open(p, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), p), nil
}
