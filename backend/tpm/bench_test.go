package tpm_test

import (
	"context"
	"testing"

	"github.com/ccmr-dev/ccmr/backend/tpm"
	"github.com/ccmr-dev/ccmr/internal/swtpmtest"
)

func benchTPM(b *testing.B, opts ...tpm.Option) *tpm.Device {
	b.Helper()
	sw := swtpmtest.Start(b)
	d, err := tpm.Open(context.Background(), sw.Spec, opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	if err := d.Startup(context.Background()); err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkReadAll reads PCR 0..23 of every bank of a swtpm (4 banks: 12
// TPM2_PCR_Read commands of 8 digests).
func BenchmarkReadAll(b *testing.B) {
	d := benchTPM(b)
	ctx := context.Background()
	for b.Loop() {
		if _, err := d.Read(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExtendData extends every bank of pcr12 in one TPM2_PCR_Extend.
func BenchmarkExtendData(b *testing.B) {
	d := benchTPM(b)
	ctx := context.Background()
	for b.Loop() {
		if err := d.ExtendData(ctx, "pcr12", []byte("bench")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAttest creates the ECC AK and quotes every bank.
func BenchmarkAttest(b *testing.B) {
	d := benchTPM(b)
	ctx := context.Background()
	for b.Loop() {
		if _, err := d.Attest(ctx, []byte("nonce")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadOne reads one PCR of every bank: one TPM2_PCR_Read.
func BenchmarkReadOne(b *testing.B) {
	d := benchTPM(b)
	ctx := context.Background()
	for b.Loop() {
		if _, err := d.Read(ctx, "pcr10"); err != nil {
			b.Fatal(err)
		}
	}
}
