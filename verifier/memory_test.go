package verifier

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/internal/imatest"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/vmr"
)

// TestMemoryStreamed measures a verification whose logs are attached from
// files (bundle.Log.Attach), one phase per process so that the peak RSS
// (/usr/bin/time -v) is the phase's own. It runs only when told:
//
//	CCMR_MEM_DIR=/tmp/m CCMR_MEM_PHASE=make CCMR_MEM_ENTRIES=1000000 go test -run TestMemoryStreamed ./verifier
//	go test -c -o /tmp/v.test ./verifier
//	CCMR_MEM_DIR=/tmp/m CCMR_MEM_PHASE=full  /usr/bin/time -v /tmp/v.test -test.run TestMemoryStreamed
//	CCMR_MEM_DIR=/tmp/m CCMR_MEM_PHASE=state /usr/bin/time -v /tmp/v.test -test.run TestMemoryStreamed
//	CCMR_MEM_DIR=/tmp/m CCMR_MEM_PHASE=tail  /usr/bin/time -v /tmp/v.test -test.run TestMemoryStreamed
//
//	CCMR_MEM_DIR=/tmp/m CCMR_MEM_PHASE=inline go test -run TestMemoryStreamed ./verifier
//
// make: a sim guest forwards ENTRIES IMA entries, quotes; the bundle is
// verified into a state; 1,000 more are forwarded and quoted again, whole
// (b2) and as tails from the state (b2tail). full verifies b2 without the
// state, state with it, tail the tails with it.
func TestMemoryStreamed(t *testing.T) {
	dir, phase := os.Getenv("CCMR_MEM_DIR"), os.Getenv("CCMR_MEM_PHASE")
	if dir == "" || phase == "" {
		t.Skip("a measurement: set CCMR_MEM_DIR and CCMR_MEM_PHASE")
	}
	ctx := context.Background()
	if phase == "make" {
		memMake(t, ctx, dir)
		return
	}
	if phase == "inline" { // the bundles as one JSON file each, for the CLI
		for _, name := range []string{"b2", "b2tail"} {
			b := memLoad(t, dir, name)
			for i := range b.Logs {
				data, err := b.Logs[i].Bytes()
				if err != nil {
					t.Fatal(err)
				}
				b.Logs[i] = bundle.Log{Format: b.Logs[i].Format, Register: b.Logs[i].Register, Alg: b.Logs[i].Alg, Offset: b.Logs[i].Offset, Data: data}
			}
			var buf bytes.Buffer
			if err := b.Write(&buf); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name+"-inline.json"), buf.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	key, err := os.ReadFile(filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	o := Options{AllowSim: true, SimKeys: [][]byte{key}, Nonce: []byte("n")}
	name := "b2"
	if phase == "tail" {
		name = "b2tail"
	}
	if phase != "full" {
		st, err := LoadState(filepath.Join(dir, "state.json"), nil)
		if err != nil {
			t.Fatal(err)
		}
		o.Monitor = st
	}
	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the heap in use, sampled
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	b := memLoad(t, dir, name)
	rep, err := Verify(ctx, b, o)
	took := time.Since(start)
	close(stop)
	wg.Wait()
	if err != nil || !rep.Trusted {
		t.Fatalf("not trusted: %v\n%s", err, reportText(rep))
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("phase %s: %v, peak heap in use %.1f MiB, total allocated %.1f MiB\n", phase, took, float64(peak)/(1<<20), float64(ms.TotalAlloc)/(1<<20))
}

// memSave writes b's logs to files NAME.logI and the bundle without them.
func memSave(t *testing.T, dir, name string, b *bundle.Bundle) {
	for i := range b.Logs {
		data, err := b.Logs[i].Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".log"+strconv.Itoa(i)), data, 0o600); err != nil {
			t.Fatal(err)
		}
		b.Logs[i].Data = nil
	}
	var buf bytes.Buffer
	if err := b.Write(&buf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// memLoad reads a bundle memSave wrote, its logs attached from their files.
func memLoad(t *testing.T, dir, name string) *bundle.Bundle {
	f, err := os.Open(filepath.Join(dir, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := bundle.Read(f, name)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b.Logs {
		lf, err := os.Open(filepath.Join(dir, name+".log"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lf.Close() })
		fi, _ := lf.Stat()
		b.Logs[i].Attach(lf, fi.Size())
	}
	return b
}

func memMake(t *testing.T, ctx context.Context, dir string) {
	n := 1000000
	if v := os.Getenv("CCMR_MEM_ENTRIES"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	dev, err := sim.Open(ctx, filepath.Join(dir, "sim"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := vmr.Open(ctx, dev, vmr.Options{Dir: filepath.Join(dir, "log")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	key, _ := dev.PublicKeyPEM(ctx)
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	list := filepath.Join(dir, "ima.bin")
	grow := func(n int) {
		f, err := os.Create(list)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := imatest.WriteBinary(f, n, binary.LittleEndian, imatest.NG); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if _, err := s.Forward(ctx, vmr.ForwardOptions{List: list}); err != nil {
			t.Fatal(err)
		}
	}
	quote := func() *bundle.Bundle {
		var ev *mr.Evidence
		data, err := s.Snapshot(ctx, func() error { var err error; ev, err = dev.Attest(ctx, []byte("n")); return err })
		if err != nil {
			t.Fatal(err)
		}
		l, _ := os.ReadFile(list)
		virt, _ := s.List(ctx)
		return bundle.New(ev, []bundle.Log{{Format: "runtime", Register: "rtmr3", Alg: "sha384", Data: data}, {Format: "ima-binary", Data: l}}, virt)
	}
	grow(n)
	state := NewState()
	o := Options{AllowSim: true, SimKeys: [][]byte{key}, Nonce: []byte("n"), Monitor: state}
	if rep, err := Verify(ctx, quote(), o); err != nil || !rep.Trusted {
		t.Fatalf("not trusted: %v", err)
	}
	if err := state.Save(filepath.Join(dir, "state.json"), nil); err != nil {
		t.Fatal(err)
	}
	grow(n + 1000)
	b2 := quote()
	since, _ := state.Since(MachineID(b2))
	tl, err := TailLogs(b2.Logs, since)
	if err != nil {
		t.Fatal(err)
	}
	b2t := *b2
	b2t.Logs = tl
	memSave(t, dir, "b2tail", &b2t)
	memSave(t, dir, "b2", b2)
}
