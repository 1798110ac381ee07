package verifier

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/snpverify"
	"github.com/ccmr-dev/ccmr/verifier/tdxverify"
)

// Layer-0 judgements no corpus report reaches (issue 15 items 4 and 8):
// an Azure HCL SNP report from VMPL 1 or of a debug guest, and a TDX TCB
// status other than UpToDate that an option allowed.

func newRun(o Options) *run {
	b := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformSNP}
	return &run{b: b, opts: o, rep: newReport(b, "t"), trusted: map[regKey]mr.Digest{}}
}

// The Azure HCL path requires VMPL 0 and no debugging whatever the policy
// says: a guest at VMPL 1 under a paravisor, or a debug guest, chooses its
// own report data.
func TestAttack04_HCLVMPLAndDebug(t *testing.T) {
	meas := strings.Repeat("ab", 48)
	res := &snpverify.Result{VMPL: 1}
	copy(res.Measurement[:], bytes.Repeat([]byte{0xab}, 48))
	one := uint32(1)
	pol := &Policy{SNP: &SNPPolicy{VMPL: &one, AllowDebug: true, Measurement: []string{meas}}}
	r := newRun(Options{Policy: pol})
	l := &LayerResult{}
	if err := r.judgeSNP(res, l, false); err != nil {
		t.Fatalf("VMPL 1 allowed by the policy outside the HCL path: %v", err)
	}
	if err := r.judgeSNP(res, l, true); err == nil || !strings.Contains(err.Error(), "VMPL 1") {
		t.Fatalf("HCL path at VMPL 1: %v", err)
	}
	res.VMPL, res.DebugAllowed = 0, true
	if err := r.judgeSNP(res, l, true); err == nil || !strings.Contains(err.Error(), "debugging") {
		t.Fatalf("HCL path with a debug guest: %v", err)
	}
	res.DebugAllowed = false
	if err := r.judgeSNP(res, l, true); err != nil {
		t.Fatalf("honest HCL SNP report: %v", err)
	}
}

// A TCB status other than UpToDate, allowed by --allow-tcb, weakens the
// verdict (it was a plain TRUSTED).
func TestAttack08_AllowedTCBStatusWeakens(t *testing.T) {
	r := newRun(Options{AllowedTCB: []string{tdxverify.StatusSWHardeningNeeded}})
	l := &LayerResult{}
	r.tcbStatus(&tdxverify.Result{TCBStatus: tdxverify.StatusUpToDate}, l)
	if len(r.rep.Weakened) != 0 {
		t.Fatalf("UpToDate weakened: %v", r.rep.Weakened)
	}
	r.tcbStatus(&tdxverify.Result{TCBStatus: tdxverify.StatusSWHardeningNeeded, Advisories: []string{"INTEL-SA-00615"}}, l)
	if len(r.rep.Weakened) != 1 || !strings.Contains(r.rep.Weakened[0], "SWHardeningNeeded allowed") || !strings.Contains(r.rep.Weakened[0], "INTEL-SA-00615") {
		t.Fatalf("weakened: %v", r.rep.Weakened)
	}
}
