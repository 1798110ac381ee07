package vmr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/internal/flock"
	"github.com/ccmr-dev/ccmr/internal/safefs"
	"github.com/ccmr-dev/ccmr/mr"
)

// ErrInconsistent means the runtime log and its backing register disagree in
// a way recovery must not repair: the log was edited, truncated, or the
// register was extended by someone who did not log it.
var ErrInconsistent = errors.New("runtime log and backing register disagree")

// DefaultDir is the folder of the runtime logs when none is given (the CLI's
// --log-dir, the collection library): under /run, a tmpfs, so the logs go
// with the boot whose registers they explain.
const DefaultDir = "/run/ccmr"

// Options configure a Store.
type Options struct {
	// Dir is the folder of the runtime logs (one file per backing register:
	// DIR/REGISTER.log). Required.
	Dir string
	// Backing names the backing register. Default: the one the folder
	// records (RecordedBacking), else rtmr3 when the device has it, else
	// TPMDefaultBacking (pcr14). A name that disagrees with the folder's
	// record is an error naming both (ErrBackingMismatch).
	Backing string
	// AllowResettable accepts a backing register the guest can reset (TPM
	// PCR 16 or 23), which Open refuses otherwise: a verifier can then
	// never tell a whole log from one whose records were dropped with a
	// reset, and says so in every report (weakened).
	AllowResettable bool
	// BackingAlg selects the bank of a TPM PCR. Default: sha384 when the
	// device has that bank for Backing, else sha256.
	BackingAlg mr.Alg
}

// Store is the set of virtual registers on one backing register. Its methods
// are safe for concurrent use by goroutines; processes coordinate through the
// log file's lock.
type Store struct {
	dev     mr.Device
	backing mr.Register
	path    string

	// mu guards queue and leading: the group-commit queue.
	mu      sync.Mutex
	queue   []*pending
	leading bool

	// fileMu guards f and view: the log file and what this process has
	// replayed of it.
	fileMu sync.Mutex
	f      *os.File
	view   view
	// checked: the register was seen equal to the view's value, and the
	// log has not grown since.
	checked bool
	// lockedSize is the log's size when the lock was last taken.
	lockedSize int64
	// lockedMtime is the log's modification time when the lock was last
	// taken (before this process wrote anything under it).
	lockedMtime time.Time
	// seeded: the view started from the checkpoint (not from a replay of
	// the whole log), with seedRecords records; ckptOff is the log size
	// the checkpoint on disk was written for, as far as this Store knows.
	seeded      bool
	seedRecords int
	ckptOff     int64
	// agreed: the register held the view's value when last compared or
	// extended by this Store (what a checkpoint may record).
	agreed bool
}

type pending struct {
	rec  aael.Record
	done chan result
	// owner tells the records of one ExtendMany call from the others.
	owner *byte
}

type result struct {
	value mr.Digest
	err   error
}

