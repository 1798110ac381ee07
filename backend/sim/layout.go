package sim

import (
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/simverify"
)

// Layout names the set of registers a sim device emulates (simverify.Layout,
// where the verifier reads it from signed statements).
type Layout = simverify.Layout

// The layouts (see simverify).
const (
	LayoutTDX = simverify.LayoutTDX
	LayoutTPM = simverify.LayoutTPM
)

// ParseLayout parses "tdx" or "tpm".
func ParseLayout(s string) (Layout, error) { return simverify.ParseLayout(s) }

// initialValue returns the value register r holds when the state is created:
// zeros, except PCRs 17..22 of the TPM layout, which a PC Client TPM sets to
// all 0xFF at power-on (they read zero only after a DRTM launch).
func initialValue(r mr.Register) []byte {
	b := make([]byte, r.Size)
	if r.Name[:3] == "pcr" {
		copy(b, mr.TPMResetValue(r.Index, r.Alg).Bytes)
	}
	return b
}

// extendableNames lists the names of the extendable registers of rs once each,
// in order, for error messages.
func extendableNames(rs []mr.Register) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range rs {
		if r.Flags&mr.Extendable != 0 && !seen[r.Name] {
			seen[r.Name] = true
			out = append(out, r.Name)
		}
	}
	return out
}
