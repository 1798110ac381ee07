package verifier_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/verifier"
)

// Verify a bundle of a sim device's evidence, pinning the device's key
// and requiring the nonce sent to the guest.
func ExampleVerify() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "verify")
	defer os.RemoveAll(dir)
	dev, err := sim.Open(ctx, dir)
	if err != nil {
		log.Fatal(err)
	}
	nonce := []byte("fresh")
	ev, err := dev.Attest(ctx, nonce)
	if err != nil {
		log.Fatal(err)
	}
	key, _ := dev.PublicKeyPEM(ctx)

	rep, err := verifier.Verify(ctx, bundle.New(ev, nil, nil), verifier.Options{
		AllowSim: true, SimKeys: [][]byte{key}, Nonce: nonce, RequireNonce: true,
	})
	if err != nil { // unusable input (exit 2), not a verdict
		log.Fatal(err)
	}
	fmt.Println(rep.Verdict)
	// Output: TRUSTED
}