// Open opens (creating when needed) the runtime log of dev's backing register
// and recovers it as the package doc says.
func Open(ctx context.Context, dev mr.Device, opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("vmr: no log folder given")
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("vmr: %w", err)
	}
	// Root extends registers from what this folder holds and writes
	// where its links would point: it must be ours alone.
	if err := safefs.CheckDir(opts.Dir); err != nil {
		return nil, fmt.Errorf("vmr: runtime log folder: %w", err)
	}
	recorded, err := RecordedBacking(opts.Dir)
	unrecorded := errors.Is(err, ErrUnrecorded) && opts.Backing != ""
	if err != nil && !unrecorded {
		return nil, err
	}
	if opts.Backing != "" && recorded != "" && opts.Backing != recorded {
		return nil, fmt.Errorf("vmr: backing register %s given, but %s records %s (its logs extend %s; use another --log-dir for %s): %w",
			opts.Backing, opts.Dir, recorded, recorded, opts.Backing, ErrBackingMismatch)
	}
	if opts.Backing == "" {
		opts.Backing = recorded
	}
	reg, err := findBacking(ctx, dev, opts)
	if err != nil {
		return nil, err
	}
	if mr.GuestResettable(reg.Name) && !opts.AllowResettable {
		from := ""
		if recorded != "" {
			from = fmt.Sprintf(" (recorded in %s)", filepath.Join(opts.Dir, BackingFile))
		}
		return nil, fmt.Errorf("vmr: backing register %s%s can be reset from the guest: a verifier cannot prove its log whole and will report it weakened; acknowledge this to use it (--accept-resettable-backing): %w", reg.Name, from, mr.ErrNotExtendable)
	}
	if reg.Flags&mr.Extendable == 0 {
		hint := ""
		if n, ok := mr.PCRNumber(reg.Name); ok && n >= 17 && n <= 22 {
			hint = fmt.Sprintf(" (PCRs 17-22 need a locality the OS lacks: use a folder recording another register, e.g. --backing %s)", TPMDefaultBacking)
		}
		return nil, fmt.Errorf("vmr: backing register %s (%v): %w%s", reg.Name, reg.Alg, mr.ErrNotExtendable, hint)
	}
	if recorded == "" && !unrecorded {
		if err := recordBacking(opts.Dir, reg.Name); err != nil {
			return nil, err
		}
	}
	path := filepath.Join(opts.Dir, reg.Name+".log")
	f, err := safefs.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("vmr: %w", err)
	}
	if err := checkOwned(f, path); err != nil {
		f.Close()
		return nil, err
	}
	s := &Store{dev: dev, backing: reg, path: path, f: f}
	s.view.reset(reg)
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	err = s.locked(ctx, func() error {
		// Without a usable checkpoint the log is replayed from its start.
		_ = s.loadCheckpoint()
		if err := s.syncLog(ctx); err != nil {
			return err
		}
		s.saveCheckpoint(ckptLag)
		return nil
	})
	if err != nil {
		s.f.Close()
		return nil, err
	}
	return s, nil
}

func findBacking(ctx context.Context, dev mr.Device, opts Options) (mr.Register, error) {
	regs, err := dev.Registers(ctx)
	if err != nil {
		return mr.Register{}, err
	}
	name := opts.Backing
	if name == "" {
		name = TPMDefaultBacking
		for _, r := range regs {
			if r.Name == "rtmr3" {
				name = "rtmr3"
			}
		}
	}
	var banks []mr.Register
	for _, r := range regs {
		if r.Name == name {
			banks = append(banks, r)
		}
	}
	if len(banks) == 0 {
		return mr.Register{}, fmt.Errorf("vmr: backing register %q: %w", name, mr.ErrUnknownRegister)
	}
	want := opts.BackingAlg
	if want == 0 {
		if len(banks) == 1 {
			return banks[0], nil
		}
		want = mr.SHA256
		for _, b := range banks {
			if b.Alg == mr.SHA384 {
				want = mr.SHA384
			}
		}
	}
	for _, b := range banks {
		if b.Alg == want {
			return b, nil
		}
	}
	return mr.Register{}, fmt.Errorf("vmr: backing register %s has no %v bank: %w", name, want, mr.ErrUnknownRegister)
}

// Close writes the checkpoint when the log grew by ckptLag since the last
// one (if the lock is free at once: a busy log has another Store that will
// write it) and releases the log file.
func (s *Store) Close() error {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	if s.agreed && s.view.records > 0 && s.view.off-s.ckptOff >= max(ckptLag, 1) {
		now, cancel := context.WithCancel(context.Background())
		cancel() // only try the lock
		_ = s.locked(now, func() error {
			// The log may have grown; the view is still a prefix of it
			// that was compared equal with the register.
			s.saveCheckpoint(ckptLag)
			return nil
		})
	}
	return s.f.Close()
}

// Path is the runtime log's file name.
func (s *Store) Path() string { return s.path }

// Backing is the backing register.
func (s *Store) Backing() mr.Register { return s.backing }

