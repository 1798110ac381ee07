package verifier

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/log/ima/imatest"
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
	bundle := NewBundle(ev, []Log{{Format: "runtime", Register: "rtmr3", Alg: "sha384", Data: data}, {Format: "ima-binary", Data: lb.Bytes()}}, virt)
	key, _ := dev.PublicKeyPEM(ctx)
	opts := Options{AllowSim: true, TrustedKeys: [][]byte{key}, Nonce: nonce}
	b.SetBytes(int64(lb.Len() + len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, err := Verify(ctx, bundle, opts)
		if err != nil || !rep.Trusted {
			b.Fatalf("not trusted: %v", err)
		}
	}
}
