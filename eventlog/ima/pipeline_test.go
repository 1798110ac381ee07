package ima

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/internal/imatest"
	"github.com/ccmr-dev/ccmr/mr"
)

// withProcs runs f with GOMAXPROCS procs: 1 takes the sequential code, more
// the pipeline.
func withProcs[T any](procs int, f func() T) T {
	old := runtime.GOMAXPROCS(procs)
	defer runtime.GOMAXPROCS(old)
	return f()
}

// withBlock makes the pipeline cut lists into blocks of n bytes.
func withBlock(t testing.TB, n int) {
	old := blockSize
	blockSize = n
	t.Cleanup(func() { blockSize = old })
}

// replayText is everything a replay returns, as text: registers, entry count
// and the error, word for word.
func replayText(res *eventlog.Replay, err error) string {
	var b strings.Builder
	if res != nil {
		fmt.Fprintf(&b, "%d events\n", res.Events)
		for _, v := range res.Registers {
			fmt.Fprintf(&b, "%s %v\n", v.Register.Name, v.Digest)
		}
	} else {
		b.WriteString("no result\n")
	}
	var le *eventlog.Error
	var mm *eventlog.Mismatch
	switch {
	case errors.As(err, &le):
		fmt.Fprintf(&b, "error record %d offset %d: ", le.Record, le.Offset)
	case errors.As(err, &mm):
		fmt.Fprintf(&b, "mismatch record %d offset %d: ", mm.Record, mm.Offset)
	}
	fmt.Fprintf(&b, "%v", err)
	return b.String()
}

type replayCase struct {
	name string
	src  func() Source
	opts ReplayOptions
}

// checkSame replays c on one core and on several, with blocks of several
// sizes, and wants the same text.
func checkSame(t *testing.T, c replayCase) {
	t.Helper()
	want := withProcs(1, func() string { return replayText(Replay(context.Background(), c.src(), c.opts)) })
	for _, procs := range []int{2, 3} {
		for _, bs := range []int{64, 4096, 512 << 10} {
			blockSize = bs
			got := withProcs(procs, func() string { return replayText(Replay(context.Background(), c.src(), c.opts)) })
			if got != want {
				t.Fatalf("%s, %d procs, %d-byte blocks:\n%s\nsequential:\n%s", c.name, procs, bs, got, want)
			}
		}
	}
}

func mixedList(n int, order binary.ByteOrder) []byte {
	specs := make([]imatest.Spec, n)
	for i := range specs {
		specs[i] = imatest.Mixed(i)
		if i%97 == 5 {
			specs[i].PCR = 11
		}
	}
	return imatest.Binary(specs, order)
}

// The pipeline gives the sequential replay's registers and errors, word for
// word, on good lists, lists cut anywhere, lists with a byte changed
// anywhere, read errors, short reads and entries larger than a block.
func TestPipelineEqualsSequential(t *testing.T) {
	withBlock(t, blockSize)
	banks := ReplayOptions{Banks: []mr.Alg{mr.SHA1, mr.SHA256, mr.SHA384}}
	le, be := mixedList(300, binary.LittleEndian), mixedList(300, binary.BigEndian)
	binList := func(b []byte) func() Source {
		return func() Source { return NewBinaryReader(bytes.NewReader(b), Options{File: "list"}) }
	}
	huge := imatest.Binary([]imatest.Spec{imatest.Mixed(1), {Template: "ima-buf", Name: "big", Buf: bytes.Repeat([]byte{7}, 3<<20)}, imatest.Mixed(2)}, binary.LittleEndian)
	cases := []replayCase{
		{"little-endian", binList(le), ReplayOptions{File: "f"}},
		{"big-endian", binList(be), banks},
		{"one bank", binList(le), ReplayOptions{Banks: []mr.Alg{mr.SHA256}}},
		{"sha1 padded", binList(le), ReplayOptions{Banks: []mr.Alg{mr.SHA1, mr.SHA256}, SHA1Padded: true}},
		{"empty", binList(nil), banks},
		{"huge entry", binList(huge), banks},
		{"huge entry cut", binList(huge[:2<<20]), banks},
		{"one byte reads", func() Source { return NewBinaryReader(iotest.OneByteReader(bytes.NewReader(le)), Options{}) }, banks},
		{"read error", func() Source {
			return NewBinaryReader(io.MultiReader(bytes.NewReader(le[:len(le)/2]), iotest.ErrReader(errors.New("disk on fire"))), Options{})
		}, banks},
		{"ascii", func() Source {
			specs := make([]imatest.Spec, 300)
			for i := range specs {
				specs[i] = imatest.Mixed(i)
			}
			return NewASCIIReader(strings.NewReader(imatest.ASCIIList(specs)), Options{})
		}, banks},
		{"after 5 entries read", func() Source {
			r := NewBinaryReader(bytes.NewReader(le), Options{})
			for range 5 {
				if _, err := r.Next(); err != nil {
					panic(err)
				}
			}
			return r
		}, banks},
		{"expected value", binList(le), ReplayOptions{Expect: []mr.Value{{Register: mr.Register{Name: "pcr10", Alg: mr.SHA256}, Digest: mr.Zero(mr.SHA256)}}}},
	}
	for _, c := range cases {
		checkSame(t, c)
	}
	// Cut anywhere (near entry boundaries and inside entries), and a byte
	// changed anywhere: lengths, PCR fields, names, field lengths, hashes.
	for i := 0; i < len(le); i += 1 + i/8 {
		checkSame(t, replayCase{fmt.Sprintf("cut at %d", i), binList(le[:i]), banks})
		bad := bytes.Clone(le)
		bad[i] ^= 0x41
		checkSame(t, replayCase{fmt.Sprintf("byte %d changed", i), binList(bad), banks})
	}
}

