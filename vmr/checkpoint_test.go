package vmr

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/mr"
)

// extendN extends name with digestN(tag, from..to-1).
func extendN(t testing.TB, s *Store, name, tag string, from, to int) {
	t.Helper()
	items := make([]Item, 0, to-from)
	for i := from; i < to; i++ {
		items = append(items, Item{Name: name, Digest: digestN(tag, i)})
	}
	if _, err := s.ExtendMany(context.Background(), items); err != nil {
		t.Fatal(err)
	}
}

func readCkpt(t testing.TB, s *Store) checkpoint {
	t.Helper()
	b, err := os.ReadFile(s.checkpointPath())
	if err != nil {
		t.Fatal(err)
	}
	var c checkpoint
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func writeCkpt(t *testing.T, path string, c checkpoint) {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b)
}

func openLog(t testing.TB, dev mr.Device, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dev, Options{Dir: filepath.Join(dir, "log")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// checkAgainstLog checks that the Store's values are those of an
// independent replay of its log, and that the log replays to rtmr3.
func checkAgainstLog(t testing.TB, dev mr.Device, s *Store) {
	t.Helper()
	reg, recs := replayFile(t, s.Path())
	if !reg.Equal(readRTMR3(t, dev)) {
		t.Fatalf("log replays to %v, rtmr3 is %v", reg, readRTMR3(t, dev))
	}
	list, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(recs) {
		t.Fatalf("store lists %d virtual registers, log holds %d", len(list), len(recs))
	}
	for _, v := range list {
		n := v.Register.Name
		if !v.Digest.Equal(fold(recs[n])) {
			t.Fatalf("%s = %v, replay of the log gives %v", n, v.Digest, fold(recs[n]))
		}
		if c, _ := s.Records(context.Background(), n); c != len(recs[n]) {
			t.Fatalf("%s has %d records, the log %d", n, c, len(recs[n]))
		}
	}
}

// An edit in the middle of the log, beyond the hashed windows, is not seen
// by an Open that starts from the checkpoint (it reads only the windows and
// what follows): that is what makes Open O(1). Verify and Cut, which
// replay the whole log, refuse it.
func TestCheckpointOpenReadsOnlyWindowsAndTail(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dev, s := openSim(t, dir)
	extendN(t, s, "mr_x", "x", 0, 300)
	s.Close()
	c := readCkpt(t, s)
	if c.Size < 4*ckptWindow || c.Records != 300 {
		t.Fatalf("checkpoint of %d bytes, %d records; want the whole log of 300 records, over %d bytes", c.Size, c.Records, 4*ckptWindow)
	}
	b, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	mid := len(b) / 2
	i := strings.Index(string(b[mid:]), "extend sha384/") + mid + len("extend sha384/")
	b[i] ^= 1 // a hex digit of a record becomes another one
	writeFile(t, s.Path(), b)

	s2 := openLog(t, dev, dir)
	if _, err := s2.Extend(ctx, "mr_x", digestN("x", 300)); err != nil {
		t.Fatalf("extend after an O(1) open: %v", err)
	}
	if err := s2.Verify(ctx); err == nil || !strings.Contains(err.Error(), "H(event)") {
		t.Fatalf("Verify of an edited log = %v, want the entry digest mismatch", err)
	}
	if _, err := s2.Cut(ctx); err == nil {
		t.Fatal("Cut of an edited log succeeded")
	}
	if _, err := Open(ctx, dev, Options{Dir: filepath.Join(dir, "log")}); err != nil {
		t.Logf("reopen: %v", err)
	}
}

// A short-lived Store writes the checkpoint when the log grew by ckptLag
// since the last one: not for a short log, whose replay costs less than
// the write; then every ckptLag bytes.
func TestCheckpointLag(t *testing.T) {
	defer func(l int64) { ckptLag = l }(ckptLag)
	ckptLag = 32 << 10
	dir := t.TempDir()
	dev, s := openSim(t, dir)
	extendN(t, s, "mr_x", "x", 0, 10)
	s.Close()
	if _, err := os.Lstat(s.checkpointPath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("checkpoint of a %d-record log: %v", 10, err)
	}
	n := 10
	for ; ; n++ {
		s := openLog(t, dev, dir)
		extendN(t, s, "mr_x", "x", n, n+1)
		s.Close()
		if _, err := os.Lstat(s.checkpointPath()); err == nil {
			break
		}
	}
	c := readCkpt(t, s)
	if c.Size < ckptLag || c.Size > ckptLag+1024 || c.Records != n+1 {
		t.Fatalf("first checkpoint at %d bytes, %d records; want just over %d bytes, %d records", c.Size, c.Records, ckptLag, n+1)
	}
	s2 := openLog(t, dev, dir)
	if !s2.seeded {
		t.Fatal("checkpoint not used")
	}
	checkAgainstLog(t, dev, s2)
}

// A checkpoint older than the log (other Stores appended since) is used, and
// only what follows it is replayed; the values are the log's.
func TestCheckpointStale(t *testing.T) {
	dir := t.TempDir()
	dev, s := openSim(t, dir)
	extendN(t, s, "mr_x", "x", 0, 50)
	s.Close()
	old := readCkpt(t, s)
	s2 := openLog(t, dev, dir)
	extendN(t, s2, "mr_x", "x", 50, 80)
	extendN(t, s2, "mr_y", "y", 0, 5)
	// s2 has not written a checkpoint yet (ckptEvery); a third Store
	// starts from the old one.
	if c := readCkpt(t, s2); c.Size != old.Size {
		t.Fatalf("checkpoint moved from %d to %d bytes before Close", old.Size, c.Size)
	}
	s3 := openLog(t, dev, dir)
	if !s3.seeded || s3.seedRecords != 50 {
		t.Fatalf("store not seeded from the 50-record checkpoint (seeded %v, %d)", s3.seeded, s3.seedRecords)
	}
	checkAgainstLog(t, dev, s3)
	s3.Close()
	if c := readCkpt(t, s3); c.Records != 85 {
		t.Fatalf("checkpoint after Close has %d records, want 85", c.Records)
	}
}

// Checkpoints that must not be used: each Open gives the log's values, the
// register is untouched, and Close leaves a checkpoint of this log.
func TestCheckpointRefused(t *testing.T) {
	type setup func(t *testing.T, dir string, dev mr.Device, s *Store)
	for _, tc := range []struct {
		name string
		bad  setup
	}{
		{"garbage", func(t *testing.T, dir string, dev mr.Device, s *Store) {
			writeFile(t, s.checkpointPath(), []byte("\x00\x01not json"))
		}},
		{"torn", func(t *testing.T, dir string, dev mr.Device, s *Store) {
			b, _ := os.ReadFile(s.checkpointPath())
			writeFile(t, s.checkpointPath(), b[:len(b)/2])
		}},
		{"unknown member", func(t *testing.T, dir string, dev mr.Device, s *Store) {
			b, _ := os.ReadFile(s.checkpointPath())
			writeFile(t, s.checkpointPath(), append([]byte(`{"extra":1,`), b[1:]...))
		}},
		{"other register", func(t *testing.T, dir string, dev mr.Device, s *Store) {
			c := readCkpt(t, s)
			c.Backing = "rtmr2"
			writeCkpt(t, s.checkpointPath(), c)
		}},
		{"longer than the log", func(t *testing.T, dir string, dev mr.Device, s *Store) {
			c := readCkpt(t, s)
			c.Size += 10
			writeCkpt(t, s.checkpointPath(), c)
		}},
		{"link", func(t *testing.T, dir string, dev mr.Device, s *Store) {
			// A good checkpoint, reached through a link: not followed.
			target := filepath.Join(dir, "elsewhere.ckpt")
			if err := os.Rename(s.checkpointPath(), target); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, s.checkpointPath()); err != nil {
				t.Fatal(err)
			}
		}},
		{"log of another device, same size", func(t *testing.T, dir string, dev mr.Device, s *Store) {
			// The same records in another order on another device: every
			// size and offset is the same.
			other := t.TempDir()
			_, so := openSim(t, other)
			extendN(t, so, "mr_x", "x", 20, 40)
			extendN(t, so, "mr_x", "x", 0, 20)
			so.Close()
			b, _ := os.ReadFile(so.checkpointPath())
			writeFile(t, s.checkpointPath(), b)
		}},
		{"register extended since by the log's own records, checkpoint rewound", func(t *testing.T, dir string, dev mr.Device, s *Store) {
			// A checkpoint whose last entry is record 39 but whose
			// values claim it was extended onto the register's current
			// value: a roll forward on its word would extend record 39
			// twice.
			c := readCkpt(t, s)
			cur := readRTMR3(t, dev)
			next, _ := mr.Extend(cur, mustDigest(t, s, c.LastOffset).Bytes)
			c.Previous, c.Value = cur.String(), next.String()
			writeCkpt(t, s.checkpointPath(), c)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			dev, s := openSim(t, dir)
			extendN(t, s, "mr_x", "x", 0, 40)
			s.Close()
			tc.bad(t, dir, dev, s)
			before := readRTMR3(t, dev)
			s2 := openLog(t, dev, dir)
			if s2.seeded {
				t.Fatal("the store started from the checkpoint")
			}
			if !readRTMR3(t, dev).Equal(before) {
				t.Fatal("Open extended the register")
			}
			checkAgainstLog(t, dev, s2)
			if err := s2.Verify(context.Background()); err != nil {
				t.Fatal(err)
			}
			s2.Close()
			if fi, err := os.Lstat(s2.checkpointPath()); err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("checkpoint after Close: %v, %v", fi, err)
			}
			if s3 := openLog(t, dev, dir); !s3.seeded {
				t.Fatal("the rewritten checkpoint is not used")
			}
		})
	}
}