// locked runs fn holding the exclusive file lock. fileMu must be held. The
// lock is taken on a descriptor of its own, opened by name: flock.Lock
// gives up when ctx ends, and the descriptor it then closes is not the
// Store's.
//
// A cut (Cut, maybe in another process) replaces the log file by a new
// segment; a Store still holding the old file notices it here, once it has
// the lock, and reopens the new one and replays it from its start.
func (s *Store) locked(ctx context.Context, fn func() error) error {
	var lf *os.File
	var li os.FileInfo
	for {
		var err error
		lf, err = safefs.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("vmr: opening %s: %w", s.path, err)
		}
		if err := flock.Lock(ctx, lf, flock.Exclusive); err != nil {
			if err != ctx.Err() {
				lf.Close() // else flock owns it
			}
			return fmt.Errorf("vmr: locking %s: %w", s.path, err)
		}
		li, err = lf.Stat()
		pi, err2 := os.Lstat(s.path)
		if err == nil && err2 == nil && os.SameFile(li, pi) {
			break
		}
		// Renamed over (a cut) between the open and the lock.
		flock.Unlock(lf)
		lf.Close()
	}
	defer func() {
		flock.Unlock(lf)
		if lf != s.f {
			lf.Close()
		}
	}()
	if fi, err := s.f.Stat(); err != nil || !os.SameFile(fi, li) {
		s.f.Close()
		s.f = lf
		s.view.reset(s.backing)
		s.checked, s.agreed, s.seeded, s.ckptOff = false, false, false, 0
	}
	s.lockedSize = li.Size()
	s.lockedMtime = li.ModTime()
	return fn()
}

// readBacking reads the backing register's current value.
func (s *Store) readBacking(ctx context.Context) (mr.Digest, error) {
	vs, err := s.dev.Read(ctx, s.backing.Name)
	if err != nil {
		return mr.Digest{}, err
	}
	for _, v := range vs {
		if v.Digest.Alg == s.backing.Alg {
			return v.Digest, nil
		}
	}
	return mr.Digest{}, fmt.Errorf("vmr: reading %s: no %v value: %w", s.backing.Name, s.backing.Alg, mr.ErrUnknownRegister)
}

// syncLog is sync; when the view came from the checkpoint and sync fails,
// the log is replayed again from its start (a checkpoint never decides an
// error nor a repair).
func (s *Store) syncLog(ctx context.Context) error {
	err := s.sync(ctx)
	if err == nil || !s.seeded || ctx.Err() != nil {
		return err
	}
	s.view.reset(s.backing)
	s.checked, s.agreed, s.seeded = false, false, false
	s.ckptOff = 0 // the checkpoint on disk is to be rewritten
	return s.sync(ctx)
}

// replayAll replays the log from its start (whatever the checkpoint said)
// and compares it with the register.
func (s *Store) replayAll(ctx context.Context) error {
	s.view.reset(s.backing)
	s.checked, s.agreed, s.seeded = false, false, false
	return s.sync(ctx)
}

