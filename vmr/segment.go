package vmr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/internal/safefs"
	"github.com/ccmr-dev/ccmr/mr"
)

// ErrNothingToCut is returned by Cut when the current segment holds no
// record since its start: a new segment would repeat it.
var ErrNothingToCut = errors.New("no records since the segment's start: nothing to cut")

// Cut archives the current segment of the runtime log and starts a new one
// (docs/design.md, "The CC runtime log", Segments): its INIT entry holds the backing register's value at
// the cut and its first record, `ccmr snapshot mr_x=ALG/HEX,...` (extended
// like any record), every virtual register's value (a segment whose records
// extend no virtual register gets its INIT entry alone). The archived segment is
// what an auditor needs to prove the snapshot; once it has been shipped the
// guest may delete it, so the log a guest keeps stays bounded.
//
// The new segment is written and fsynced under a temporary name, the current
// file is hard-linked to the archive name, and the new segment is renamed
// over the log: a crash leaves either the old log, or the new segment whose
// snapshot record the next Open rolls forward. It returns the archive's path.
func (s *Store) Cut(ctx context.Context) (string, error) {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	var archive string
	err := s.locked(ctx, func() error {
		// The snapshot is made from a replay of the whole segment, not
		// from the checkpoint: it is extended into the register, and
		// the archive must prove it.
		if err := s.replayAll(ctx); err != nil {
			return err
		}
		if s.view.records == 0 {
			return fmt.Errorf("vmr: %s: %w", s.path, ErrNothingToCut)
		}
		var snap []aael.Snapshot
		for name, v := range s.view.virt {
			snap = append(snap, aael.Snapshot{Name: name, Value: v})
		}
		sort.Slice(snap, func(i, j int) bool { return snap[i].Name < snap[j].Name })
		seg, err := encodeInit(s.backing, s.view.value)
		if err != nil {
			return err
		}
		// A segment of records that extend no virtual register (the
		// attestation agent's, through serve/aattrpc) has nothing to
		// snapshot: the new segment is its INIT entry alone, which the
		// verifier chains like any other (its INIT must be where the
		// archive ended, and no virtual register had a value), and
		// nothing is extended.
		var d mr.Digest
		if len(snap) > 0 {
			rec, err := aael.SnapshotRecord(snap)
			if err != nil {
				return fmt.Errorf("vmr: cut: %w", err)
			}
			if seg, d, err = encodeRecord(seg, s.backing, rec); err != nil {
				return err
			}
		}
		tmp := s.path + ".new"
		if err := writeSync(tmp, seg); err != nil {
			return err
		}
		archive, err = nextArchive(s.path)
		if err != nil {
			os.Remove(tmp)
			return err
		}
		if err := os.Link(s.path, archive); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("vmr: archiving %s: %w", s.path, err)
		}
		if err := os.Rename(tmp, s.path); err != nil {
			os.Remove(archive)
			os.Remove(tmp)
			return fmt.Errorf("vmr: starting a new segment of %s: %w", s.path, err)
		}
		if err := syncDir(filepath.Dir(s.path)); err != nil {
			return err
		}
		// The new segment is in place; its snapshot record is logged but
		// not yet extended. Extending it now completes the cut; a crash
		// before this line is rolled forward by the next Open.
		if d.IsZero() {
			return nil
		}
		if err := s.dev.Extend(ctx, s.backing.Name, d); err != nil {
			return fmt.Errorf("vmr: extending %s with the snapshot record: %w", s.backing.Name, err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	// The next locked call sees the new file and replays it.
	return archive, nil
}

// Archives lists the archived segments of the log, oldest first.
func (s *Store) Archives() ([]string, error) {
	m, err := filepath.Glob(s.path + ".[0-9]*")
	if err != nil {
		return nil, err
	}
	sort.Slice(m, func(i, j int) bool { return archiveNum(m[i]) < archiveNum(m[j]) })
	return m, nil
}

func archiveNum(p string) int {
	var n int
	fmt.Sscanf(filepath.Ext(p), ".%d", &n)
	return n
}

func nextArchive(path string) (string, error) {
	m, err := filepath.Glob(path + ".[0-9]*")
	if err != nil {
		return "", err
	}
	n := 0
	for _, p := range m {
		n = max(n, archiveNum(p))
	}
	return fmt.Sprintf("%s.%d", path, n+1), nil
}

func writeSync(path string, b []byte) error {
	// A link planted at the temporary name is removed, not followed.
	f, err := safefs.CreateTemp(path, 0o600)
	if err != nil {
		return fmt.Errorf("vmr: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("vmr: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("vmr: fsync %s: %w", path, err)
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("vmr: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("vmr: fsync %s: %w", dir, err)
	}
	return nil
}

// snapshotValue is the value the current segment's snapshot gave name.
func (s *Store) snapshotValue(name string) (mr.Digest, bool) {
	v, ok := s.view.snap[name]
	return v, ok
}
