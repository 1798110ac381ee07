package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// writeOutput writes an output file (-O) through a new temporary file in
// the same folder, renamed over path. Opening path itself would follow a
// link another user planted there (in /tmp, say) and make root overwrite
// the file it points to; a rename replaces the link instead, and a file of
// someone else's in a sticky folder makes it fail rather than be written.
func writeOutput(path string, perm os.FileMode, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		err = write(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
