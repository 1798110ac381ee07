package verifier

import (
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/mr"
)

// runtimeOnPCR is a TPM bundle whose only log is a one-record runtime log
// on PCR pcr (no INIT entry), quoted at the value a replay from start
// gives, and the options that pin its AK.
func runtimeOnPCR(t *testing.T, pcr int, start mr.Digest) (*bundle.Bundle, Options) {
	t.Helper()
	name := aaelPCR(pcr)
	b, d, err := aael.AppendEntry(nil, uint32(pcr), mr.SHA256, aael.Record{Domain: "mr_a", Operation: "extend", Content: "sha256/" + strings.Repeat("cd", 32)})
	if err != nil {
		t.Fatal(err)
	}
	ext := mr.NewExtender(start)
	ext.Extend(d.Bytes)
	nonce := []byte("reset value nonce")
	q, ak := tpmQuoteOver(t, nonce, map[int][]byte{pcr: ext.Value().Bytes})
	nb := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTPM, Nonce: nonce,
		Evidence: bundle.Evidence{PublicKey: string(ak), TPMQuotes: []bundle.TPMQuote{q}},
		Logs:     []bundle.Log{{Format: "runtime", Register: name, Source: name + ".log", Data: b}}}
	return nb, Options{TrustedKeys: [][]byte{ak}, Nonce: nonce}
}

func aaelPCR(i int) string { return aael.PCRName(uint32(i)) }

// A runtime log on PCR 17 (a D-RTM PCR, all ones at reset) without INIT
// replays from all ones: the quote of H(ones || d) is trusted with its start
// proven, and a quote of H(zeros || d) is refused.
func TestRuntimeLogDRTMStartsAtOnes(t *testing.T) {
	ones := mr.TPMResetValue(17, mr.SHA256)
	b, o := runtimeOnPCR(t, 17, ones)
	rep := verifyT(t, b, o)
	if !rep.Trusted || len(rep.Weakened) > 0 || !strings.Contains(reportText(rep), "starts at the reset value of pcr17") {
		t.Fatalf("a pcr17 log from all ones is not plainly trusted:\n%s", reportText(rep))
	}
	b, o = runtimeOnPCR(t, 17, mr.Zero(mr.SHA256))
	mustRefuse(t, b, o, "a pcr17 log replayed from zeros")
}

// A runtime log on a register the guest can reset (PCR 16, 23) fails,
// however well it replays; --accept-unverified-history makes it a weakened
// pass that names the register and why.
func TestRuntimeLogOnResettablePCR(t *testing.T) {
	for _, pcr := range []int{16, 23} {
		b, o := runtimeOnPCR(t, pcr, mr.Zero(mr.SHA256))
		rep := mustRefuse(t, b, o, "a runtime log on a resettable PCR")
		name := aaelPCR(pcr)
		if rep == nil || !strings.Contains(reportText(rep), name+", which the guest can reset") {
			t.Fatalf("%s: the failure does not say the register is resettable:\n%s", name, reportText(rep))
		}
		o.AcceptUnverifiedHistory = true
		rep = verifyT(t, b, o)
		if !rep.Trusted || !strings.Contains(strings.Join(rep.Weakened, "\n"), name+": resettable by the guest") {
			t.Fatalf("%s with --accept-unverified-history: want a weakened pass naming it:\n%s", name, reportText(rep))
		}
	}
	// PCR 14, the default, passes plainly.
	b, o := runtimeOnPCR(t, 14, mr.Zero(mr.SHA256))
	if rep := verifyT(t, b, o); !rep.Trusted || len(rep.Weakened) > 0 {
		t.Fatalf("a pcr14 log is not plainly trusted:\n%s", reportText(rep))
	}
}
