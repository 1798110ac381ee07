// Command loggen appends N virtual-register records to the runtime log of a
// sim device through the vmr library (batches of one write, one fsync and
// one extend each), to make the long logs the store benchmarks open
// (scripts/bench-vmr.sh): a million CLI extends would take hours.
package main

import (
	"context"
	"crypto/sha512"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/vmr"
)

func main() {
	simDir := flag.String("sim", "", "sim device state folder (the CLI's --device sim:DIR)")
	logDir := flag.String("log-dir", "", "runtime log folder (default: DIR/runtime, as the CLI)")
	n := flag.Int("n", 1000000, "records to append")
	name := flag.String("register", "mr_ctr.x", "virtual register")
	batch := flag.Int("batch", 4096, "records per write and fsync")
	flag.Parse()
	if err := run(*simDir, *logDir, *name, *n, *batch); err != nil {
		fmt.Fprintln(os.Stderr, "loggen:", err)
		os.Exit(1)
	}
}

func run(simDir, logDir, name string, n, batch int) error {
	if simDir == "" || batch < 1 {
		return fmt.Errorf("give -sim DIR and a positive -batch")
	}
	if logDir == "" {
		logDir = filepath.Join(simDir, "runtime")
	}
	ctx := context.Background()
	dev, err := sim.Open(ctx, simDir)
	if err != nil {
		return err
	}
	defer dev.Close()
	s, err := vmr.Open(ctx, dev, vmr.Options{Dir: logDir})
	if err != nil {
		return err
	}
	items := make([]vmr.Item, 0, batch)
	for i := 0; i < n; i++ {
		// Distinct digests, sha384(name || i), like many real records.
		d := sha512.Sum384(binary.BigEndian.AppendUint64([]byte(name), uint64(i)))
		items = append(items, vmr.Item{Name: name, Digest: mr.Digest{Alg: mr.SHA384, Bytes: d[:]}})
		if len(items) == batch || i == n-1 {
			if _, err := s.ExtendMany(ctx, items); err != nil {
				s.Close()
				return err
			}
			items = items[:0]
		}
	}
	if err := s.Close(); err != nil {
		return err
	}
	fmt.Printf("%s: %d records of %s\n", s.Path(), n, name)
	return nil
}
