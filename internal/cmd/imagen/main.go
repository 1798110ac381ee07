// Command imagen writes a deterministic binary IMA list (ima-ng, sha256 file
// digests) of N entries, for benchmarks against peer tools.
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"os"

	"github.com/ccmr-dev/ccmr/internal/imatest"
)

func main() {
	n := flag.Int("n", 1000000, "number of entries")
	out := flag.String("o", "ima.bin", "output file")
	flag.Parse()
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "imagen:", err)
		os.Exit(1)
	}
	w := bufio.NewWriter(f)
	size, err := imatest.WriteBinary(w, *n, binary.LittleEndian, imatest.NG)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "imagen:", err)
		os.Exit(1)
	}
	fmt.Printf("%s: %d entries, %d bytes\n", *out, *n, size)
}