// sync brings the view up to the end of the log (other processes may have
// appended), then compares it with the register and rolls the logged but
// not extended records of the last batch forward. Called with the file lock held. An empty log
// on a register others already extended gets an INIT entry first.
func (s *Store) sync(ctx context.Context) error {
	size := s.lockedSize // the log's size when the lock was taken
	if size < s.view.off {
		return fmt.Errorf("vmr: %s shrank from %d to %d bytes: %w", s.path, s.view.off, size, ErrInconsistent)
	}
	if size == s.view.off && s.checked {
		// Nobody appended since this Store last compared the log with
		// the register: no crashed writer can have left a record behind.
		// (An extend of the register outside the log is caught by the
		// next Open, which compares them again.)
		return nil
	}
	if size > s.view.off {
		r := io.NewSectionReader(s.f, s.view.off, size-s.view.off)
		if err := s.view.replay(r, s.path); err != nil {
			if !errors.Is(err, aael.ErrTruncated) {
				return err
			}
			if s.seeded {
				// Cutting is decided by a replay from the start only.
				return fmt.Errorf("vmr: %s ends inside an entry after the checkpoint: %w", s.path, errCheckpoint)
			}
			// A writer died inside its append (a write that crosses a page
			// boundary can stop half way when the process is killed). The
			// partial entry was never fsynced as a whole nor extended, and
			// its extend never returned: cutting it off loses nothing.
			if err := s.f.Truncate(s.view.off); err != nil {
				return fmt.Errorf("vmr: cutting the partial last entry off %s: %w", s.path, err)
			}
			if err := s.f.Sync(); err != nil {
				return fmt.Errorf("vmr: fsync %s: %w", s.path, err)
			}
		}
	}
	s.checked, s.agreed = false, false
	cur, err := s.readBacking(ctx)
	if err != nil {
		return err
	}
	if s.view.off == 0 {
		if cur.Equal(mr.ResetValue(s.backing.Name, s.backing.Alg)) {
			// The register holds its reset value (all ones on PCRs
			// 17-22): the log starts there without an INIT entry.
			return nil
		}
		// A fresh log on a register already extended by others: start it
		// with an INIT entry carrying the register's value.
		b, err := encodeInit(s.backing, cur)
		if err != nil {
			return err
		}
		if _, err := s.f.WriteAt(b, 0); err != nil {
			return fmt.Errorf("vmr: writing %s: %w", s.path, err)
		}
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("vmr: fsync %s: %w", s.path, err)
		}
		return s.view.replay(io.NewSectionReader(s.f, 0, int64(len(b))), s.path)
	}
	if cur.Equal(s.view.value) {
		s.checked, s.agreed = true, true
		return nil
	}
	if cur.Equal(mr.ResetValue(s.backing.Name, s.backing.Alg)) && s.writtenBeforeBoot() {
		// The register was reset by a reboot and the log is the last
		// boot's: its records explain another boot and are never rolled
		// forward into this one (red team 6).
		return s.inconsistent(cur)
	}
	if s.view.records > 0 && cur.Equal(s.view.prev) && (!s.seeded || s.view.records > s.seedRecords) {
		// Logged, fsynced, not extended: roll forward (only a record this
		// Store read from the log, never one on the checkpoint's word).
		if err := s.dev.Extend(ctx, s.backing.Name, s.view.lastDigest); err != nil {
			return fmt.Errorf("vmr: rolling %s record %d forward into %s: %w", s.path, s.view.records-1, s.backing.Name, err)
		}
		s.checked, s.agreed = true, true
		return nil
	}
	if s.seeded {
		// Several records behind: which ones is decided from the log
		// alone. The error makes syncLog replay the log from its start
		// without the checkpoint and call sync again.
		return s.inconsistent(cur)
	}
	ds, err := s.unextended(cur)
	if err != nil {
		return err
	}
	if ds == nil {
		return s.inconsistent(cur)
	}
	if err := s.rollForward(ctx, ds); err != nil {
		return err
	}
	s.checked, s.agreed = true, true
	return nil
}

// writtenBeforeBoot reports whether the log was last written before this
// boot began (its mtime when the lock was taken, against the wall clock
// less the time since boot), or whether that cannot be told: fail closed.
// A log in DefaultDir, a tmpfs, never outlives its boot; one in a folder
// that persists does, and recovery must not take the last boot's records
// for a batch whose writer died before extending them.
func (s *Store) writtenBeforeBoot() bool {
	up, err := sinceBoot()
	if err != nil {
		return true
	}
	return s.lockedMtime.Before(time.Now().Add(-up))
}

// MaxBatch is the most records a Store writes in one append (group commit
// and ExtendMany split larger batches): the most a process killed between
// a batch's fsync and its last extend can leave logged and not extended, so
// the most recovery rolls forward. The IMA forwarder's default batch
// (ForwardOptions.Batch, 1024) is one append.
const MaxBatch = 1024

// afterFsync, when set (by the crash tests alone), runs between a batch's
// fsync and its extends with the batch's length: the window recovery is for.
var afterFsync func(records int)

