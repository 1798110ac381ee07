package vmr

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/internal/flock"
	"github.com/ccmr-dev/ccmr/internal/safefs"
	"github.com/ccmr-dev/ccmr/mr"
)

// DefaultIMAList is the kernel's binary IMA measurement list.
const DefaultIMAList = "/sys/kernel/security/ima/binary_runtime_measurements"

// DefaultIMALists are the lists the forwarder reads when none is given, the
// first that exists: mr_ima folds sha384(template data), which the sha384
// per-bank list of Linux 6.10 and later lists as each entry's template
// hash; then the sha256 list; the SHA-1 list of older kernels last. From a
// per-bank list, forwarding does not depend on sha1.
var DefaultIMALists = []string{DefaultIMAList + "_sha384", DefaultIMAList + "_sha256", DefaultIMAList}

// ForwardOptions configure the IMA forwarder.
type ForwardOptions struct {
	// List is the binary IMA list to read (default: the first of
	// DefaultIMALists that exists). A per-bank list is read as its file
	// name says (binary_runtime_measurements_sha384).
	List string
	// Register is the virtual register to extend (default mr_ima).
	Register string
	// Batch is how many entries share one log write and fsync (default 1024).
	Batch int
	// Progress, when set, is told how many more bytes of the list were
	// read (a progress meter's Add), so a long first pass can show that it
	// moves.
	Progress func(n int64)
}

// countingReader tells progress of every read.
type countingReader struct {
	r        io.Reader
	progress func(n int64)
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.progress(int64(n))
	return n, err
}

