//go:build linux

package vmr

import (
	"time"

	"golang.org/x/sys/unix"
)

// sinceBoot is how long this boot has run (CLOCK_BOOTTIME: suspend
// included, as the wall clock is).
func sinceBoot() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, err
	}
	return time.Duration(ts.Nano()), nil
}
