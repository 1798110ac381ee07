package ima

import (
	"context"
	"io"

	"github.com/ccmr-dev/ccmr/mr"
)

// QuotedPrefix finds how much of a list a quote covers. The kernel keeps
// appending to the list, so a list read after a TPM quote may hold entries
// the quote does not: QuotedPrefix folds the entries of rd into the PCRs
// they name in bank alg and returns the number of entries, and the byte
// offset after them, of the longest prefix after which every PCR the prefix
// extends equals its quoted value. ok is false when no prefix does (a list
// of another boot, or a tampered one): the caller keeps the whole list and
// the verifier reports why.
//
// This is for the guest that builds a bundle; the verifier replays the list
// it is given and trusts nothing QuotedPrefix decided.
func QuotedPrefix(ctx context.Context, rd *Reader, alg mr.Alg, quoted map[int]mr.Digest, sha1Padded bool) (entries int, offset int64, ok bool, err error) {
	h := alg.New()
	var sum [64]byte
	running := map[int]*mr.Extender{}
	wrong := 0 // PCRs the entries so far extend whose value is not the quoted one
	matches := func(pcr int, ext *mr.Extender) bool {
		want, q := quoted[pcr]
		return q && ext.Value().Equal(want)
	}
	for n := 0; ; n++ {
		if n&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return 0, 0, false, err
			}
		}
		e, err := rd.Next()
		if err == io.EOF {
			return entries, offset, ok, nil
		}
		if err != nil {
			return 0, 0, false, err
		}
		ext := running[e.PCR]
		before := false // a new PCR counts as wrong from here on
		if ext == nil {
			ext = mr.NewExtender(mr.Zero(alg))
			running[e.PCR] = ext
			wrong++
		} else {
			before = matches(e.PCR, ext)
		}
		d, err := appendTemplateHash(sum[:0], e, alg, sha1Padded, h)
		if err != nil {
			return 0, 0, false, err
		}
		if err := ext.Extend(d); err != nil {
			return 0, 0, false, err
		}
		if after := matches(e.PCR, ext); after && !before {
			wrong--
		} else if !after && before {
			wrong++
		}
		if wrong == 0 {
			entries, offset, ok = n+1, rd.Offset(), true
		}
	}
}
