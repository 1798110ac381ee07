package vmr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/mr"
)

// AppendRecord logs another writer's record as aael writes it and extends
// the register with its digest; the store's own virtual registers are
// untouched and the log replays to the register.
func TestAppendRecord(t *testing.T) {
	ctx := context.Background()
	dev, s := openSim(t, t.TempDir())
	if _, err := s.Extend(ctx, "mr_app.a", digestN("a", 0)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	before := readRTMR3(t, dev)
	rec := aael.Record{Domain: "github.com/confidential-containers", Operation: "PullImage", Content: `{"image":"x", "digest":"sha256:00"}`}
	if err := s.AppendRecord(ctx, rec); err != nil {
		t.Fatal(err)
	}
	log, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	want, d, err := aael.AppendEntry(nil, 4, mr.SHA384, rec)
	if err != nil {
		t.Fatal(err)
	}
	if string(log[fi.Size():]) != string(want) {
		t.Errorf("appended %x, want %x", log[fi.Size():], want)
	}
	next, err := mr.Extend(before, d.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if got := readRTMR3(t, dev); !got.Equal(next) {
		t.Errorf("rtmr3 %v, want %v", got, next)
	}
	if n, err := s.Records(ctx, "mr_app.a"); err != nil || n != 1 {
		t.Errorf("mr_app.a: %d records (%v)", n, err)
	}
	if err := s.Verify(ctx); err != nil {
		t.Error(err)
	}
}

// Records that would forge a virtual register or a snapshot, or that are
// not valid runtime-log records, are refused with nothing written.
func TestAppendRecordRefuses(t *testing.T) {
	ctx := context.Background()
	dev, s := openSim(t, t.TempDir())
	if _, err := s.Extend(ctx, "mr_app.a", digestN("a", 0)); err != nil {
		t.Fatal(err)
	}
	snap, err := aael.SnapshotRecord([]aael.Snapshot{{Name: "mr_app.a", Value: digestN("a", 1)}})
	if err != nil {
		t.Fatal(err)
	}
	zero := "sha384/" + strings.Repeat("00", 48)
	for _, tc := range []struct {
		name     string
		rec      aael.Record
		reserved bool
	}{
		{"virtual extend", aael.Record{Domain: "mr_app.a", Operation: "extend", Content: zero}, true},
		{"new virtual register", aael.Record{Domain: "mr_x", Operation: "extend", Content: zero}, true},
		{"snapshot", snap, true},
		{"mr_ domain, bad name", aael.Record{Domain: "mr_A", Operation: "extend", Content: zero}, false},
		{"ccmr, other operation", aael.Record{Domain: "ccmr", Operation: "cut", Content: "x"}, false},
		{"INIT", aael.Record{Domain: "INIT", Operation: zero, Content: "x"}, false},
		{"LF", aael.Record{Domain: "d", Operation: "o", Content: "a\nmr_app.a extend " + zero}, false},
		{"control byte", aael.Record{Domain: "d", Operation: "o", Content: "a\x7f"}, false},
		{"too large", aael.Record{Domain: "d", Operation: "o", Content: strings.Repeat("a", aael.MaxRecordSize)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fi, err := os.Stat(s.Path())
			if err != nil {
				t.Fatal(err)
			}
			before := readRTMR3(t, dev)
			err = s.AppendRecord(ctx, tc.rec)
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.reserved != errors.Is(err, ErrReservedRecord) {
				t.Errorf("%v: ErrReservedRecord %v, want %v", err, !tc.reserved, tc.reserved)
			}
			if !tc.reserved && !errors.Is(err, aael.ErrRecord) {
				t.Errorf("%v: not aael.ErrRecord", err)
			}
			after, err := os.Stat(s.Path())
			if err != nil {
				t.Fatal(err)
			}
			if after.Size() != fi.Size() || !readRTMR3(t, dev).Equal(before) {
				t.Error("a refused record was written")
			}
		})
	}
	if n, err := s.Records(ctx, "mr_app.a"); err != nil || n != 1 {
		t.Errorf("mr_app.a: %d records (%v), want 1", n, err)
	}
}

// aaKillChild appends one foreign record and kills itself between its
// fsync and its extend (the child of TestAppendRecordKilled).
func aaKillChild(ctx context.Context, s *Store) int {
	afterFsync = func(int) { syscall.Kill(os.Getpid(), syscall.SIGKILL); select {} }
	err := s.AppendRecord(ctx, aael.Record{Domain: "github.com/confidential-containers", Operation: "PullImage", Content: "killed"})
	fmt.Fprintln(os.Stderr, "record not killed:", err)
	return 1
}

// A daemon killed between an AppendRecord's fsync and its extend leaves
// the record logged and not extended; the next Open rolls it forward as it
// does virtual records, and the log replays to the register.
func TestAppendRecordKilled(t *testing.T) {
	dir := t.TempDir()
	dev, s := openSim(t, dir)
	if _, err := s.Extend(context.Background(), "mr_app.a", digestN("a", 0)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	before := readRTMR3(t, dev)
	runKilled(t, "aakill:"+dir)
	if !readRTMR3(t, dev).Equal(before) {
		t.Fatal("the child was killed after its extend, not between fsync and extend")
	}
	s2, err := Open(context.Background(), dev, Options{Dir: filepath.Join(dir, "log")})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s2.Close()
	if readRTMR3(t, dev).Equal(before) {
		t.Error("the logged record was not rolled forward")
	}
	if err := s2.Verify(context.Background()); err != nil {
		t.Error(err)
	}
	log, err := os.ReadFile(s2.Path())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "github.com/confidential-containers PullImage killed") {
		t.Error("the record is not in the log")
	}
}
