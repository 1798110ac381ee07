package vmr

import (
	"bufio"
	"context"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/mr"
)

// digestN is the n-th test digest of a virtual register: sha384(tag || n).
func digestN(tag string, n int) mr.Digest {
	b := sha512.Sum384(binary.BigEndian.AppendUint64([]byte(tag), uint64(n)))
	return mr.Digest{Alg: mr.SHA384, Bytes: b[:]}
}

func openSim(t testing.TB, dir string) (*sim.Device, *Store) {
	t.Helper()
	ctx := context.Background()
	dev, err := sim.Open(ctx, filepath.Join(dir, "sim"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, dev, Options{Dir: filepath.Join(dir, "log")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return dev, s
}

// replayFile replays a runtime log independently of the Store: the backing
// value and each virtual register's records.
func replayFile(t testing.TB, path string) (mr.Digest, map[string][]mr.Digest) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd := aael.NewReader(bufio.NewReader(f), aael.Options{File: path})
	val := mr.Zero(mr.SHA384)
	recs := map[string][]mr.Digest{}
	for {
		e, err := rd.Next()
		if err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatal(err)
		}
		if !e.Init.IsZero() {
			val = e.Init
			continue
		}
		// H(event) computed here, not trusted from the entry.
		h := sha512.Sum384(e.Event)
		if val, err = mr.Extend(val, h[:]); err != nil {
			t.Fatal(err)
		}
		if !e.Record.IsVirtual() {
			continue // the snapshot record of a segment
		}
		name, d, err := e.Record.Virtual()
		if err != nil {
			t.Fatal(err)
		}
		recs[name] = append(recs[name], d)
	}
	return val, recs
}

func fold(ds []mr.Digest) mr.Digest {
	v := mr.Zero(mr.SHA384)
	for _, d := range ds {
		v, _ = mr.Extend(v, d.Bytes)
	}
	return v
}

func readRTMR3(t testing.TB, dev mr.Device) mr.Digest {
	t.Helper()
	vs, err := dev.Read(context.Background(), "rtmr3")
	if err != nil {
		t.Fatal(err)
	}
	return vs[0].Digest
}

func TestExtendReadList(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dev, s := openSim(t, dir)
	var want []mr.Digest
	for i := 0; i < 5; i++ {
		d := digestN("a", i)
		want = append(want, d)
		got, err := s.Extend(ctx, "mr_ima", d)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Equal(fold(want)) {
			t.Fatalf("extend %d: value %v, want %v", i, got, fold(want))
		}
	}
	if _, err := s.Extend(ctx, "mr_ctr.c1", digestN("c", 0)); err != nil {
		t.Fatal(err)
	}
	v, err := s.Read(ctx, "mr_ima")
	if err != nil || !v.Equal(fold(want)) {
		t.Fatalf("Read = %v, %v", v, err)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 2 || list[0].Register.Name != "mr_ctr.c1" {
		t.Fatalf("List = %v, %v", list, err)
	}
	reg, recs := replayFile(t, s.Path())
	if !reg.Equal(readRTMR3(t, dev)) {
		t.Fatalf("log replays to %v, rtmr3 is %v", reg, readRTMR3(t, dev))
	}
	if len(recs["mr_ima"]) != 5 || !fold(recs["mr_ima"]).Equal(fold(want)) {
		t.Fatalf("records of mr_ima: %v", recs["mr_ima"])
	}
	// A second Store (another process) sees the same values.
	_, s2 := openSim(t, dir)
	if v2, err := s2.Read(ctx, "mr_ima"); err != nil || !v2.Equal(v) {
		t.Fatalf("second store: %v %v", v2, err)
	}
}

func TestRejectsInjection(t *testing.T) {
	ctx := context.Background()
	_, s := openSim(t, t.TempDir())
	d := digestN("x", 1)
	for _, name := range []string{"rtmr3", "mr_", "mr_a b", "mr_a\nmr_b extend sha384/00", "mr_A", "ccmr", "mr_a/b", "mr_" + strings.Repeat("a", 61)} {
		if _, err := s.Extend(ctx, name, d); err == nil {
			t.Errorf("name %q accepted", name)
		}
	}
	if _, err := s.Extend(ctx, "mr_a", mr.Digest{Alg: mr.SHA384, Bytes: make([]byte, 47)}); !errors.Is(err, mr.ErrDigestSize) {
		t.Errorf("short digest: %v", err)
	}
	if _, err := s.Extend(ctx, "mr_a", d); err != nil {
		t.Fatal(err)
	}
	// One algorithm per virtual register.
	if _, err := s.Extend(ctx, "mr_a", mr.Zero(mr.SHA256)); err == nil {
		t.Error("second algorithm accepted")
	}
	_, recs := replayFile(t, s.Path())
	if len(recs) != 1 || len(recs["mr_a"]) != 1 {
		t.Errorf("log holds %v", recs)
	}
}

func TestRecovery(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dev, s := openSim(t, dir)
	for i := 0; i < 3; i++ {
		if _, err := s.Extend(ctx, "mr_ima", digestN("r", i)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	path := s.Path()

	// A writer that died after logging: the record is in the log, not in rtmr3.
	rec, _ := aael.ExtendRecord("mr_ima", digestN("r", 3))
	b, _, err := aael.AppendEntry(nil, 4, mr.SHA384, rec)
	if err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, b)
	_, s2 := openSim(t, dir)
	reg, recs := replayFile(t, path)
	if !reg.Equal(readRTMR3(t, dev)) || len(recs["mr_ima"]) != 4 {
		t.Fatalf("roll forward: log %v, rtmr3 %v, %d records", reg, readRTMR3(t, dev), len(recs["mr_ima"]))
	}
	s2.Close()

	// More records logged and not extended than one append holds
	// (MaxBatch): not recoverable; nothing written.
	b = b[:0]
	for i := 0; i <= MaxBatch; i++ {
		r, _ := aael.ExtendRecord("mr_ima", digestN("r", 5+i))
		b, _, _ = aael.AppendEntry(b, 4, mr.SHA384, r)
	}
	appendFile(t, path, b)
	before, _ := os.ReadFile(path)
	regBefore := readRTMR3(t, dev)
	_, err = Open(ctx, dev, Options{Dir: filepath.Join(dir, "log")})
	if !errors.Is(err, ErrInconsistent) {
		t.Fatalf("Open = %v, want ErrInconsistent", err)
	}
	if !strings.Contains(err.Error(), "rtmr3") || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "record 4") {
		t.Errorf("error should name register, log and last good record: %v", err)
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) || !readRTMR3(t, dev).Equal(regBefore) {
		t.Error("a failed recovery wrote something")
	}

	// The register extended behind the log's back: refused too.
	os.Truncate(path, int64(len(before)-len(b)))
	if err := dev.Extend(ctx, "rtmr3", digestN("z", 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, dev, Options{Dir: filepath.Join(dir, "log")}); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("Open after a foreign extend = %v", err)
	}
}

func TestInitOnUsedRegister(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dev, err := sim.Open(ctx, filepath.Join(dir, "sim"))
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Extend(ctx, "rtmr3", digestN("boot", 0)); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, dev, Options{Dir: filepath.Join(dir, "log")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Extend(ctx, "mr_ima", digestN("i", 0)); err != nil {
		t.Fatal(err)
	}
	reg, _ := replayFile(t, s.Path())
	if !reg.Equal(readRTMR3(t, dev)) {
		t.Fatalf("log with INIT replays to %v, rtmr3 %v", reg, readRTMR3(t, dev))
	}
}

func appendFile(t testing.TB, path string, b []byte) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// The child side of the multi-process tests: CCMR_VMR_CHILD=MODE:DIR:ARGS.
func TestMain(m *testing.M) {
	// Tests use short logs: every Close writes a checkpoint
	// (TestCheckpointLag tests the real threshold).
	ckptLag = 1
	if c := os.Getenv("CCMR_VMR_CHILD"); c != "" {
		os.Exit(child(c))
	}
	os.Exit(m.Run())
}

func child(spec string) int {
	parts := strings.Split(spec, ":")
	ctx := context.Background()
	if n, err := strconv.ParseInt(os.Getenv("CCMR_VMR_CKPT_EVERY"), 10, 64); err == nil {
		ckptEvery = n
	}
	dev, err := sim.Open(ctx, filepath.Join(parts[1], "sim"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	s, err := Open(ctx, dev, Options{Dir: filepath.Join(parts[1], "log")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	switch parts[0] {
	case "batchkill", "groupkill":
		return batchKillChild(ctx, s, parts)
	case "aakill":
		return aaKillChild(ctx, s)
	case "concurrent": // concurrent:DIR:ID:N
		id, _ := strconv.Atoi(parts[2])
		n, _ := strconv.Atoi(parts[3])
		for i := 0; i < n; i++ {
			name := []string{"mr_ima", "mr_ctr.x"}[i%2]
			if _, err := s.Extend(ctx, name, digestN(fmt.Sprintf("p%d", id), i)); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
	case "crash": // crash:DIR: extend mr_crash with digest n, n+1, … and report each success
		n, err := s.Records(ctx, "mr_crash")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		for i := n; ; i++ {
			if _, err := s.Extend(ctx, "mr_crash", digestN("crash", i)); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			fmt.Fprintf(os.Stdout, "ok %d\n", i)
		}
	}
	return 0
}

// Four processes × 500 extends on two virtual registers sharing rtmr3.
func TestConcurrentProcesses(t *testing.T) {
	dir := t.TempDir()
	dev, s := openSim(t, dir)
	const procs, n = 4, 500
	var wg sync.WaitGroup
	errs := make([]error, procs)
	for p := 0; p < procs; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), fmt.Sprintf("CCMR_VMR_CHILD=concurrent:%s:%d:%d", dir, p, n))
			out, err := cmd.CombinedOutput()
			if err != nil {
				errs[p] = fmt.Errorf("child %d: %v: %s", p, err, out)
			}
		}(p)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	reg, recs := replayFile(t, s.Path())
	if !reg.Equal(readRTMR3(t, dev)) {
		t.Fatalf("log replays to %v, rtmr3 is %v", reg, readRTMR3(t, dev))
	}
	if got := len(recs["mr_ima"]) + len(recs["mr_ctr.x"]); got != procs*n {
		t.Fatalf("%d records, want %d", got, procs*n)
	}
	// Each process's own records appear in its order.
	for _, name := range []string{"mr_ima", "mr_ctr.x"} {
		v, err := s.Read(context.Background(), name)
		if err != nil || !v.Equal(fold(recs[name])) {
			t.Fatalf("%s = %v, fold of its records %v (%v)", name, v, fold(recs[name]), err)
		}
	}
}

// SIGKILL an extending process at random moments, 200 times; after each,
// reopening recovers, the log replays to rtmr3, and every extend reported
// as done is in the log.
func TestCrashSafety(t *testing.T) {
	crashTrials(t, 200, "")
}

// The same with the checkpoint written after every extend, so that kills
// fall before, inside and after its write: each reopen (which starts from
// the checkpoint) gives the values of a replay of the whole log.
func TestCrashSafetyCheckpoint(t *testing.T) {
	crashTrials(t, 100, "CCMR_VMR_CKPT_EVERY=1")
}

func crashTrials(t *testing.T, trials int, env string) {
	if testing.Short() {
		trials = 20
	}
	dir := t.TempDir()
	dev, s0 := openSim(t, dir)
	s0.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	confirmed := -1
	seeded := 0
	for trial := 0; trial < trials; trial++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "CCMR_VMR_CHILD=crash:"+dir, env)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan int, 1<<16)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "ok ")); err == nil {
					lines <- n
				}
			}
			close(lines)
		}()
		time.Sleep(time.Duration(rng.IntN(40000)) * time.Microsecond)
		cmd.Process.Signal(syscall.SIGKILL)
		for n := range lines {
			confirmed = max(confirmed, n)
		}
		cmd.Wait()
		if strings.Contains(stderr.String(), "vmr") {
			t.Fatalf("trial %d: child failed: %s", trial, stderr.String())
		}
		// Reopen: recovery must succeed and the log must replay to rtmr3.
		s, err := Open(context.Background(), dev, Options{Dir: filepath.Join(dir, "log")})
		if err != nil {
			t.Fatalf("trial %d: reopen: %v", trial, err)
		}
		if s.seeded {
			seeded++
		}
		reg, recs := replayFile(t, s.Path())
		if !reg.Equal(readRTMR3(t, dev)) {
			t.Fatalf("trial %d: log replays to %v, rtmr3 is %v", trial, reg, readRTMR3(t, dev))
		}
		got := recs["mr_crash"]
		if len(got) < confirmed+1 {
			t.Fatalf("trial %d: extend %d was confirmed, log holds %d records", trial, confirmed, len(got))
		}
		for i, d := range got {
			if !d.Equal(digestN("crash", i)) {
				t.Fatalf("trial %d: record %d is %v, want digest %d", trial, i, d, i)
			}
		}
		if len(got) > 0 {
			// The reopened Store's values (from the checkpoint, if it
			// was used) are the whole log's.
			v, err := s.Read(context.Background(), "mr_crash")
			n, _ := s.Records(context.Background(), "mr_crash")
			if err != nil || !v.Equal(fold(got)) || n != len(got) {
				t.Fatalf("trial %d: mr_crash = %v after %d records (%v), the log gives %v after %d", trial, v, n, err, fold(got), len(got))
			}
			if err := s.Verify(context.Background()); err != nil {
				t.Fatalf("trial %d: %v", trial, err)
			}
		}
		s.Close()
	}
	t.Logf("%d trials, %d extends confirmed, %d reopens from the checkpoint", trials, confirmed+1, seeded)
}

// Goroutines extending at once share a batch; one that gives a register a
// second algorithm fails alone, the others are logged.
func TestBadRecordFailsAlone(t *testing.T) {
	ctx := context.Background()
	_, s := openSim(t, t.TempDir())
	if _, err := s.Extend(ctx, "mr_a", digestN("a", 0)); err != nil {
		t.Fatal(err)
	}
	rs, err := s.ExtendMany(ctx, []Item{{Name: "mr_b", Digest: digestN("b", 0)}})
	if err != nil || len(rs) != 1 {
		t.Fatal(err)
	}
	errs := make(chan error, 20)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			d := digestN("c", i)
			if i == 7 {
				d = mr.Zero(mr.SHA256) // mr_a is sha384
			}
			_, err := s.Extend(ctx, "mr_a", d)
			if (err != nil) != (i == 7) {
				errs <- fmt.Errorf("extend %d: %v", i, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n, _ := s.Records(ctx, "mr_a"); n != 20 {
		t.Fatalf("mr_a has %d records, want 20", n)
	}
}
