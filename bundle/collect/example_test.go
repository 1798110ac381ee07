package collect_test

import (
	"context"
	"crypto/sha512"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/bundle/collect"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier"
	"github.com/ccmr-dev/ccmr/vmr"
)

// A guest agent: it measures its configuration into a virtual register,
// collects a bundle for the verifier's nonce, and (here, in one process)
// verifies it. On a real guest, backend.Open(ctx, "auto", ...) and
// vmr.DefaultDir replace the temporary sim device.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "guest")
	defer os.RemoveAll(dir)
	dev, err := sim.Open(ctx, filepath.Join(dir, "sim"))
	must(err)
	store, err := vmr.Open(ctx, dev, vmr.Options{Dir: filepath.Join(dir, "log")})
	must(err)
	defer store.Close()
	config := sha512.Sum384([]byte("listen :8443\n"))
	_, err = store.Extend(ctx, "mr_app.config", mr.Digest{Alg: mr.SHA384, Bytes: config[:]})
	must(err)

	nonce := []byte("the verifier's fresh nonce")
	b, err := collect.Bundle(ctx, dev, store, nonce, collect.Options{NoIMA: true})
	must(err)
	defer b.Close()

	key, err := dev.PublicKeyPEM(ctx) // the verifier pins it beforehand
	must(err)
	rep, err := verifier.Verify(ctx, b, verifier.Options{AllowSim: true, SimKeys: [][]byte{key}, Nonce: nonce})
	must(err)
	fmt.Println(rep.Verdict)
	// Output: TRUSTED
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
