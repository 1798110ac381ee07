package serve_test

import (
	"context"
	"testing"
)

// BenchmarkExtendFloor is the single-writer floor: one goroutine's
// Store.Extend on the sim device (append, fsync, extend), no daemon.
func BenchmarkExtendFloor(b *testing.B) {
	d := startDaemon(b, nil, 0o600)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		if _, err := d.store.Extend(ctx, "mr_bench", digestOf(0, i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExtendServe is one client's extend through the daemon.
func BenchmarkExtendServe(b *testing.B) {
	d := startDaemon(b, nil, 0o600)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		if _, err := d.cl.Extend(ctx, "mr_bench", digestOf(0, i)); err != nil {
			b.Fatal(err)
		}
	}
}
