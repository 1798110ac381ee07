package ima

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/internal/imatest"
	"github.com/ccmr-dev/ccmr/mr"
)

// The parallel replay (one goroutine per bank) gives exactly the sequential
// one: values of every PCR and bank, and the first bad entry.
func TestParallelEqualsSequential(t *testing.T) {
	var specs []imatest.Spec
	for i := 0; i < 3000; i++ {
		s := imatest.Mixed(i)
		if i%500 == 7 {
			s.PCR = 11 // a second PCR
		}
		specs = append(specs, s)
	}
	list := imatest.Binary(specs, binary.LittleEndian)
	bad := bytes.Clone(list)
	bad[len(bad)/2] ^= 1
	banks := []mr.Alg{mr.SHA1, mr.SHA256, mr.SHA384, mr.SHA512}
	run := func(data []byte, procs int) (*eventlog.Replay, error) {
		old := runtime.GOMAXPROCS(procs)
		defer runtime.GOMAXPROCS(old)
		return Replay(context.Background(), NewBinaryReader(bytes.NewReader(data), Options{}), ReplayOptions{Banks: banks})
	}
	for _, data := range [][]byte{list, bad} {
		seq, errS := run(data, 1)
		par, errP := run(data, 4)
		if (errS == nil) != (errP == nil) {
			t.Fatalf("errors differ: %v / %v", errS, errP)
		}
		var ms, mp *eventlog.Mismatch
		if errors.As(errS, &ms) != errors.As(errP, &mp) || (ms != nil && ms.Record != mp.Record) {
			t.Fatalf("first bad entry differs: %v / %v", errS, errP)
		}
		if seq == nil || par == nil {
			if seq != par {
				t.Fatalf("results differ: %v / %v", seq, par)
			}
			continue
		}
		if len(seq.Registers) != len(par.Registers) || len(seq.Registers) != 2*len(banks) {
			t.Fatalf("registers: %d / %d", len(seq.Registers), len(par.Registers))
		}
		for i := range seq.Registers {
			if seq.Registers[i].Register.Name != par.Registers[i].Register.Name || !seq.Registers[i].Digest.Equal(par.Registers[i].Digest) {
				t.Fatalf("register %d: %v / %v", i, seq.Registers[i], par.Registers[i])
			}
		}
	}
}
