//go:build !unix && !windows

package flock

import "os"

func try(*os.File, Mode) error  { return ErrUnsupported }
func wait(*os.File, Mode) error { return ErrUnsupported }
func unlock(*os.File) error     { return ErrUnsupported }
func wouldBlock(error) bool     { return false }