// unextended folds the whole log (which this Store has just replayed from
// its start: never on a checkpoint's word) and returns the digests of the
// extended records after the last point where the fold equals cur, the
// register's value, when there are 1 to MaxBatch of them and no INIT entry
// among them; nil otherwise.
//
// Why rolling them forward extends nothing nobody meant to extend: every
// record was appended to the log, in a folder only root can write
// (safefs.CheckDir), before its extend was attempted; whoever can append
// there can extend the register anyway. A register that holds the fold of
// a prefix of the log, short of its end, got there either by the log's own
// writers (a crash between a batch's fsync and its last extend: the records
// after it are that batch's, at most MaxBatch, since a writer checks the
// register against the whole log under the lock before each append) or by
// someone who found a preimage of the hash chain. A foreign extend, an
// edited log, or more records behind than one batch remain ErrInconsistent.
// (A resettable backing register, accepted only with AllowResettable, can
// be reset to the start of a log without INIT; rolling the log forward then
// rebuilds what the reset erased, which whoever reset it could do as well;
// verifiers report such a register weakened in any case.)
func (s *Store) unextended(cur mr.Digest) ([]mr.Digest, error) {
	ext := mr.NewExtender(mr.ResetValue(s.backing.Name, s.backing.Alg))
	matched := ext.Value().Equal(cur)
	var after []mr.Digest // extended records since the last match
	over := false         // more than MaxBatch of them
	rd := aael.NewReader(io.NewSectionReader(s.f, 0, s.view.off), aael.Options{File: s.path})
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// The same bytes replayed a moment ago: fail closed.
			return nil, fmt.Errorf("vmr: folding %s again: %w", s.path, err)
		}
		switch {
		case !e.Init.IsZero():
			ext = mr.NewExtender(e.Init)
			matched, after, over = false, after[:0], false
		case e.Extended:
			if err := ext.Extend(e.Digest.Bytes); err != nil {
				return nil, fmt.Errorf("vmr: folding %s again: %w", s.path, err)
			}
			if len(after) < MaxBatch {
				after = append(after, mr.Digest{Alg: e.Digest.Alg, Bytes: append([]byte(nil), e.Digest.Bytes...)})
			} else {
				over = true
			}
		}
		if ext.Value().Equal(cur) {
			matched, after, over = true, after[:0], false
		}
	}
	if !matched || over || len(after) == 0 {
		return nil, nil
	}
	return after, nil
}

// rollForward extends the register with ds, the logged records of a batch
// whose writer died before extending them, in one update where the device
// offers one.
func (s *Store) rollForward(ctx context.Context, ds []mr.Digest) error {
	from := s.view.records - len(ds)
	if me, ok := s.dev.(mr.MultiExtender); ok && len(ds) > 1 {
		if err := me.ExtendMany(ctx, s.backing.Name, ds); err != nil {
			return fmt.Errorf("vmr: rolling %s records %d to %d forward into %s: %w", s.path, from, s.view.records-1, s.backing.Name, err)
		}
		return nil
	}
	for i, d := range ds {
		// A failure half way leaves the register at a later point of the
		// log; the next sync rolls the rest forward.
		if err := s.dev.Extend(ctx, s.backing.Name, d); err != nil {
			return fmt.Errorf("vmr: rolling %s record %d forward into %s: %w", s.path, from+i, s.backing.Name, err)
		}
	}
	return nil
}

// inconsistent replays the whole log again to find the last record after
// which the register held its current value, for the error message.
func (s *Store) inconsistent(cur mr.Digest) error {
	where := "no prefix of the log"
	reset := mr.ResetValue(s.backing.Name, s.backing.Alg)
	if cur.Equal(reset) {
		where = "the empty log"
	}
	// Fold the log again, noting the last point where the register held
	// what it holds now.
	ext, n := mr.NewExtender(reset), 0
	rd := aael.NewReader(io.NewSectionReader(s.f, 0, s.view.off), aael.Options{File: s.path})
	for {
		e, err := rd.Next()
		if err != nil {
			break
		}
		if !e.Init.IsZero() {
			ext = mr.NewExtender(e.Init)
		} else if e.Extended && ext.Extend(e.Digest.Bytes) == nil {
			n++
		}
		if ext.Value().Equal(cur) {
			where = fmt.Sprintf("the log up to its record %d (counting extended records from 1)", n)
		}
	}
	return fmt.Errorf("vmr: register %s (%v) = %s matches %s of %s (%d records, replay gives %s); nothing written: %w",
		s.backing.Name, s.backing.Alg, cur.Hex(), where, s.path, s.view.records, s.view.value.Hex(), ErrInconsistent)
}

// Extend appends "name extend ALG/HEX" to the runtime log, fsyncs it, extends
// the backing register with the record's digest, and returns the new value of
// the virtual register. name must satisfy mr.IsVirtualName; all records of
// one virtual register use one algorithm.
func (s *Store) Extend(ctx context.Context, name string, d mr.Digest) (mr.Digest, error) {
	rs, err := s.ExtendMany(ctx, []Item{{Name: name, Digest: d}})
	if err != nil {
		return mr.Digest{}, err
	}
	return rs[0], nil
}

// Item is one virtual extend.
type Item struct {
	Name   string
	Digest mr.Digest
}