// A cancelled context stops the pipeline with the context's error.
func TestPipelineCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := withProcs(2, func() error {
		_, err := Replay(ctx, NewBinaryReader(bytes.NewReader(mixedList(50, binary.LittleEndian)), Options{}), ReplayOptions{})
		return err
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled replay: %v", err)
	}
}

// sigText is what CheckSignatures returns, as text.
func sigText(rep SignatureReport, err error) string {
	return fmt.Sprintf("%d verified %d unsigned: %v", rep.Verified, rep.Unsigned, err)
}

// Signatures are verified in the pipeline with CheckSignatures' results:
// the same first failure (bad signature, unknown key, unsigned entry with
// requireAll, a signature that does not parse, an entry that does not),
// the same counts, with and without a limit; ReplaySigned gives the replay's
// error first and the signatures' otherwise.
func TestPipelineSignatures(t *testing.T) {
	withBlock(t, blockSize)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	sg, err := imatest.NewRSASigner(key, 5)
	if err != nil {
		t.Fatal(err)
	}
	pemKey, _ := sg.PublicPEM()
	keys, err := ParseKeys(pemKey, "key.pem")
	if err != nil || keys[0].ID != sg.KeyID {
		t.Fatalf("keys %v (want ID %08x): %v", keys, sg.KeyID, err)
	}
	build := func(mod func(i int, s *imatest.Spec)) []byte {
		specs := make([]imatest.Spec, 120)
		for i := range specs {
			specs[i] = sg.Sig(i)
			if i%11 == 4 {
				specs[i] = imatest.NG(i) // unsigned
			}
			if mod != nil {
				mod(i, &specs[i])
			}
		}
		return imatest.Binary(specs, binary.LittleEndian)
	}
	good := build(nil)
	lists := map[string][]byte{
		"good": good,
		"bad signature at 71": build(func(i int, s *imatest.Spec) {
			if i == 71 || i == 90 {
				s.Sig = bytes.Clone(s.Sig)
				s.Sig[len(s.Sig)-1] ^= 1
			}
		}),
		"unknown key at 33": build(func(i int, s *imatest.Spec) {
			if i == 33 {
				s.Sig = bytes.Clone(s.Sig)
				s.Sig[5] ^= 1
			}
		}),
		"unparsable signature at 50": build(func(i int, s *imatest.Spec) {
			if i == 50 {
				s.Sig = s.Sig[:20]
			}
		}),
		"bad listed hash at 12, bad signature at 80": build(func(i int, s *imatest.Spec) {
			if i == 80 {
				s.Sig = bytes.Clone(s.Sig)
				s.Sig[len(s.Sig)-1] ^= 1
			}
		}),
		"cut": good[:len(good)*2/3],
	}
	bad := lists["bad listed hash at 12, bad signature at 80"]
	bad[bytes.Index(bad, []byte("signed0000012"))+3] ^= 1
	for name, list := range lists {
		for _, requireAll := range []bool{false, true} {
			for _, limit := range []int{-1, 0, 40, 75} {
				src := func() Source { return NewBinaryReader(bytes.NewReader(list), Options{File: "list"}) }
				want := withProcs(1, func() string { return sigText(CheckSignatures(src(), "list", keys, limit, requireAll)) })
				for _, bs := range []int{128, 8192} {
					blockSize = bs
					got := withProcs(2, func() string { return sigText(CheckSignatures(src(), "list", keys, limit, requireAll)) })
					if got != want {
						t.Fatalf("%s, requireAll %v, limit %d, %d-byte blocks: %s, want %s", name, requireAll, limit, bs, got, want)
					}
				}
			}
			// ReplaySigned = Replay, then CheckSignatures if the replay passed.
			open := func() Source { return NewBinaryReader(bytes.NewReader(list), Options{File: "list"}) }
			opts := ReplayOptions{File: "list"}
			var replayErr error
			want := withProcs(1, func() string {
				res, err := Replay(context.Background(), open(), opts)
				replayErr = err
				if err != nil {
					return replayText(res, err)
				}
				return replayText(res, nil) + "\n" + sigText(CheckSignatures(open(), "list", keys, -1, requireAll))
			})
			for _, procs := range []int{1, 2} {
				got := withProcs(procs, func() string {
					res, rep, err := ReplaySigned(context.Background(), open(), opts, keys, requireAll)
					if replayErr != nil {
						return replayText(res, err)
					}
					return replayText(res, nil) + "\n" + sigText(rep, err)
				})
				if got != want {
					t.Fatalf("ReplaySigned %s, requireAll %v, %d procs:\n%s\nwant:\n%s", name, requireAll, procs, got, want)
				}
			}
		}
	}
	if s := sigText(CheckSignatures(NewBinaryReader(bytes.NewReader(lists["bad signature at 71"]), Options{}), "list", keys, -1, false)); !strings.Contains(s, "IMA entry 71") {
		t.Fatalf("bad signature: %s", s)
	}
}

