//go:build !unix

package serve

import "io/fs"

// fileOwner is unknown off Unix.
func fileOwner(fs.FileInfo) (int, bool) { return 0, false }