// ExtendMany extends several virtual registers in log order with one fsync,
// returning each register's value after its record (more than MaxBatch
// items take more than one append). Either all items are logged and
// extended, or an error is returned and the log holds none of the items
// that failed.
func (s *Store) ExtendMany(ctx context.Context, items []Item) ([]mr.Digest, error) {
	ps := make([]*pending, len(items))
	owner := new(byte)
	for i, it := range items {
		rec, err := newRecord(it.Name, it.Digest)
		if err != nil {
			return nil, err
		}
		ps[i] = &pending{rec: rec, done: make(chan result, 1), owner: owner}
	}
	return s.submit(ctx, owner, ps)
}

// submit queues ps (records of one caller, owner) for the group commit,
// leads it when no other goroutine does, and waits for every record's
// result.
func (s *Store) submit(ctx context.Context, owner *byte, ps []*pending) ([]mr.Digest, error) {
	s.mu.Lock()
	s.queue = append(s.queue, ps...)
	lead := !s.leading
	s.leading = true
	s.mu.Unlock()
	if lead {
		s.lead(ctx, owner)
	}
	out := make([]mr.Digest, len(ps))
	for i, p := range ps {
		r := <-p.done
		if r.err != nil {
			return nil, r.err
		}
		out[i] = r.value
	}
	return out, nil
}

