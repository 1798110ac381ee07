package vmr

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/internal/imatest"
	"github.com/ccmr-dev/ccmr/mr"
)

// BenchmarkBareAppendFsync is the floor: append one encoded virtual-extend
// entry to a file and fsync it, nothing else.
func BenchmarkBareAppendFsync(b *testing.B) {
	rec, _ := aael.ExtendRecord("mr_ima", digestN("b", 0))
	entry, _, _ := aael.AppendEntry(nil, 4, mr.SHA384, rec)
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "bare.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.SetBytes(int64(len(entry)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := f.Write(entry); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExtend is one writer doing crash-safe virtual extends on the sim
// device: lock, append, fsync, extend rtmr3, unlock.
func BenchmarkExtend(b *testing.B) {
	_, s := openSim(b, b.TempDir())
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Extend(ctx, "mr_ima", digestN("e", i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExtendParallel is 8 goroutines per core extending at once: waiting
// records share one write and one fsync (group commit). ns/op is per extend.
func BenchmarkExtendParallel(b *testing.B) {
	_, s := openSim(b, b.TempDir())
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Extend(ctx, "mr_ima", digestN("p", int(n.Add(1)))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkForward forwards a 10,000-entry ima-ng list into mr_ima; the
// figure is per entry.
func BenchmarkForward(b *testing.B) {
	dir := b.TempDir()
	list := filepath.Join(dir, "ima.bin")
	f, err := os.Create(list)
	if err != nil {
		b.Fatal(err)
	}
	const n = 10000
	if _, err := imatest.WriteBinary(f, n, binary.LittleEndian, imatest.NG); err != nil {
		b.Fatal(err)
	}
	f.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		_, s := openSim(b, filepath.Join(dir, "run", string(rune('a'+i%26)), filepath.Base(b.TempDir())))
		b.StartTimer()
		got, err := s.Forward(context.Background(), ForwardOptions{List: list})
		if err != nil || got != n {
			b.Fatalf("forwarded %d, %v", got, err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "entries/s")
}

// memDev is a register in memory: with it, BenchmarkExtendMemDevice measures
// the writing protocol's own cost (lock, append, fsync, bookkeeping) apart
// from the device's.
type memDev struct{ v mr.Digest }

func (m *memDev) Kind() string { return "mem" }
func (m *memDev) Registers(context.Context) ([]mr.Register, error) {
	return []mr.Register{{Name: "rtmr3", Alg: mr.SHA384, Size: 48, Flags: mr.Readable | mr.Extendable, Index: 4}}, nil
}
func (m *memDev) Read(context.Context, ...string) ([]mr.Value, error) {
	return []mr.Value{{Register: mr.Register{Name: "rtmr3", Alg: mr.SHA384}, Digest: m.v}}, nil
}
func (m *memDev) Extend(_ context.Context, _ string, d mr.Digest) error {
	v, err := mr.Extend(m.v, d.Bytes)
	m.v = v
	return err
}
func (m *memDev) ExtendData(context.Context, string, []byte) error { return nil }
func (m *memDev) Close() error                                     { return nil }

func BenchmarkExtendMemDevice(b *testing.B) {
	s, err := Open(context.Background(), &memDev{v: mr.Zero(mr.SHA384)}, Options{Dir: filepath.Join(b.TempDir(), "log")})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Extend(context.Background(), "mr_ima", digestN("m", i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExtendVsFloor alternates one bare append+fsync of the same entry
// (the floor) and one crash-safe virtual extend on the sim device, so both
// see the same disk at the same moment; it reports each cost and the
// extend's throughput as a fraction of the floor's.
func BenchmarkExtendVsFloor(b *testing.B) {
	_, s := openSim(b, b.TempDir())
	rec, _ := aael.ExtendRecord("mr_ima", digestN("b", 0))
	entry, _, _ := aael.AppendEntry(nil, 4, mr.SHA384, rec)
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "bare.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	ctx := context.Background()
	var floor, ext time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		f.Write(entry)
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := s.Extend(ctx, "mr_ima", digestN("v", i)); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		floor += t1.Sub(t0)
		ext += t2.Sub(t1)
	}
	b.ReportMetric(float64(floor.Microseconds())/float64(b.N), "floor-us")
	b.ReportMetric(float64(ext.Microseconds())/float64(b.N), "extend-us")
	b.ReportMetric(float64(floor)/float64(ext), "of-floor")
}
