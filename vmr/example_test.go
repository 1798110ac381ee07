package vmr_test

import (
	"context"
	"crypto/sha512"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/vmr"
)

// Open the virtual registers over a device (here a temporary sim; on a
// guest the log folder is vmr.DefaultDir) and extend one: the record goes
// into the runtime log and its digest into the backing register.
func ExampleOpen() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "vmr")
	defer os.RemoveAll(dir)
	dev, err := sim.Open(ctx, filepath.Join(dir, "sim"))
	if err != nil {
		log.Fatal(err)
	}
	s, err := vmr.Open(ctx, dev, vmr.Options{Dir: filepath.Join(dir, "log")})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	h := sha512.Sum384([]byte("app v1"))
	v, err := s.Extend(ctx, "mr_app", mr.Digest{Alg: mr.SHA384, Bytes: h[:]})
	if err != nil {
		log.Fatal(err)
	}
	n, _ := s.Records(ctx, "mr_app")
	fmt.Println(s.Backing().Name, n, v.Alg, len(v.Bytes))
	// Output: rtmr3 1 sha384 48
}