// lead commits queued records batch by batch until the queue is empty. A
// batch that holds other goroutines' records does not stop for the
// leader's cancellation (devices bound their own commands); one of the
// leader's records alone (owner) gives up waiting for the log's lock when
// ctx ends, with nothing written.
func (s *Store) lead(ctx context.Context, owner *byte) {
	keep := context.WithoutCancel(ctx)
	for {
		s.mu.Lock()
		batch := s.queue
		if len(batch) > MaxBatch {
			// One append holds at most MaxBatch records: the most
			// recovery rolls forward after a crash inside a batch.
			batch = batch[:MaxBatch:MaxBatch]
			s.queue = append([]*pending(nil), s.queue[MaxBatch:]...)
		} else {
			s.queue = nil
		}
		if len(batch) == 0 {
			s.leading = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		lockCtx := ctx
		for _, p := range batch {
			if p.owner != owner {
				lockCtx = keep
				break
			}
		}
		s.commit(lockCtx, keep, batch)
	}
}

// commit logs and extends one batch and answers every pending record;
// lockCtx bounds the wait for the log's lock.
func (s *Store) commit(lockCtx, ctx context.Context, batch []*pending) {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	var values []mr.Digest
	var n int
	err := s.locked(lockCtx, func() error {
		if err := s.syncLog(ctx); err != nil {
			return err
		}
		// A record that would give a virtual register a second algorithm
		// fails alone; the other waiting records go on.
		next := s.view.clone()
		good := make([]*pending, 0, len(batch))
		for _, p := range batch {
			if err := next.checkAlg(p.rec); err != nil {
				p.done <- result{err: err}
				continue
			}
			next.applyVirtual(p.rec)
			good = append(good, p)
		}
		batch = good
		if len(batch) == 0 {
			return nil
		}
		var err error
		values, n, err = s.appendAndExtend(ctx, batch)
		if err == nil {
			s.saveCheckpoint(ckptEvery)
		}
		return err
	})
	for i, p := range batch {
		if i < n {
			p.done <- result{value: values[i]}
		} else {
			p.done <- result{err: err}
		}
	}
}

// appendAndExtend writes the batch's entries in one write, fsyncs, then
// extends the register entry by entry. It returns how many records are done;
// when an extend fails, the records not extended are cut off the log again.
func (s *Store) appendAndExtend(ctx context.Context, batch []*pending) ([]mr.Digest, int, error) {
	// The records were checked by commit; compute each register's value
	// after its record on a copy of the view.
	var buf []byte
	digests := make([]mr.Digest, 0, len(batch))
	sizes := make([]int64, 0, len(batch))
	next := s.view.clone()
	values := make([]mr.Digest, 0, len(batch))
	for _, p := range batch {
		var d mr.Digest
		var err error
		n := len(buf)
		if buf, d, err = encodeRecord(buf, s.backing, p.rec); err != nil {
			return nil, 0, err
		}
		digests = append(digests, d)
		sizes = append(sizes, int64(len(buf)-n))
		values = append(values, next.applyVirtual(p.rec))
	}
	start := s.view.off
	if _, err := s.f.WriteAt(buf, start); err != nil {
		s.f.Truncate(start)
		return nil, 0, fmt.Errorf("vmr: writing %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		// The records may or may not be on disk; none is extended. Cut
		// them off so the log stays true.
		s.f.Truncate(start)
		return nil, 0, fmt.Errorf("vmr: fsync %s: %w", s.path, err)
	}
	if afterFsync != nil {
		afterFsync(len(digests))
	}
	one := digests
	if me, ok := s.dev.(mr.MultiExtender); ok && len(digests) > 1 {
		// All or none: on failure nothing was extended, so cut them all.
		if err := me.ExtendMany(ctx, s.backing.Name, digests); err != nil {
			cutErr := s.cutAfter(ctx, start, buf, 0)
			return values, 0, errors.Join(fmt.Errorf("vmr: extending %s: %w", s.backing.Name, err), cutErr)
		}
		one = nil
	}
	for i, d := range one {
		if err := s.dev.Extend(ctx, s.backing.Name, d); err != nil {
			// Records i.. are logged but not extended: cut them off. The
			// view still ends at record i-1, which is what the register holds.
			cutErr := s.cutAfter(ctx, start, buf, i)
			return values, i, errors.Join(fmt.Errorf("vmr: extending %s: %w", s.backing.Name, err), cutErr)
		}
	}
	// The view follows from the records just written; no need to read them back.
	for i, p := range batch {
		if err := s.view.applyOwn(p.rec, digests[i], sizes[i]); err != nil {
			return values, len(batch), err
		}
	}
	s.agreed = true
	return values, len(batch), nil
}

// cutAfter replays the first done entries of buf into the view and truncates
// the log after them.
func (s *Store) cutAfter(ctx context.Context, start int64, buf []byte, done int) error {
	size, err := entriesSize(buf, done)
	if err != nil {
		return err
	}
	if err := s.view.replay(io.NewSectionReader(s.f, start, size), s.path); err != nil {
		return err
	}
	if err := s.f.Truncate(start + size); err != nil {
		return fmt.Errorf("vmr: cutting unextended records off %s: %w", s.path, err)
	}
	return s.f.Sync()
}

// Read returns the current value of a virtual register (after catching up
// with other writers).
func (s *Store) Read(ctx context.Context, name string) (mr.Digest, error) {
	vs, err := s.List(ctx)
	if err != nil {
		return mr.Digest{}, err
	}
	for _, v := range vs {
		if v.Register.Name == name {
			return v.Digest, nil
		}
	}
	return mr.Digest{}, fmt.Errorf("vmr: virtual register %q has no records in %s: %w", name, s.path, mr.ErrUnknownRegister)
}

// List returns every virtual register with its value, sorted by name.
func (s *Store) List(ctx context.Context) ([]mr.Value, error) {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	if err := s.locked(ctx, func() error { return s.syncLog(ctx) }); err != nil {
		return nil, err
	}
	out := make([]mr.Value, 0, len(s.view.virt))
	for name, v := range s.view.virt {
		out = append(out, mr.Value{
			Register: mr.Register{Name: name, Alg: v.Alg, Size: v.Alg.Size(), Flags: mr.Readable | mr.Extendable | mr.Virtual, Index: -1},
			Digest:   mr.Digest{Alg: v.Alg, Bytes: append([]byte(nil), v.Bytes...)},
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Register.Name < out[j].Register.Name })
	return out, nil
}

// Records returns how many records the log holds for name.
func (s *Store) Records(ctx context.Context, name string) (int, error) {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	if err := s.locked(ctx, func() error { return s.syncLog(ctx) }); err != nil {
		return 0, err
	}
	return s.view.count[name], nil
}

// Snapshot runs fn (a quote) while holding the log's lock, so no virtual
// extend can slip between the evidence and the log, and returns the log's
// bytes as they stood.
func (s *Store) Snapshot(ctx context.Context, fn func() error) ([]byte, error) {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	var out []byte
	err := s.locked(ctx, func() error {
		if err := s.syncLog(ctx); err != nil {
			return err
		}
		if err := fn(); err != nil {
			return err
		}
		out = make([]byte, s.view.off)
		_, err := s.f.ReadAt(out, 0)
		return err
	})
	return out, err
}
