package vmr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ccmr-dev/ccmr/internal/safefs"
	"github.com/ccmr-dev/ccmr/log/ima"
	"github.com/ccmr-dev/ccmr/mr"
)

// DefaultIMAList is the kernel's binary IMA measurement list.
const DefaultIMAList = "/sys/kernel/security/ima/binary_runtime_measurements"

// ForwardOptions configure the IMA forwarder.
type ForwardOptions struct {
	// List is the binary IMA list to read (default DefaultIMAList).
	List string
	// Register is the virtual register to extend (default mr_ima).
	Register string
	// Batch is how many entries share one log write and fsync (default 1024).
	Batch int
}

func (o *ForwardOptions) defaults() {
	if o.List == "" {
		o.List = DefaultIMAList
	}
	if o.Register == "" {
		o.Register = "mr_ima"
	}
	if o.Batch <= 0 {
		o.Batch = 1024
	}
}

// forwardState is the forwarder's resume hint, kept next to the runtime log:
// after Records records of the register, the list's next entry starts at
// Offset. The runtime log is the truth (record i of the register is IMA
// entry i); the hint only saves re-reading the list from its start.
type forwardState struct {
	List     string `json:"list"`
	Register string `json:"register"`
	Records  int    `json:"records"`
	Offset   int64  `json:"offset"`
	// Snapshot and SegmentBase: the current segment's snapshot value of
	// the register and how many entries it covers.
	Snapshot    string `json:"snapshot,omitempty"`
	SegmentBase int    `json:"segment_base,omitempty"`
}

func snapString(d mr.Digest) string {
	if d.IsZero() {
		return ""
	}
	return d.String()
}

// segmentState returns how many records of name the current segment holds
// and the value its snapshot gave name (zero without one).
func (s *Store) segmentState(ctx context.Context, name string) (int, mr.Digest, error) {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	if err := s.locked(func() error { return s.sync(ctx) }); err != nil {
		return 0, mr.Digest{}, err
	}
	return s.view.count[name], s.view.snap[name], nil
}

// entriesUpTo folds sha384(template data) over the list's entries until the
// fold equals want, and returns how many entries that took.
func entriesUpTo(ctx context.Context, list string, want mr.Digest) (int, error) {
	f, err := os.Open(list)
	if err != nil {
		return 0, fmt.Errorf("ima forward: %w", err)
	}
	defer f.Close()
	rd := ima.NewBinaryReader(f, ima.Options{File: list})
	ext := mr.NewExtender(mr.Zero(IMAVirtualAlg))
	for n := 0; ; n++ {
		if ext.Value().Equal(want) {
			return n, nil
		}
		if n&1023 == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("ima forward: no prefix of %s folds to the snapshot value %v: %w", list, want, ErrInconsistent)
		}
		if err != nil {
			return 0, err
		}
		d, err := ima.VirtualDigest(e)
		if err != nil {
			return 0, err
		}
		if err := ext.Extend(d.Bytes); err != nil {
			return 0, err
		}
	}
}

func (s *Store) forwardStatePath(reg string) string {
	return filepath.Join(filepath.Dir(s.path), "forward-"+reg+".json")
}

// Forward extends the virtual register with sha384(template data) of every
// entry of the IMA list not forwarded yet, and returns how many it added.
// Which entries were forwarded is read from the runtime log itself, so a
// crash or restart at any point neither skips nor repeats an entry.
func (s *Store) Forward(ctx context.Context, opts ForwardOptions) (int, error) {
	opts.defaults()
	// One forwarder per register at a time: two would both see the same
	// count of records and forward the same entries twice.
	unlock, err := lockFile(s.forwardStatePath(opts.Register) + ".lock")
	if err != nil {
		return 0, err
	}
	defer unlock()
	done, snap, err := s.segmentState(ctx, opts.Register)
	if err != nil {
		return 0, err
	}
	f, err := os.Open(opts.List)
	if err != nil {
		return 0, fmt.Errorf("ima forward: %w", err)
	}
	defer f.Close()
	hint, herr := s.readForwardState(opts.Register)
	if herr != nil || hint.List != opts.List {
		hint = forwardState{}
	}
	// After a cut the segment counts records from its snapshot: the
	// entries before it are those whose fold gives the snapshot value.
	segBase := 0
	if !snap.IsZero() {
		if hint.Snapshot == snap.String() {
			segBase = hint.SegmentBase
		} else if segBase, err = entriesUpTo(ctx, opts.List, snap); err != nil {
			return 0, err
		}
	}
	done += segBase

	// Start from the hint when it fits the log, else from the list's start.
	skip, base := done, int64(0)
	if hint.List != "" && hint.Records <= done {
		if _, err := f.Seek(hint.Offset, io.SeekStart); err == nil {
			skip, base = done-hint.Records, hint.Offset
		}
	}
	rd := ima.NewBinaryReader(f, ima.Options{File: opts.List})
	added := 0
	var batch []Item
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if _, err := s.ExtendMany(ctx, batch); err != nil {
			return err
		}
		added += len(batch)
		batch = batch[:0]
		return s.writeForwardState(forwardState{List: opts.List, Register: opts.Register, Records: done + added, Offset: base + rd.Offset(),
			Snapshot: snapString(snap), SegmentBase: segBase})
	}
	for {
		if err := ctx.Err(); err != nil {
			return added, errors.Join(err, flush())
		}
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if ferr := flush(); ferr != nil {
				return added, ferr
			}
			return added, err
		}
		if skip > 0 {
			skip--
			continue
		}
		d, err := ima.VirtualDigest(e)
		if err != nil {
			return added, errors.Join(err, flush())
		}
		batch = append(batch, Item{Name: opts.Register, Digest: d})
		if len(batch) >= opts.Batch {
			if err := flush(); err != nil {
				return added, err
			}
		}
	}
	if skip > 0 {
		return added, fmt.Errorf("ima forward: %s holds %d records of %s but %s has only %d entries: the log is not of this list: %w",
			s.path, done, opts.Register, opts.List, done-skip, ErrInconsistent)
	}
	return added, flush()
}

// Follow forwards new entries every interval until ctx ends (SIGTERM in the
// CLI). report, when set, is told of each pass that added entries.
func (s *Store) Follow(ctx context.Context, opts ForwardOptions, interval time.Duration, report func(added int)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := s.Forward(ctx, opts)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if n > 0 && report != nil {
			report(n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Store) readForwardState(reg string) (forwardState, error) {
	var st forwardState
	b, err := safefs.ReadFile(s.forwardStatePath(reg))
	if err != nil {
		return st, err
	}
	err = json.Unmarshal(b, &st)
	return st, err
}

// writeForwardState replaces the hint atomically; it needs no fsync because
// a lost or stale hint only costs a re-read of the list.
func (s *Store) writeForwardState(st forwardState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	p := s.forwardStatePath(st.Register)
	tmp := p + ".tmp"
	f, err := safefs.CreateTemp(tmp, 0o600)
	if err != nil {
		return fmt.Errorf("ima forward: %w", err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("ima forward: %w", err)
	}
	return os.Rename(tmp, p)
}

// IMAVirtualAlg is the algorithm of mr_ima.
const IMAVirtualAlg = mr.SHA384

// lockFile takes an exclusive flock on path (created if needed).
func lockFile(path string) (unlock func(), err error) {
	f, err := safefs.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ima forward: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("ima forward: locking %s: %w", path, err)
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}
