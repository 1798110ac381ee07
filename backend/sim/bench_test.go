package sim

import (
	"context"
	"testing"

	"github.com/ccmr-dev/ccmr/mr"
)

// BenchmarkRead is what `ccmr read` does on the sim device: open the folder
// (shared lock, parse) and read every register (shared lock, parse).
func BenchmarkRead(b *testing.B) {
	for _, l := range []Layout{LayoutTDX, LayoutTPM} {
		b.Run(string(l), func(b *testing.B) {
			ctx := context.Background()
			dir := b.TempDir()
			openT(b, dir, WithLayout(l))
			b.ResetTimer()
			for b.Loop() {
				d, err := Open(ctx, dir)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := d.Read(ctx); err != nil {
					b.Fatal(err)
				}
				d.Close()
			}
		})
	}
}

// BenchmarkExtend: one extend (exclusive lock, read, write, fsync, rename).
func BenchmarkExtend(b *testing.B) {
	ctx := context.Background()
	d := openT(b, b.TempDir())
	dg := mr.SHA384.Sum([]byte("bench"))
	for b.Loop() {
		if err := d.Extend(ctx, "rtmr3", dg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAttest: sign a statement over every register with the P-384 key.
func BenchmarkAttest(b *testing.B) {
	ctx := context.Background()
	d := openT(b, b.TempDir())
	nonce := make([]byte, 32)
	if _, err := d.Attest(ctx, nonce); err != nil { // make the key outside the loop
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := d.Attest(ctx, nonce); err != nil {
			b.Fatal(err)
		}
	}
}
