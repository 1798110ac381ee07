package main

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// Exit codes, as docs/design.md fixes them ("Verifier layers" and "CLI").
const (
	exitOK    = 0
	exitFail  = 1 // not trusted, mismatch, device failure
	exitUsage = 2 // unusable input or arguments
)

// exitError carries an exit code chosen by a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError marks err as bad input or arguments (exit 2).
func usageError(format string, a ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

// exitCode maps an error to the process exit code: bad input is 2 whatever
// package reported it; mismatches and everything else are 1.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var le *eventlog.Error
	switch {
	case errors.Is(err, eventlog.ErrMismatch):
		return exitFail
	case errors.As(err, &le),
		errors.Is(err, mr.ErrUnknownRegister),
		errors.Is(err, mr.ErrNotExtendable),
		errors.Is(err, mr.ErrDigestSize),
		errors.Is(err, mr.ErrMalformed),
		errors.Is(err, mr.ErrUnsupported),
		errors.Is(err, fs.ErrNotExist):
		return exitUsage
	}
	return exitFail
}
