package cel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ccmr-dev/ccmr/internal/flock"
	"github.com/ccmr-dev/ccmr/mr"
)

// ErrIncomplete marks systemd's log as incomplete: its sticky bit is set
// while no writer holds it, so a writer died between extending a PCR and
// logging the extend, and the PCR holds an extend the log lacks.
var ErrIncomplete = errors.New("systemd's measurement log is marked incomplete (sticky bit set with no writer): a writer died between extending and logging")

// MaxSystemdLog bounds the log ReadSystemdLog reads (systemd writes a few
// hundred bytes per boot phase and volume).
const MaxSystemdLog = 64 << 20

// DefaultLockWait is how long ReadSystemdLog waits for systemd's writers by
// default: they hold the lock for one extend and one append.
const DefaultLockWait = 10 * time.Second

// ReadSystemdLog reads systemd's userspace measurement log at path (""
// means SystemdLogPath) as systemd-pcrlock does: under flock(LOCK_SH),
// which waits for a writer's LOCK_EX, so that no record is read half
// written and no extend is made between the read and a quote taken while
// the lock is held. It waits at most wait (0 means DefaultLockWait) and
// then fails rather than block a collection. A file whose sticky bit is
// still set under the lock is refused with ErrIncomplete: it lacks a record
// of an extend the PCRs hold. A missing file is an error wrapping
// os.ErrNotExist (a system whose systemd measured nothing has none).
//
// The lock is released when ReadSystemdLog returns. A caller that quotes
// the PCRs should quote while holding it: use LockSystemdLog instead.
func ReadSystemdLog(ctx context.Context, path string, wait time.Duration) ([]byte, error) {
	l, err := LockSystemdLog(ctx, path, wait)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	return l.Data, nil
}

// SystemdLog is systemd's log read under its shared lock, which it holds
// until Close: while it is held, systemd's writers can neither extend nor
// log, so a quote taken now covers exactly Data.
type SystemdLog struct {
	// Path is the file read; Data its bytes.
	Path string
	Data []byte
	f    *os.File
}

// Close releases the lock.
func (l *SystemdLog) Close() error {
	if l.f == nil {
		return nil
	}
	flock.Unlock(l.f)
	err := l.f.Close()
	l.f = nil
	return err
}

// LockSystemdLog opens systemd's log, takes its shared lock (waiting at most
// wait, 0 meaning DefaultLockWait), refuses a file marked incomplete and
// reads it whole, keeping the lock until Close. See ReadSystemdLog.
func LockSystemdLog(ctx context.Context, path string, wait time.Duration) (*SystemdLog, error) {
	if path == "" {
		path = SystemdLogPath
	}
	if wait <= 0 {
		wait = DefaultLockWait
	}
	f, err := openLog(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: %w: not a regular file (%v)", path, mr.ErrMalformed, fi.Mode().Type())
	}
	lctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := flock.Lock(lctx, f, flock.Shared); err != nil {
		if err != lctx.Err() {
			f.Close() // not a context's end: f is still ours
			return nil, err
		}
		// The context ended: flock.Lock has taken f over.
		if ctx.Err() == nil {
			return nil, fmt.Errorf("%s: a systemd writer held the log's lock for more than %v: %w", path, wait, err)
		}
		return nil, err
	}
	l := &SystemdLog{Path: path, f: f}
	// Under the lock: a writer sets the sticky bit before it extends and
	// clears it after it logged, so a bit seen now was left by a writer
	// that died in between.
	if fi, err = f.Stat(); err != nil {
		l.Close()
		return nil, err
	}
	if fi.Mode()&os.ModeSticky != 0 {
		l.Close()
		return nil, fmt.Errorf("%s: %w", path, ErrIncomplete)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxSystemdLog+1))
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > MaxSystemdLog {
		l.Close()
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", path, mr.ErrMalformed, MaxSystemdLog)
	}
	l.Data = data
	return l, nil
}
