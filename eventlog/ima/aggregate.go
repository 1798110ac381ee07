package ima

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sort"

	"github.com/ccmr-dev/ccmr/mr"
)

// Aggregate folds the sorted set of distinct measurement digests of the
// first limit entries of src (all when limit < 0) into one value, so that a
// workload whose file-access order varies between runs still has one golden
// value: each entry's measurement digest is sha384(template data) (what
// mr_ima records), duplicates count once, and the aggregate is sha384 of the
// digests concatenated in ascending byte order. It returns the aggregate and
// the number of distinct digests.
func Aggregate(ctx context.Context, src Source, limit int) (mr.Digest, int, error) {
	var ds [][48]byte
	for n := 0; limit < 0 || n < limit; n++ {
		if n&1023 == 0 && ctx.Err() != nil {
			return mr.Digest{}, 0, ctx.Err()
		}
		e, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return mr.Digest{}, 0, err
		}
		d, err := VirtualDigest(e)
		if err != nil {
			return mr.Digest{}, 0, err
		}
		var a [48]byte
		copy(a[:], d.Bytes)
		ds = append(ds, a)
	}
	sort.Slice(ds, func(i, j int) bool { return bytes.Compare(ds[i][:], ds[j][:]) < 0 })
	h := mr.SHA384.New()
	distinct := 0
	for i := range ds {
		if i > 0 && ds[i] == ds[i-1] {
			continue
		}
		h.Write(ds[i][:])
		distinct++
	}
	return mr.Digest{Alg: mr.SHA384, Bytes: h.Sum(nil)}, distinct, nil
}
