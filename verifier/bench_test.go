package verifier

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/internal/imatest"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/vmr"
)

// BenchmarkVerify100k verifies a sim bundle whose IMA list holds 100,000
// ima-ng entries forwarded into mr_ima: all layers, no policy.
func BenchmarkVerify100k(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	list := filepath.Join(dir, "ima.bin")
	var lb bytes.Buffer
	if _, err := imatest.WriteBinary(&lb, 100000, binary.LittleEndian, imatest.NG); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(list, lb.Bytes(), 0o600); err != nil {
		b.Fatal(err)
	}
	dev, err := sim.Open(ctx, filepath.Join(dir, "sim"))
	if err != nil {
		b.Fatal(err)
	}
	s, err := vmr.Open(ctx, dev, vmr.Options{Dir: filepath.Join(dir, "log")})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Forward(ctx, vmr.ForwardOptions{List: list}); err != nil {
		b.Fatal(err)
	}
	nonce := []byte("bench")
	var ev *mr.Evidence
	data, err := s.Snapshot(ctx, func() error { var err error; ev, err = dev.Attest(ctx, nonce); return err })
	if err != nil {
		b.Fatal(err)
	}
	virt, _ := s.List(ctx)
	bundle := bundle.New(ev, []bundle.Log{{Format: "runtime", Register: "rtmr3", Alg: "sha384", Data: data}, {Format: "ima-binary", Data: lb.Bytes()}}, virt)
	key, _ := dev.PublicKeyPEM(ctx)
	opts := Options{AllowSim: true, SimKeys: [][]byte{key}, Nonce: nonce}
	b.SetBytes(int64(lb.Len() + len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, err := Verify(ctx, bundle, opts)
		if err != nil || !rep.Trusted {
			b.Fatalf("not trusted: %v", err)
		}
	}
}

// BenchmarkMonitor: after a verified history of CCMR_BENCH_HISTORY IMA
// entries (default 100,000; make bench uses 1,000,000), a bundle with 1,000
// new entries is verified through the monitor state ("incremental"), next to
// a full verification of a 1,000-entry bundle ("full-1000", the cost of the
// new entries alone) and of the whole history ("full-history", once).
func BenchmarkMonitor(b *testing.B) {
	history := 100000
	if v := os.Getenv("CCMR_BENCH_HISTORY"); v != "" {
		fmt.Sscanf(v, "%d", &history)
	}
	ctx := context.Background()
	type env struct {
		dev  *sim.Device
		s    *vmr.Store
		list string
		key  []byte
	}
	newEnv := func(n int) *env {
		dir := b.TempDir()
		dev, err := sim.Open(ctx, filepath.Join(dir, "sim"))
		if err != nil {
			b.Fatal(err)
		}
		s, err := vmr.Open(ctx, dev, vmr.Options{Dir: filepath.Join(dir, "log")})
		if err != nil {
			b.Fatal(err)
		}
		e := &env{dev: dev, s: s, list: filepath.Join(dir, "ima.bin")}
		e.key, _ = dev.PublicKeyPEM(ctx)
		return e
	}
	grow := func(e *env, n int) {
		f, err := os.Create(e.list)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := imatest.WriteBinary(f, n, binary.LittleEndian, imatest.NG); err != nil {
			b.Fatal(err)
		}
		f.Close()
		if _, err := e.s.Forward(ctx, vmr.ForwardOptions{List: e.list}); err != nil {
			b.Fatal(err)
		}
	}
	quote := func(e *env) *bundle.Bundle {
		var ev *mr.Evidence
		data, err := e.s.Snapshot(ctx, func() error { var err error; ev, err = e.dev.Attest(ctx, []byte("n")); return err })
		if err != nil {
			b.Fatal(err)
		}
		list, _ := os.ReadFile(e.list)
		virt, _ := e.s.List(ctx)
		return bundle.New(ev, []bundle.Log{{Format: "runtime", Register: "rtmr3", Alg: "sha384", Data: data}, {Format: "ima-binary", Data: list}}, virt)
	}
	verify := func(e *env, bd *bundle.Bundle, m *MonitorState) {
		rep, err := Verify(ctx, bd, Options{AllowSim: true, SimKeys: [][]byte{e.key}, Nonce: []byte("n"), Monitor: m})
		if err != nil || !rep.Trusted {
			b.Fatalf("not trusted: %v", err)
		}
	}
	e := newEnv(history)
	grow(e, history)
	state := &MonitorState{Format: StateFormat, Machines: map[string]*MachineState{}}
	verify(e, quote(e), state)
	saved, _ := json.Marshal(state)
	grow(e, history+1000)
	b2 := quote(e)
	small := newEnv(1000)
	grow(small, 1000)
	b3 := quote(small)

	b.Run("incremental", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			var m MonitorState
			json.Unmarshal(saved, &m)
			verify(e, b2, &m)
		}
	})
	b.Run("full-1000", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			verify(small, b3, nil)
		}
	})
	b.Run("full-history", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			verify(e, b2, nil)
		}
	})
}