func (o *ForwardOptions) defaults() {
	if o.List == "" {
		o.List = DefaultIMAList
		for _, p := range DefaultIMALists {
			if _, err := os.Stat(p); err == nil {
				o.List = p
				break
			}
		}
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
	// Value is the register's value after Records records: it ties the
	// hint to the runtime log it was written for.
	Value string `json:"value,omitempty"`
	// LastOffset and Last are where the last forwarded entry starts and
	// its sha384(template data): a list whose entry there differs, or that
	// no longer reaches Offset, is not the list that was forwarded.
	LastOffset int64  `json:"last_offset,omitempty"`
	Last       string `json:"last,omitempty"`
	// Prefix is the SHA-256 of the list's bytes [0, Offset): the last
	// entry alone does not tie the hint to the list, as an earlier entry
	// of the same size may have changed. Hashing the prefix again on
	// resume is far cheaper than re-folding it (parsing every entry and
	// taking sha384 of its template data), which the hint exists to spare.
	// A hint without it is not used.
	Prefix string `json:"prefix_sha256,omitempty"`
	// Stat identifies the list file as it was when its prefix was last
	// hashed and found to be Prefix with nothing after Offset: a pass that
	// finds the same file, unchanged (a write changes its ctime), and
	// still nothing after Offset has nothing to forward and need not hash
	// the prefix again.
	Stat *listStat `json:"stat,omitempty"`
}

// listStat is what stat(2) says of the list: which file, its size, and when
// it last changed.
type listStat struct {
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime_ns"`
	Ctime int64  `json:"ctime_ns"`
}

// listSettle is how long ago the list must have last changed for its stat
// to be recorded: file times come from a clock that ticks every few
// milliseconds, so a change made in the same tick as the one before would
// not move them; a change made after a stat taken listSettle after the last
// one does.
var listSettle = 2 * time.Second

// atEnd reports whether the list has no byte at off.
func atEnd(f *os.File, off int64) bool {
	var b [1]byte
	n, err := f.ReadAt(b[:], off)
	return n == 0 && errors.Is(err, io.EOF)
}

func snapString(d mr.Digest) string {
	if d.IsZero() {
		return ""
	}
	return d.String()
}

// segmentState returns how many records of name the current segment holds,
// the value its snapshot gave name (zero without one) and name's value.
func (s *Store) segmentState(ctx context.Context, name string) (int, mr.Digest, mr.Digest, error) {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	if err := s.locked(ctx, func() error { return s.syncLog(ctx) }); err != nil {
		return 0, mr.Digest{}, mr.Digest{}, err
	}
	return s.view.count[name], s.view.snap[name], s.view.virt[name], nil
}

// entriesUpTo folds sha384(template data) over the list's entries until the
// fold equals want, and returns how many entries that took.
func entriesUpTo(ctx context.Context, list string, want mr.Digest) (int, error) {
	f, err := openList(list)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rd := listReader(f, list)
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
//
// The list must continue what was forwarded: the register's value is the
// fold of the entries forwarded so far, so a list whose prefix folds to
// another value (a different list, or one shorter than what was forwarded)
// is refused with ErrInconsistent. The resume hint skips that re-reading
// only while the list still holds, where the hint says, the entry that was
// forwarded last, and its bytes up to there still have the SHA-256 the hint
// recorded (a list whose earlier entry changed is refused with
// ErrInconsistent). Errors count entries and bytes from the list's start.
func (s *Store) Forward(ctx context.Context, opts ForwardOptions) (int, error) {
	opts.defaults()
	// The register's name makes the state and lock files' names: a name
	// with a "/" or ".." would put them outside the log folder.
	if !mr.IsVirtualName(opts.Register) {
		return 0, fmt.Errorf("ima forward: %w: virtual register name %q: want mr_ followed by 1 to 60 of [a-z0-9_.-]", mr.ErrUnknownRegister, opts.Register)
	}
	// One forwarder per register at a time: two would both see the same
	// count of records and forward the same entries twice.
	unlock, err := lockFile(ctx, s.forwardStatePath(opts.Register)+".lock")
	if err != nil {
		return 0, err
	}
	defer unlock()
	done, snap, value, err := s.segmentState(ctx, opts.Register)
	if err != nil {
		return 0, err
	}
	f, err := openList(opts.List)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fw := &forwarder{s: s, opts: opts, f: f, done: done, snap: snap, value: value}
	hint, herr := s.readForwardState(opts.Register)
	if herr != nil || hint.List != opts.List {
		hint = forwardState{}
	}
	if err := fw.segmentBase(ctx, hint); err != nil {
		return 0, err
	}
	if stop, err := fw.resume(hint); stop || err != nil {
		return 0, err
	}
	if err := fw.startReading(); err != nil {
		return 0, err
	}
	return fw.run(ctx)
}

// forwarder is one pass of Forward: the list being read, where it
// started, what of it is hashed, and the batch of entries not yet
// extended.
type forwarder struct {
	s    *Store
	opts ForwardOptions
	f    *os.File

	done        int       // entries of the list forwarded already
	snap, value mr.Digest // the segment's snapshot and the register's value
	segBase     int       // entries before the segment's snapshot

	start      int64     // where reading starts in the list
	startIndex int       // the index of the entry there
	prefixHash hash.Hash // of the list's bytes [0, hashed)
	hashed     int64     // -1 once the list could not be read again

	rd     *ima.Reader
	prefix *mr.Extender // the fold of the entries skipped
	skip   int          // entries still to skip (already forwarded)

	added   int
	batch   []Item
	last    mr.Digest
	lastOff int64
}

// segmentBase counts the entries before the segment's snapshot into
// fw.done. After a cut the segment counts records from its snapshot: the
// entries before it are those whose fold gives the snapshot value.
func (fw *forwarder) segmentBase(ctx context.Context, hint forwardState) error {
	if !fw.snap.IsZero() {
		if hint.Snapshot == fw.snap.String() {
			fw.segBase = hint.SegmentBase
		} else {
			var err error
			if fw.segBase, err = entriesUpTo(ctx, fw.opts.List, fw.snap); err != nil {
				return err
			}
		}
	}
	fw.done += fw.segBase
	return nil
}

// resume starts from the hint when it is this log's and the list still
// holds its last entry; else from the list's start, checking the prefix.
// It says stop when there is nothing new to forward.
func (fw *forwarder) resume(hint forwardState) (stop bool, err error) {
	f, opts := fw.f, fw.opts
	fw.prefixHash = sha256.New()
	// Taken before the prefix is read: a change after it shows in the next
	// pass's stat.
	stat := statList(f, time.Now())
	if hint.List != "" && hint.Prefix != "" && hint.Records == fw.done && hint.Value == snapString(fw.value) && lastEntryHolds(f, opts.List, hint) {
		if hint.Records > 0 && hint.Stat != nil && stat != nil && *hint.Stat == *stat && stat.Size == hint.Offset && atEnd(f, hint.Offset) {
			// The file whose prefix was checked, unchanged since, with
			// nothing new.
			return true, nil
		}
		if err := hashRange(fw.prefixHash, f, 0, hint.Offset); err != nil {
			return true, fmt.Errorf("ima forward: reading the first %d bytes of %s: %w", hint.Offset, opts.List, err)
		}
		if got := hex.EncodeToString(fw.prefixHash.Sum(nil)); got != hint.Prefix {
			return true, fmt.Errorf("ima forward: the first %d bytes of %s (%d entries) are not those forwarded to %s in %s (sha256 %s, was %s): the list does not continue what was forwarded: %w",
				hint.Offset, opts.List, hint.Records, opts.Register, fw.s.path, got, hint.Prefix, ErrInconsistent)
		}
		fw.start, fw.startIndex = hint.Offset, hint.Records
		if hint.Records > 0 && stat != nil && stat.Size == hint.Offset && atEnd(f, hint.Offset) {
			// Nothing new: record the file's stat so that the next pass
			// need not hash the prefix again while it stays unchanged.
			hint.Stat = stat
			return true, fw.s.writeForwardState(hint)
		}
	}
	return false, nil
}

// startReading positions the list at fw.start and sets up its reader and
// the fold of the entries to skip there.
func (fw *forwarder) startReading() error {
	fw.hashed = fw.start
	if _, err := fw.f.Seek(fw.start, io.SeekStart); err != nil {
		return fmt.Errorf("ima forward: %w", err)
	}
	var src io.Reader = fw.f
	if fw.opts.Progress != nil {
		src = countingReader{r: fw.f, progress: fw.opts.Progress}
	}
	fw.rd = listReader(src, fw.opts.List)
	fw.prefix = mr.NewExtender(mr.Zero(IMAVirtualAlg))
	fw.skip = fw.done - fw.startIndex
	if fw.skip == 0 && fw.startIndex == 0 && !fw.value.IsZero() {
		return fmt.Errorf("ima forward: %s holds records of %s that no entry of %s accounts for: %w",
			fw.s.path, fw.opts.Register, fw.opts.List, ErrInconsistent)
	}
	return nil
}

// run reads the list's entries, skips those forwarded already and
// extends the register with the others in batches, and returns how many
// it added. The count is taken after the last flush.
func (fw *forwarder) run(ctx context.Context) (int, error) {
	for {
		if err := ctx.Err(); err != nil {
			ferr := fw.flush(ctx)
			return fw.added, errors.Join(err, ferr)
		}
		e, err := fw.rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			err = fromListStart(err, fw.start, fw.startIndex)
			if ferr := fw.flush(ctx); ferr != nil {
				return fw.added, errors.Join(err, ferr)
			}
			return fw.added, err
		}
		d, err := ima.VirtualDigest(e)
		if err != nil {
			ferr := fw.flush(ctx)
			return fw.added, errors.Join(fromListStart(err, fw.start, fw.startIndex), ferr)
		}
		if fw.skip > 0 {
			if err := fw.skipEntry(d); err != nil {
				return 0, err
			}
			continue
		}
		fw.batch = append(fw.batch, Item{Name: fw.opts.Register, Digest: d})
		fw.last, fw.lastOff = d, fw.start+e.Offset
		if len(fw.batch) >= fw.opts.Batch {
			if err := fw.flush(ctx); err != nil {
				return fw.added, err
			}
		}
	}
	if fw.skip > 0 {
		return fw.added, fmt.Errorf("ima forward: %s holds %d records of %s but %s has only %d entries: the log is not of this list: %w",
			fw.s.path, fw.done, fw.opts.Register, fw.opts.List, fw.done-fw.skip, ErrInconsistent)
	}
	err := fw.flush(ctx)
	return fw.added, err
}

// skipEntry folds d, an entry already forwarded, into the prefix: the
// prefix must fold to the register's value, or this list is not the one
// forwarded.
func (fw *forwarder) skipEntry(d mr.Digest) error {
	if err := fw.prefix.Extend(d.Bytes); err != nil {
		return err
	}
	if fw.skip--; fw.skip == 0 && !fw.prefix.Value().Equal(fw.value) {
		return fmt.Errorf("ima forward: the first %d entries of %s fold to %v, but %s holds %v for %s: the list does not continue what was forwarded: %w",
			fw.done, fw.opts.List, fw.prefix.Value(), fw.s.path, fw.value, fw.opts.Register, ErrInconsistent)
	}
	return nil
}

// flush extends the register with the batch and records how far the
// list was forwarded.
func (fw *forwarder) flush(ctx context.Context) error {
	if len(fw.batch) == 0 {
		return nil
	}
	vals, err := fw.s.ExtendMany(ctx, fw.batch)
	if err != nil {
		return err
	}
	fw.added += len(fw.batch)
	fw.batch = fw.batch[:0]
	off := fw.start + fw.rd.Offset()
	// The prefix hash runs on from where it stopped; if the list
	// cannot be read again, the hint goes without it and is not used.
	prefix := ""
	if fw.hashed >= 0 {
		if err := hashRange(fw.prefixHash, fw.f, fw.hashed, off); err == nil {
			fw.hashed = off
			prefix = hex.EncodeToString(fw.prefixHash.Sum(nil))
		} else {
			fw.hashed = -1
		}
	}
	return fw.s.writeForwardState(forwardState{List: fw.opts.List, Register: fw.opts.Register, Records: fw.done + fw.added, Offset: off,
		Snapshot: snapString(fw.snap), SegmentBase: fw.segBase, Value: snapString(vals[len(vals)-1]),
		LastOffset: fw.lastOff, Last: fw.last.String(), Prefix: prefix})
}

// listReader reads the binary list, of the bank its file name says
// (binary_runtime_measurements_sha384 is the sha384 list), sha1 otherwise.
func listReader(r io.Reader, list string) *ima.Reader {
	opts := ima.Options{File: list}
	if f, ok := ima.FileNameFormat(list); ok {
		if ascii, bank, _ := ima.FormatBank(f); !ascii {
			opts.Bank = bank
		}
	}
	return ima.NewBinaryReader(r, opts)
}

// openList opens the IMA list, which must be a regular file (the kernel's
// securityfs file is one): opened with O_NONBLOCK, a FIFO without a writer
// is refused at once instead of blocking the forwarder beyond SIGTERM.
func openList(list string) (*os.File, error) {
	f, err := os.OpenFile(list, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("ima forward: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file: %w", list, mr.ErrMalformed)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("ima forward: %w", err)
	}
	return f, nil
}

// lastEntryHolds reports whether the list still holds, between the hint's
// LastOffset and Offset, exactly one entry whose sha384(template data) is
// the hint's Last (trivially true before anything was forwarded).
func lastEntryHolds(f *os.File, list string, hint forwardState) bool {
	if hint.Records == 0 {
		return hint.Offset == 0
	}
	if hint.Last == "" || hint.LastOffset < 0 || hint.Offset <= hint.LastOffset {
		return false
	}
	want, err := mr.ParseDigest(hint.Last)
	if err != nil {
		return false
	}
	rd := listReader(io.NewSectionReader(f, hint.LastOffset, hint.Offset-hint.LastOffset), list)
	e, err := rd.Next()
	if err != nil || rd.Offset() != hint.Offset-hint.LastOffset {
		return false
	}
	d, err := ima.VirtualDigest(e)
	return err == nil && d.Equal(want)
}

// hashRange adds the list's bytes [from, to) to h, reading them with ReadAt
// so the list's reader keeps its place; a list shorter than to is an error.
func hashRange(h hash.Hash, f *os.File, from, to int64) error {
	if to < from {
		return fmt.Errorf("offset %d before %d", to, from)
	}
	n, err := io.Copy(h, io.NewSectionReader(f, from, to-from))
	listBytesHashed.Add(n)
	if err != nil {
		return err
	}
	if n != to-from {
		return fmt.Errorf("%d bytes past byte %d, want %d: %w", n, from, to-from, io.ErrUnexpectedEOF)
	}
	return nil
}

// fromListStart makes the entry number and byte offset of an error of a
// reader that started at byte start (entry startIndex) count from the
// list's start.
func fromListStart(err error, start int64, startIndex int) error {
	var le *eventlog.Error
	if start != 0 && errors.As(err, &le) {
		c := *le
		c.Offset += start
		if c.Record >= 0 {
			c.Record += startIndex
		}
		return &c
	}
	return err
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
	if err := safefs.WriteFile(p, p+".tmp", 0o600, false, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	}); err != nil {
		return fmt.Errorf("ima forward: %w", err)
	}
	return nil
}

// listBytesHashed counts the list bytes hashRange read (tests check that a
// pass with nothing new reads none).
var listBytesHashed atomic.Int64

// IMAVirtualAlg is the algorithm of mr_ima.
const IMAVirtualAlg = mr.SHA384

// lockFile takes an exclusive lock on path (created if needed), giving up
// when ctx ends.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := safefs.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ima forward: %w", err)
	}
	if err := flock.Lock(ctx, f, flock.Exclusive); err != nil {
		if err != ctx.Err() {
			f.Close() // else flock owns it
		}
		return nil, fmt.Errorf("ima forward: locking %s: %w", path, err)
	}
	return func() { flock.Unlock(f); f.Close() }, nil
}
