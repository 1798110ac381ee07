package vmr

import (
	"context"
	"fmt"
	"os"

	"github.com/ccmr-dev/ccmr/internal/safefs"
)

// SnapshotFile is Snapshot for a log too large to hold in memory: it runs fn
// (a quote) while holding the log's lock and returns the log file, opened
// anew, with the log's length as it stood. Bytes [0, n) of that file stay as
// they were: records are only appended (a failed append is cut back to
// where it began, after them), and a cut renames the file whole, which the
// returned descriptor keeps reading. The caller closes it.
func (s *Store) SnapshotFile(ctx context.Context, fn func() error) (*os.File, int64, error) {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	var f *os.File
	var n int64
	err := s.locked(ctx, func() error {
		if err := s.sync(ctx); err != nil {
			return err
		}
		if err := fn(); err != nil {
			return err
		}
		var err error
		if f, err = safefs.Open(s.path); err != nil {
			return err
		}
		// locked checked that the path is the locked file; this checks
		// the descriptor just opened is too.
		fi, err1 := f.Stat()
		li, err2 := s.f.Stat()
		if err1 != nil || err2 != nil || !os.SameFile(fi, li) {
			f.Close()
			f = nil
			return fmt.Errorf("vmr: %s changed while locked", s.path)
		}
		n = s.view.off
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return f, n, nil
}
