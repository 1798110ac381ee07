package aael

import (
	"bytes"
	"crypto/sha512"
	"testing"

	"github.com/ccmr-dev/ccmr/mr"
)

// BenchmarkEncodeReplay encodes a 100,000-record log (mr_ima extends, as
// the IMA forwarder writes them) and replays it, deriving mr_ima.
func BenchmarkEncodeReplay(b *testing.B) {
	const n = 100000
	recs := make([]Record, n)
	for i := range recs {
		d := sha512.Sum384([]byte{byte(i), byte(i >> 8), byte(i >> 16)})
		recs[i], _ = ExtendRecord("mr_ima", mr.Digest{Alg: mr.SHA384, Bytes: d[:]})
	}
	buf, _ := AppendInit(nil, 4, mr.Zero(mr.SHA384))
	for _, r := range recs {
		buf, _, _ = AppendEntry(buf, 4, mr.SHA384, r)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		out, _ := AppendInit(buf[:0:0], 4, mr.Zero(mr.SHA384))
		var err error
		for _, r := range recs {
			if out, _, err = AppendEntry(out, 4, mr.SHA384, r); err != nil {
				b.Fatal(err)
			}
		}
		res, err := Replay(NewReader(bytes.NewReader(out), Options{}), ReplayOptions{})
		if err != nil || res.Counts["mr_ima"] != n {
			b.Fatal(err)
		}
	}
}
