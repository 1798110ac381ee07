package mr

import "errors"

// Sentinel errors. Backends and packages wrap them with %w and add the
// details (register name, sizes, file); callers test them with errors.Is.
var (
	// ErrUnknownRegister: the device has no register of that name (or bank).
	ErrUnknownRegister = errors.New("unknown register")
	// ErrNotExtendable: the register exists but cannot be extended from here.
	ErrNotExtendable = errors.New("register not extendable")
	// ErrDigestSize: a digest's length does not match its algorithm or register.
	ErrDigestSize = errors.New("wrong digest size")
	// ErrUnsupported: an algorithm, format or operation this device or build lacks.
	ErrUnsupported = errors.New("unsupported")
	// ErrMalformed: input that does not parse (hex, digest text, records, files).
	ErrMalformed = errors.New("malformed input")
)
