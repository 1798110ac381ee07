// Command imagen writes a deterministic binary IMA list of N entries, for
// benchmarks against peer tools: ima-ng with sha256 file digests, or, with
// -sig-key, ima-sig entries signed with a fresh RSA-2048 key whose public
// key it writes to the file -sig-key names.
package main

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"flag"
	"fmt"
	"os"

	"github.com/ccmr-dev/ccmr/internal/imatest"
)

func main() {
	n := flag.Int("n", 1000000, "number of entries")
	out := flag.String("o", "ima.bin", "output file")
	sigKey := flag.String("sig-key", "", "write ima-sig entries signed with a new RSA-2048 key, its public key (PEM) to this file")
	distinct := flag.Int("distinct", 1024, "with -sig-key: distinct signed files (signing is slow; each entry's signature is still verified on its own)")
	flag.Parse()
	if err := run(*n, *out, *sigKey, *distinct); err != nil {
		fmt.Fprintln(os.Stderr, "imagen:", err)
		os.Exit(1)
	}
}

func run(n int, out, sigKey string, distinct int) error {
	gen := imatest.NG
	if sigKey != "" {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return err
		}
		s, err := imatest.NewRSASigner(key, distinct)
		if err != nil {
			return err
		}
		pub, err := s.PublicPEM()
		if err != nil {
			return err
		}
		if err := os.WriteFile(sigKey, pub, 0o644); err != nil {
			return err
		}
		gen = s.Sig
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	size, err := imatest.WriteBinary(w, n, binary.LittleEndian, gen)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	fmt.Printf("%s: %d entries, %d bytes\n", out, n, size)
	return nil
}
