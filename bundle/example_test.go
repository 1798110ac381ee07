package bundle_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/mr"
)

// Write a bundle as a streamed ccmr-evidence/v2 archive and read it back:
// the logs stay in the file, read through Size, Open and Bytes.
func ExampleOpen() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "bundle")
	defer os.RemoveAll(dir)
	b := &bundle.Bundle{
		Format:   bundle.Format,
		Platform: mr.PlatformSim,
		Nonce:    []byte("nonce"),
		Time:     time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC),
		Evidence: bundle.Evidence{Report: []byte("{}"), Signature: []byte("sig"), PublicKey: "PEM"},
		Logs:     []bundle.Log{{Format: "runtime", Register: "rtmr3", Alg: "sha384", Data: []byte("a runtime log\n")}},
	}
	path := filepath.Join(dir, "b.ccmr")
	f, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	if err := b.WriteArchive(ctx, f); err != nil {
		log.Fatal(err)
	}
	f.Close()

	got, err := bundle.Open(ctx, path) // v1 or v2, by content
	if err != nil {
		log.Fatal(err)
	}
	defer got.Close()
	data, _ := got.Logs[0].Bytes()
	fmt.Println(got.Format, got.Platform, got.Logs[0].Member, got.Logs[0].Size(), string(data))
	// Output: ccmr-evidence/v2 sim logs/0 14 a runtime log
}
