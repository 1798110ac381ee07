package tcg

import (
	"github.com/google/go-eventlog/register"

	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
)

func toValues(xs []corpus.Expectation) []mr.Value {
	out := make([]mr.Value, len(xs))
	for i, x := range xs {
		out[i] = mr.Value{Register: mr.Register{Name: x.Register, Alg: x.Digest.Alg}, Digest: x.Digest}
	}
	return out
}

// gtcgHash maps a bank to go-eventlog's hash.
func gtcgHash(a mr.Alg) register.HashAlg { return register.HashAlg(a) }
