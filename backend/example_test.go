package backend_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/ccmr-dev/ccmr/backend"
)

// Open the device a --device spec names: "auto" probes TDX, SNP and the
// TPM and falls back to the sim; "sim:DIR" is the software device in DIR.
func ExampleOpen() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "dev")
	defer os.RemoveAll(dir)
	dev, err := backend.Open(ctx, "sim:"+dir, backend.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer dev.Close()
	if err := dev.ExtendData(ctx, "rtmr3", []byte("hello")); err != nil {
		log.Fatal(err)
	}
	v, err := dev.Read(ctx, "rtmr3")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(dev.Kind(), v[0].Register.Name, v[0].Digest.Alg)
	// Output: sim rtmr3 sha384
}
