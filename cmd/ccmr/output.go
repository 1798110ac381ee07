package main

import (
	"fmt"
	"io"
	"os"

	"github.com/ccmr-dev/ccmr/internal/safefs"
)

// writeOutput writes an output file (-O) through a new temporary file in
// the same folder, renamed over path. Opening path itself would follow a
// link another user planted there (in /tmp, say) and make root overwrite
// the file it points to; a rename replaces the link instead, and a file of
// someone else's in a sticky folder makes it fail rather than be written.
func writeOutput(path string, perm os.FileMode, write func(io.Writer) error) error {
	if err := safefs.WriteFile(path, "", perm, false, write); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