// FuzzPipeline: whatever the bytes, the pipeline gives the sequential
// replay's result and error, word for word, with blocks small enough that
// every list is cut at many places.
func FuzzPipeline(f *testing.F) {
	f.Add(mixedList(14, binary.LittleEndian), uint16(64))
	f.Add(mixedList(14, binary.BigEndian), uint16(100))
	f.Add(mixedList(3, binary.LittleEndian)[:300], uint16(33))
	f.Fuzz(func(t *testing.T, data []byte, bs uint16) {
		withBlock(t, 1+int(bs))
		opts := ReplayOptions{Banks: []mr.Alg{mr.SHA1, mr.SHA256}}
		banks, _ := replayBanks(opts, nil)
		src := func() Source { return NewBinaryReader(bytes.NewReader(data), Options{File: "fuzz"}) }
		// The two paths are called directly: switching GOMAXPROCS per input
		// slows the fuzzer to a crawl.
		want := replayText(replaySeq(context.Background(), src(), opts, banks))
		got := replayText(replayParallel(context.Background(), src(), opts, banks))
		if got != want {
			t.Fatalf("pipeline:\n%s\nsequential:\n%s", got, want)
		}
		want = sigText(checkSignaturesSeq(src(), "fuzz", nil, -1, true))
		o, rep, err := runPipeline(context.Background(), src(), pipeOptions{file: "fuzz", sigs: true, requireAll: true, limit: -1})
		if err == nil {
			_, err = o.stopAt()
		}
		if got = sigText(rep, err); got != want {
			t.Fatalf("signatures in the pipeline: %s, sequential: %s", got, want)
		}
	})
}

// Empty template data in a binary list is known (and hashed), in the first
// entry as in any other: it was read as unknown (nil) in the first entry,
// which made a replay refuse the list for its non-sha1 banks.
func TestEmptyTemplateData(t *testing.T) {
	one := imatest.Spec{Template: "x-empty", Fields: [][]byte{}}
	list := imatest.Binary([]imatest.Spec{one, one}, binary.LittleEndian)
	r := NewBinaryReader(bytes.NewReader(list), Options{})
	for i := range 2 {
		e, err := r.Next()
		if err != nil || e.TemplateData == nil || len(e.TemplateData) != 0 {
			t.Fatalf("entry %d: %+v, %v", i, e, err)
		}
	}
	res, err := Replay(context.Background(), NewBinaryReader(bytes.NewReader(list), Options{}), ReplayOptions{})
	if err != nil || res.Events != 2 {
		t.Fatalf("replay: %v, %v", res, err)
	}
}

// The pipeline's memory does not grow with the list: four times the entries
// allocate no more than a few blocks more (the bytes a replay allocates are
// its pool of blocks, not a copy per entry).
func TestPipelineMemoryFlat(t *testing.T) {
	alloc := func(n int) uint64 {
		list := make([]byte, 0, n*130)
		for i := range n {
			list = imatest.NG(i).AppendBinary(list, binary.LittleEndian)
		}
		return withProcs(2, func() uint64 {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			res, err := Replay(context.Background(), NewBinaryReader(bytes.NewReader(list), Options{}), ReplayOptions{})
			runtime.ReadMemStats(&after)
			if err != nil || res.Events != n {
				t.Fatalf("%d entries: %v", n, err)
			}
			return after.TotalAlloc - before.TotalAlloc
		})
	}
	small, big := alloc(40000), alloc(160000)
	if big > small+uint64(2*blockSize) {
		t.Fatalf("a replay of 160000 entries allocates %d bytes, of 40000 entries %d", big, small)
	}
}
