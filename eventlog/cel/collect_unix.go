//go:build unix

package cel

import (
	"os"
	"syscall"
)

// openLog opens systemd's log: O_NOFOLLOW, as the log is a file systemd
// creates in /run/log/systemd, never a link; O_NONBLOCK, so a FIFO put
// there is not waited on.
func openLog(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
}
