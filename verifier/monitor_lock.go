package verifier

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/ccmr-dev/ccmr/internal/flock"
	"github.com/ccmr-dev/ccmr/internal/safefs"
)

// LockState takes an exclusive lock on the monitor state file at path: an
// internal/flock lock on path+".lock", created beside it (never followed
// through a symbolic link). Hold it from LoadState to Save, so that two
// verifications sharing one state file neither lose each other's update nor
// read a half-written one. It gives up when ctx ends.
func LockState(ctx context.Context, path string) (unlock func(), err error) {
	lp := path + ".lock"
	f, err := safefs.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("monitor state lock: %w", err)
	}
	if err := flock.Lock(ctx, f, flock.Exclusive); err != nil {
		if !errors.Is(err, ctx.Err()) {
			f.Close() // flock.Lock closes f itself only when ctx ended
		}
		return nil, fmt.Errorf("monitor state lock %s: %w", lp, err)
	}
	return func() {
		flock.Unlock(f)
		f.Close()
	}, nil
}
