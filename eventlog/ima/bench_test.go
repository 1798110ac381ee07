package ima

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/internal/imatest"
	"github.com/ccmr-dev/ccmr/mr"
)

const benchEntries = 1_000_000

// benchList writes the 1,000,000-entry ima-ng list into b's temporary
// folder (once per benchmark) and returns its path and size.
func benchList(b *testing.B) (string, int64) {
	b.Helper()
	path := filepath.Join(b.TempDir(), "binary_runtime_measurements")
	if st, err := os.Stat(path); err == nil {
		return path, st.Size()
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	n, err := imatest.WriteBinary(f, benchEntries, binary.LittleEndian, imatest.NG)
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return path, n
}

// BenchmarkReplayBinary replays a 1,000,000-entry ima-ng list from disk into
// PCR 10's sha1 and sha256 banks (checking every listed hash), as
// `ccmr log replay` does. It reports MB/s of list and the heap in use at the
// end (flat: the reader streams).
func BenchmarkReplayBinary(b *testing.B) {
	path, size := benchList(b)
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r, c, err := OpenFile(path, eventlog.FormatIMABinary, Options{})
		if err != nil {
			b.Fatal(err)
		}
		res, err := Replay(context.Background(), r, ReplayOptions{})
		c.Close()
		if err != nil || res.Events != benchEntries {
			b.Fatalf("%v, %d entries", err, res.Events)
		}
	}
	b.StopTimer()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
}

// BenchmarkReplayVirtual folds the same list into mr_ima.
func BenchmarkReplayVirtual(b *testing.B) {
	path, size := benchList(b)
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		r, c, err := OpenFile(path, eventlog.FormatIMABinary, Options{})
		if err != nil {
			b.Fatal(err)
		}
		_, err = ReplayVirtual(context.Background(), r, VirtualOptions{})
		c.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBareHash is the floor for BenchmarkReplayBinary: the same hashing
// (sha1 and sha256 of every entry's template data, and one sha1 and one
// sha256 extend per entry) over template data already in memory, with no
// parsing or I/O. MB/s are per byte of list, as above.
func BenchmarkBareHash(b *testing.B) {
	path, size := benchList(b)
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	// Template data spans, found once outside the timer.
	spans := make([][2]int32, 0, benchEntries)
	for off := 0; off < len(data); {
		nl := int(binary.LittleEndian.Uint32(data[off+24:]))
		dl := int(binary.LittleEndian.Uint32(data[off+28+nl:]))
		start := off + 32 + nl
		spans = append(spans, [2]int32{int32(start), int32(start + dl)})
		off = start + dl
	}
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		h1, h2 := sha1.New(), sha256.New()
		v1, v2 := make([]byte, 20, 64), make([]byte, 32, 64)
		var s1 [20]byte
		var s2 [32]byte
		for _, sp := range spans {
			td := data[sp[0]:sp[1]]
			h1.Reset()
			h1.Write(td)
			h1.Sum(s1[:0])
			h1.Reset()
			h1.Write(v1)
			h1.Write(s1[:])
			v1 = h1.Sum(v1[:0])
			h2.Reset()
			h2.Write(td)
			h2.Sum(s2[:0])
			h2.Reset()
			h2.Write(v2)
			h2.Write(s2[:])
			v2 = h2.Sum(v2[:0])
		}
	}
}

// BenchmarkEvmctl runs `evmctl ima_measurement` on the same list against the
// PCR values ccmr computes (so it is also a 1,000,000-entry agreement check).
func BenchmarkEvmctl(b *testing.B) {
	evm, err := exec.LookPath("evmctl")
	if err != nil {
		b.Skip("evmctl not found")
	}
	path, size := benchList(b)
	r, c, err := OpenFile(path, eventlog.FormatIMABinary, Options{})
	if err != nil {
		b.Fatal(err)
	}
	res, err := Replay(context.Background(), r, ReplayOptions{})
	c.Close()
	if err != nil {
		b.Fatal(err)
	}
	args := []string{"ima_measurement"}
	for _, v := range res.Registers {
		f := filepath.Join(b.TempDir(), "pcrs-"+v.Register.Alg.String())
		pcrs := map[int][]byte{v.Register.Index: v.Digest.Bytes}
		if err := os.WriteFile(f, []byte(imatest.PCRFile(pcrs, v.Register.Alg.Size())), 0o600); err != nil {
			b.Fatal(err)
		}
		args = append(args, "--pcrs", v.Register.Alg.String()+","+f)
	}
	args = append(args, path)
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		if out, err := exec.Command(evm, args...).CombinedOutput(); err != nil {
			b.Fatalf("evmctl disagrees with ccmr on the 1,000,000-entry list: %v: %s", err, out)
		}
	}
}

var _ = mr.SHA1

// BenchmarkCheckSignatures verifies 20,000 RSA-2048 ima-sig signatures on
// every core (b.N passes over the list); it reports verifies per second.
func BenchmarkCheckSignatures(b *testing.B) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	sg, err := imatest.NewRSASigner(key, 64)
	if err != nil {
		b.Fatal(err)
	}
	pub, _ := sg.PublicPEM()
	keys, err := ParseKeys(pub, "key")
	if err != nil {
		b.Fatal(err)
	}
	const n = 20000
	var list bytes.Buffer
	if _, err := imatest.WriteBinary(&list, n, binary.LittleEndian, sg.Sig); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		rep, err := CheckSignatures(NewBinaryReader(bytes.NewReader(list.Bytes()), Options{}), "list", keys, -1, false)
		if err != nil || rep.Verified != n-1 {
			b.Fatalf("%+v, %v", rep, err)
		}
	}
	b.ReportMetric(float64(b.N*(n-1))/b.Elapsed().Seconds(), "verify/s")
}
