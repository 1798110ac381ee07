package ima

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/ccmr-dev/ccmr/internal/imatest"
	"github.com/ccmr-dev/ccmr/mr"
)

// TestQuotedPrefix: a list read after a quote holds entries the quote does
// not cover; QuotedPrefix finds the quoted prefix, across PCRs, and says
// when no prefix is quoted.
func TestQuotedPrefix(t *testing.T) {
	var list []byte
	var ends []int64
	for i, name := range []string{"boot_aggregate", "/bin/a", "/bin/b", "/bin/c", "/bin/d"} {
		s := imatest.Spec{Template: "ima-ng", FileAlg: "sha256", Name: name}
		if i == 2 {
			s.PCR = 11
		}
		list = s.AppendBinary(list, binary.LittleEndian)
		ends = append(ends, int64(len(list)))
	}
	quoteAt := func(n int) map[int]mr.Digest {
		res, err := Replay(context.Background(), NewBinaryReader(bytes.NewReader(list[:ends[n-1]]), Options{}), ReplayOptions{Banks: []mr.Alg{mr.SHA256}})
		if err != nil {
			t.Fatal(err)
		}
		q := map[int]mr.Digest{}
		for _, v := range res.Registers {
			if p, err := parsePCRName(v.Register.Name); err == nil {
				q[p] = v.Digest
			}
		}
		return q
	}
	for _, n := range []int{1, 2, 3, 4, 5} {
		got, off, ok, err := QuotedPrefix(context.Background(), NewBinaryReader(bytes.NewReader(list), Options{}), mr.SHA256, quoteAt(n), false)
		if err != nil || !ok || got != n || off != ends[n-1] {
			t.Errorf("quote after %d entries: QuotedPrefix = %d, %d, %v, %v; want %d, %d", n, got, off, ok, err, n, ends[n-1])
		}
	}
	other := quoteAt(5)
	other[10] = mr.SHA256.Sum([]byte("another boot"))
	if _, _, ok, err := QuotedPrefix(context.Background(), NewBinaryReader(bytes.NewReader(list), Options{}), mr.SHA256, other, false); err != nil || ok {
		t.Errorf("a quote of another boot: ok=%v err=%v, want no prefix", ok, err)
	}
}
