//go:build !linux

package vmr

import (
	"errors"
	"time"
)

// sinceBoot cannot be told here: recovery then never rolls forward from
// the reset value (writtenBeforeBoot fails closed).
func sinceBoot() (time.Duration, error) {
	return 0, errors.New("vmr: time since boot unknown on this system")
}