// mustDigest is the digest of the log entry at off.
func mustDigest(t testing.TB, s *Store, off int64) mr.Digest {
	t.Helper()
	f, err := os.Open(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(off, 0); err != nil {
		t.Fatal(err)
	}
	e, err := aael.NewReader(f, aael.Options{Continue: true, Alg: mr.SHA384, MRIndex: uint32(max(s.Backing().Index, 0))}).Next()
	if err != nil {
		t.Fatal(err)
	}
	return e.Digest
}

// A later boot (registers reset, log gone) writes a log of the same size
// whose first and last 4 KiB are those of the old one, with other records
// in between: the windows and the last entry match the old checkpoint; the
// register does not, and the log is replayed from its start.
func TestCheckpointOtherBootSameWindows(t *testing.T) {
	dir := t.TempDir()
	dev, s := openSim(t, dir)
	extendN(t, s, "mr_x", "a", 0, 100)
	s.Close()
	old, err := os.ReadFile(s.checkpointPath())
	if err != nil {
		t.Fatal(err)
	}
	size := readCkpt(t, s).Size
	// Reboot.
	os.RemoveAll(filepath.Join(dir, "sim"))
	os.RemoveAll(filepath.Join(dir, "log"))
	dev, s = openSim(t, dir)
	extendN(t, s, "mr_x", "a", 0, 40)
	extendN(t, s, "mr_x", "b", 40, 60)
	extendN(t, s, "mr_x", "a", 60, 100)
	s.Close()
	b, _ := os.ReadFile(s.Path())
	if int64(len(b)) != size {
		t.Fatalf("second boot's log is %d bytes, want %d", len(b), size)
	}
	writeFile(t, s.checkpointPath(), old)
	s2 := openLog(t, dev, dir)
	if s2.seeded {
		t.Fatal("the old boot's checkpoint was used")
	}
	checkAgainstLog(t, dev, s2)
}

// The register extended outside the log after the checkpoint: Open refuses,
// as with a replay of the whole log, naming the last record that agrees.
func TestCheckpointRegisterExtendedOutside(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dev, s := openSim(t, dir)
	extendN(t, s, "mr_x", "x", 0, 30)
	s.Close()
	if err := dev.Extend(ctx, "rtmr3", digestN("z", 0)); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(s.Path())
	_, err := Open(ctx, dev, Options{Dir: filepath.Join(dir, "log")})
	if !errors.Is(err, ErrInconsistent) || !strings.Contains(err.Error(), "no prefix of the log") {
		t.Fatalf("Open = %v, want ErrInconsistent naming no prefix", err)
	}
	if after, _ := os.ReadFile(s.Path()); string(after) != string(before) {
		t.Fatal("a refused Open wrote the log")
	}
}

// What a writer that died leaves after the checkpoint: a partial entry is
// cut off (by the replay from the start, not on the checkpoint's word), a
// logged but not extended record is rolled forward.
func TestCheckpointRecovery(t *testing.T) {
	dir := t.TempDir()
	dev, s := openSim(t, dir)
	extendN(t, s, "mr_x", "x", 0, 30)
	s.Close()
	size := readCkpt(t, s).Size
	rec, _ := aael.ExtendRecord("mr_x", digestN("x", 30))
	entry, _, err := encodeRecord(nil, s.Backing(), rec)
	if err != nil {
		t.Fatal(err)
	}
	appendFile(t, s.Path(), entry[:len(entry)/2])
	s2 := openLog(t, dev, dir)
	if fi, _ := os.Stat(s.Path()); fi.Size() != size {
		t.Fatalf("log is %d bytes after recovery, want %d (partial entry cut)", fi.Size(), size)
	}
	checkAgainstLog(t, dev, s2)
	s2.Close()

	appendFile(t, s.Path(), entry)
	s3 := openLog(t, dev, dir)
	if !s3.seeded {
		t.Fatal("roll forward after the checkpoint replayed the whole log")
	}
	checkAgainstLog(t, dev, s3)
	if n, _ := s3.Records(context.Background(), "mr_x"); n != 31 {
		t.Fatalf("%d records after roll forward, want 31", n)
	}
}

// A checkpoint with every binding right and forged virtual values (only
// whoever can write the log folder can make one) is found by Verify, which
// then holds and writes the log's values; Cut snapshots the log's values.
func TestCheckpointForgedValues(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dev, s := openSim(t, dir)
	extendN(t, s, "mr_x", "x", 0, 30)
	s.Close()
	c := readCkpt(t, s)
	c.Virtual[0].Value = digestN("forged", 0).String()
	writeCkpt(t, s.checkpointPath(), c)

	s2 := openLog(t, dev, dir)
	err := s2.Verify(ctx)
	if !errors.Is(err, ErrInconsistent) || !strings.Contains(err.Error(), "mr_x") {
		t.Fatalf("Verify = %v, want ErrInconsistent naming mr_x", err)
	}
	checkAgainstLog(t, dev, s2)
	if err := s2.Verify(ctx); err != nil {
		t.Fatalf("Verify after the repair: %v", err)
	}

	writeCkpt(t, s.checkpointPath(), c)
	s3 := openLog(t, dev, dir)
	if _, err := s3.Cut(ctx); err != nil {
		t.Fatal(err)
	}
	want := fold(func() []mr.Digest {
		var ds []mr.Digest
		for i := 0; i < 30; i++ {
			ds = append(ds, digestN("x", i))
		}
		return ds
	}())
	if v, err := s3.Read(ctx, "mr_x"); err != nil || !v.Equal(want) {
		t.Fatalf("after Cut mr_x = %v, %v; want %v", v, err, want)
	}
	if v, ok := s3.snapshotValue("mr_x"); !ok || !v.Equal(want) {
		t.Fatalf("the new segment's snapshot gives mr_x = %v (%v), want %v", v, ok, want)
	}
	if reg, _ := replayFile(t, s3.Path()); !reg.Equal(readRTMR3(t, dev)) {
		t.Fatalf("new segment replays to %v, rtmr3 is %v", reg, readRTMR3(t, dev))
	}
}

// The checkpoint parser takes any bytes without panicking, and whatever it
// accepts names the register it was given and a consistent size.
func FuzzParseCheckpoint(f *testing.F) {
	dir := f.TempDir()
	dev, err := sim.Open(context.Background(), filepath.Join(dir, "sim"))
	if err != nil {
		f.Fatal(err)
	}
	s, err := Open(context.Background(), dev, Options{Dir: filepath.Join(dir, "log")})
	if err != nil {
		f.Fatal(err)
	}
	extendN(f, s, "mr_x", "x", 0, 3)
	extendN(f, s, "mr_ima", "i", 0, 2)
	s.Close()
	good, err := os.ReadFile(s.checkpointPath())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"version":1,"virtual":[{"name":"mr_x","value":"sha384:00"}]}`))
	h := sha256.Sum256(nil)
	f.Add([]byte(`{"version":1,"backing":"rtmr3","size":1,"records":1,"entries":1,"head_sha256":"` + hex.EncodeToString(h[:]) + `"}`))
	backing := s.Backing()
	f.Fuzz(func(t *testing.T, b []byte) {
		v, c, err := parseCheckpoint(b, backing)
		if err != nil {
			return
		}
		if c.Backing != backing.Name || v.off != c.Size || v.lastOff >= v.off || v.records < 1 || v.value.Alg != backing.Alg {
			t.Fatalf("accepted %+v", c)
		}
		for n := range v.virt {
			if !mr.IsVirtualName(n) {
				t.Fatalf("accepted virtual register %q", n)
			}
		}
	})
}
