package sim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/mr"
)

// The concurrency tests re-run this test binary as child processes (os.Args[0]
// -test.run=^TestConcurrentChild$) with CCMR_SIM_CHILD=1; each child extends
// one register n times, logging "SEQ HEX" per extend, where SEQ is the
// update counter its extend produced.

const childEnv = "CCMR_SIM_CHILD"

// childDigest is the digest child id uses for its k-th extend in "distinct" mode.
func childDigest(id, k int) []byte {
	return mr.SHA384.Sum([]byte(fmt.Sprintf("child %d extend %d", id, k))).Bytes
}

func TestConcurrentChild(t *testing.T) {
	if os.Getenv(childEnv) != "1" {
		t.Skip("helper for the concurrency tests, run as a child process")
	}
	get := func(k string) string { return os.Getenv("CCMR_SIM_" + k) }
	id, _ := strconv.Atoi(get("ID"))
	n, _ := strconv.Atoi(get("N"))
	same, _ := hex.DecodeString(get("DIGEST"))
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		if _, err := os.Stat(get("GO")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no start signal")
		}
	}
	ctx := context.Background()
	d, err := Open(ctx, get("DIR")) // the folder does not exist yet: both children race to create it
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for k := 0; k < n; k++ {
		dg := same
		if len(dg) == 0 {
			dg = childDigest(id, k)
		}
		seq, err := d.extend(ctx, get("REG"), mr.Digest{Alg: mr.SHA384, Bytes: dg})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "%d %x\n", seq, dg)
	}
	if err := os.WriteFile(get("OUT"), out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

type record struct {
	seq uint64
	dg  []byte
}

// runChildren runs two children extending reg n times each, with digest
// same (nil: distinct per child and step), and returns each child's records.
func runChildren(t *testing.T, dir, reg string, n int, same []byte) [2][]record {
	t.Helper()
	if testing.Short() {
		t.Skip("starts child processes; skipped in -short")
	}
	tmp := t.TempDir()
	goFile := filepath.Join(tmp, "go")
	var cmds [2]*exec.Cmd
	var outs [2]bytes.Buffer
	for id := range cmds {
		c := exec.Command(os.Args[0], "-test.run=^TestConcurrentChild$", "-test.count=1")
		c.Env = append(os.Environ(), childEnv+"=1",
			"CCMR_SIM_ID="+strconv.Itoa(id), "CCMR_SIM_N="+strconv.Itoa(n), "CCMR_SIM_DIR="+dir,
			"CCMR_SIM_REG="+reg, "CCMR_SIM_DIGEST="+hex.EncodeToString(same), "CCMR_SIM_GO="+goFile,
			"CCMR_SIM_OUT="+filepath.Join(tmp, fmt.Sprintf("out%d", id)))
		c.Stdout, c.Stderr = &outs[id], &outs[id]
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[id] = c
	}
	if err := os.WriteFile(goFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for id, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", id, err, outs[id].String())
		}
	}
	var recs [2][]record
	for id := range recs {
		f, err := os.Open(filepath.Join(tmp, fmt.Sprintf("out%d", id)))
		if err != nil {
			t.Fatalf("child %d wrote no records: %v\n%s", id, err, outs[id].String())
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			a, b, _ := strings.Cut(sc.Text(), " ")
			seq, err1 := strconv.ParseUint(a, 10, 64)
			dg, err2 := hex.DecodeString(b)
			if err1 != nil || err2 != nil {
				t.Fatalf("child %d record %q", id, sc.Text())
			}
			recs[id] = append(recs[id], record{seq, dg})
		}
		f.Close()
		if len(recs[id]) != n {
			t.Fatalf("child %d recorded %d extends, want %d", id, len(recs[id]), n)
		}
	}
	return recs
}

// Both processes extend rtmr3 with the same D 1,000 times: whatever the
// interleaving, the result must be the 2,000-fold extend of D that Python
// computed; a lost update leaves the 1,999-fold (or less) value.
func TestConcurrentSameDigest(t *testing.T) {
	v := findVector(t, "extendn", mr.SHA384, 2000)
	dir := filepath.Join(t.TempDir(), "sim")
	runChildren(t, dir, "rtmr3", v.n/2, v.input)
	d := openT(t, dir)
	if got := read1(t, d, "rtmr3", mr.SHA384); !bytes.Equal(got, v.result) {
		t.Fatalf("rtmr3 after 2x%d concurrent extends = %x\nwant the %d-fold extend %x", v.n/2, got, v.n, v.result)
	}
	st, err := d.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Seq != uint64(v.n) {
		t.Fatalf("seq %d, want %d", st.Seq, v.n)
	}
}

// Both processes extend rtmr2 with their own distinct digests 1,000 times.
// Each extend reports the update number it became; the numbers must be
// exactly 1..2000, increasing within each child, and replaying the digests
// in that order must give the final value.
func TestConcurrentDistinctDigests(t *testing.T) {
	const n = 1000
	dir := filepath.Join(t.TempDir(), "sim")
	recs := runChildren(t, dir, "rtmr2", n, nil)
	var all []record
	for id, rs := range recs {
		for k, r := range rs {
			if !bytes.Equal(r.dg, childDigest(id, k)) {
				t.Fatalf("child %d extend %d used digest %x", id, k, r.dg)
			}
			if k > 0 && r.seq <= rs[k-1].seq {
				t.Fatalf("child %d: seq %d after %d", id, r.seq, rs[k-1].seq)
			}
		}
		all = append(all, rs...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].seq < all[j].seq })
	switches := 0
	for i, r := range all {
		if r.seq != uint64(i+1) {
			t.Fatalf("update numbers are not 1..%d: position %d has %d (an update was lost or duplicated)", 2*n, i, r.seq)
		}
	}
	// Count how often the writer changed, to show the children did interleave.
	owner := map[uint64]int{}
	for id, rs := range recs {
		for _, r := range rs {
			owner[r.seq] = id
		}
	}
	for s := uint64(2); s <= 2*n; s++ {
		if owner[s] != owner[s-1] {
			switches++
		}
	}
	t.Logf("the two children took turns %d times", switches)
	e := mr.NewExtender(mr.Zero(mr.SHA384))
	for _, r := range all {
		if err := e.Extend(r.dg); err != nil {
			t.Fatal(err)
		}
	}
	d := openT(t, dir)
	if got := read1(t, d, "rtmr2", mr.SHA384); !bytes.Equal(got, e.Value().Bytes) {
		t.Fatalf("rtmr2 = %x, replay of the %d recorded extends = %x", got, 2*n, e.Value().Bytes)
	}
}
