//go:build unix

package cel

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/internal/flock"
	"github.com/ccmr-dev/ccmr/mr"
)

func writeLog(t *testing.T, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tpm2-measure.log")
	if err := os.WriteFile(p, must(os.ReadFile("testdata/systemd-257-pcrextend.log")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadSystemdLog(t *testing.T) {
	ctx := context.Background()
	p := writeLog(t, 0o600)
	b, err := ReadSystemdLog(ctx, p, time.Second)
	if err != nil || !bytes.Equal(b, must(os.ReadFile(p))) {
		t.Fatalf("read %d bytes: %v", len(b), err)
	}
	// The sticky bit, left by a writer that died between extend and log.
	sp := writeLog(t, 0o600|os.ModeSticky)
	if fi, _ := os.Stat(sp); fi.Mode()&os.ModeSticky == 0 {
		t.Skip("this file system does not keep the sticky bit on files")
	}
	if _, err := ReadSystemdLog(ctx, sp, time.Second); !errors.Is(err, ErrIncomplete) {
		t.Errorf("sticky log: %v, want ErrIncomplete", err)
	}
	if _, err := ReadSystemdLog(ctx, filepath.Join(t.TempDir(), "none"), time.Second); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing log: %v", err)
	}
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(p, link)
	if _, err := ReadSystemdLog(ctx, link, time.Second); !errors.Is(err, syscall.ELOOP) {
		t.Errorf("symlink: %v, want ELOOP", err)
	}
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err == nil {
		if _, err := ReadSystemdLog(ctx, fifo, time.Second); !errors.Is(err, mr.ErrMalformed) {
			t.Errorf("fifo: %v", err)
		}
	}
}

// A writer's LOCK_EX keeps the reader out: it gives up after its wait with
// an error, and reads once the writer is done. A reader holding the shared
// lock keeps a writer out.
func TestReadSystemdLogWaitsForWriter(t *testing.T) {
	ctx := context.Background()
	p := writeLog(t, 0o600)
	w, err := os.OpenFile(p, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := flock.Lock(ctx, w, flock.Exclusive); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSystemdLog(ctx, p, 20*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "held the log's lock") {
		t.Fatalf("read under a writer's lock: %v", err)
	}
	flock.Unlock(w)
	l, err := LockSystemdLog(ctx, p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	w2, _ := os.OpenFile(p, os.O_RDWR, 0)
	if err := flock.Lock(short, w2, flock.Exclusive); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a writer got the lock while a reader held it: %v", err)
	}
	if len(l.Data) == 0 {
		t.Error("no data")
	}
	l.Close()
	if err := flock.Lock(ctx, w, flock.Exclusive); err != nil {
		t.Errorf("writer after the reader closed: %v", err)
	}
}

func FuzzSystemdReader(f *testing.F) {
	f.Add(must(os.ReadFile("testdata/systemd-257-pcrextend.log")))
	f.Add(must(os.ReadFile("testdata/systemd-style.jsonseq")))
	f.Add([]byte("\x1e{\"nv_index\":1,\"digests\":[{\"hashAlg\":\"sha1\",\"digest\":\"" + strings.Repeat("00", 20) + "\"}],\"content_type\":\"systemd\",\"content\":{}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var last int64 = -1
		res, err := ReplaySystemd(NewSystemdReader(bytes.NewReader(data), "f"), SystemdReplayOptions{File: "f",
			OnRecord: func(r *SystemdRecord) error {
				if r.Offset <= last || r.Offset >= int64(len(data)) || data[r.Offset] != 0x1e {
					t.Fatalf("record %d at offset %d", r.Index, r.Offset)
				}
				last = r.Offset
				return nil
			}})
		if err != nil {
			var le *eventlog.Error
			if err != io.EOF && !errors.As(err, &le) {
				t.Fatalf("error of no place: %v", err)
			}
			return
		}
		for _, v := range res.Registers {
			if len(v.Digest.Bytes) != v.Digest.Alg.Size() {
				t.Fatalf("value %v", v)
			}
		}
	})
}
