package verifier

// The IMA list's per-PCR counts a monitor state keeps (IMAState.PCRs): a
// resumed run knows which PCRs the whole list extends from the new entries
// alone, and hides nothing by it (issue 17 item 2).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"maps"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/internal/imatest"
	"github.com/ccmr-dev/ccmr/mr"
)

// pcrBundle is a TPM quote of PCR 0-10 and 14 (the runtime log's backing
// PCR) over list, whose runtime log carries mr_ima records for the first
// records entries; the machine is named "m" so that bundles signed by
// other keys share one state entry.
func pcrBundle(t *testing.T, list []byte, records int) (*bundle.Bundle, Options) {
	t.Helper()
	pcr10, pcr14 := make([]byte, 32), make([]byte, 32)
	var rt []byte
	rd := ima.NewBinaryReader(bytes.NewReader(list), ima.Options{})
	for n := 0; ; n++ {
		e, err := rd.Next()
		if err != nil {
			break
		}
		if e.PCR == 10 {
			d, err := ima.TemplateHash(e, mr.SHA256, false)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.Sum256(append(append([]byte(nil), pcr10...), d.Bytes...))
			pcr10 = h[:]
		}
		if n >= records {
			continue
		}
		vd, err := ima.VirtualDigest(e)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := aael.ExtendRecord(ima.VirtualName, vd)
		if err != nil {
			t.Fatal(err)
		}
		var d mr.Digest
		if rt, d, err = aael.AppendEntry(rt, 14, mr.SHA256, rec); err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(append(append([]byte(nil), pcr14...), d.Bytes...))
		pcr14 = h[:]
	}
	pcrs := map[int][]byte{10: pcr10, 14: pcr14}
	for i := 0; i < 10; i++ {
		pcrs[i] = make([]byte, 32)
	}
	nonce := []byte("pcrs")
	q, ak := tpmQuoteOver(t, nonce, pcrs)
	b := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTPM, Nonce: nonce,
		Evidence: bundle.Evidence{PublicKey: string(ak), TPMQuotes: []bundle.TPMQuote{q}},
		Logs: []bundle.Log{{Format: "runtime", Register: "pcr14", Alg: "sha256", Data: rt},
			{Format: "ima-binary", Data: list}}}
	return b, Options{TrustedKeys: [][]byte{ak}, Nonce: nonce, Machine: "m"}
}

var (
	bootAggZero = sha256.Sum256(make([]byte, 10*32))
	bootAggSpec = imatest.Spec{Template: "ima-ng", FileAlg: "sha256", Name: "boot_aggregate", Digest: bootAggZero[:]}
	pcr11Spec   = imatest.Spec{Template: "ima-ng", FileAlg: "sha256", Name: "/etc/pcr11", PCR: 11}
	evil11Spec  = imatest.Spec{Template: "ima-ng", FileAlg: "sha256", Name: "/tmp/evil", PCR: 11}
)

// The state keeps the counts of the entries it proved by PCR, and a
// resumed run reports the whole list's counts, as a run without it does.
// No runtime policy: a Keylime runtime policy fails the PCR 11 entry (as
// Keylime does), and the counts are layer 3's.
func TestCoverageState_CountsKept(t *testing.T) {
	old := []imatest.Spec{bootAggSpec, imatest.NG(1), pcr11Spec, imatest.NG(3)}
	grown := append(append([]imatest.Spec(nil), old...), imatest.NG(4), imatest.NG(5))
	var pol *Policy
	state := emptyState()
	b, o := pcrBundle(t, specsList(old...), len(old))
	o.Policy, o.Monitor = pol, state
	monMustTrust(t, b, o)
	if got := state.Machines["m"].IMA.PCRs; !maps.Equal(got, map[int]int{10: 3, 11: 1}) {
		t.Fatalf("counts %v, want 3 on PCR 10, 1 on PCR 11", got)
	}
	b, o = pcrBundle(t, specsList(grown...), len(grown))
	o.Policy, o.Monitor = pol, state
	rep := monMustTrust(t, b, o)
	if got := strings.Join(rep.Layers[LayerApp].Checked, "\n"); !strings.Contains(got, "5 IMA entries replay to the quoted PCR 10") ||
		!strings.Contains(got, "proven by the monitor state") {
		t.Fatalf("the resumed run does not count the whole list:\n%s", reportText(rep))
	}
	if got := state.Machines["m"].IMA.PCRs; !maps.Equal(got, map[int]int{10: 5, 11: 1}) {
		t.Fatalf("counts %v, want 5 on PCR 10, 1 on PCR 11", got)
	}
}

// Attack: an entry on PCR 11 (not quoted) in the new part, after the last
// mr_ima record, where the state's counts name no PCR 11: it is proven by
// nothing and the runtime policy cannot judge it, with the state as
// without it. Recorded in mr_ima, it is proven (the honest side), and the
// runtime policy then fails it for its PCR, as Keylime does.
func TestCoverageState_UnquotedPCRInNewPart(t *testing.T) {
	old := []imatest.Spec{bootAggSpec, imatest.NG(1), imatest.NG(3)}
	grown := append(append([]imatest.Spec(nil), old...), imatest.NG(4), evil11Spec)
	pol := digestPolicy(t, specsList(grown...)) // allowed, yet proven by nothing
	state := emptyState()
	b, o := pcrBundle(t, specsList(old...), len(old))
	o.Policy, o.Monitor = pol, state
	monMustTrust(t, b, o)
	if got := state.Machines["m"].IMA.PCRs; !maps.Equal(got, map[int]int{10: 3}) {
		t.Fatalf("counts %v", got)
	}
	saved := emptyState()
	if js, err := json.Marshal(state); err != nil || json.Unmarshal(js, saved) != nil {
		t.Fatal("state copy")
	}
	for _, st := range []*MonitorState{nil, state} {
		b, o = pcrBundle(t, specsList(grown...), len(grown)-1)
		o.Policy, o.Monitor = pol, st
		rep := mustRefuse(t, b, o, "an unproven entry on PCR 11 in the new part")
		if rep == nil || rep.FailedLayer() != LayerPolicy || !strings.Contains(rep.Layers[LayerPolicy].Failure.Reason, "PCR 11, which the evidence does not quote") {
			t.Fatalf("state %v: not refused for the PCR 11 entry:\n%s", st != nil, reportText(rep))
		}
	}
	b, o = pcrBundle(t, specsList(grown...), len(grown))
	o.Policy, o.Monitor = pol, saved
	rep := verifyT(t, b, o)
	if got := strings.Join(rep.Layers[LayerApp].Checked, "\n"); !strings.Contains(got, "1 IMA entries on PCR 11 (not quoted) are proven by their mr_ima records") {
		t.Fatalf("the recorded PCR 11 entry:\n%s", reportText(rep))
	}
	if rep.Trusted || rep.FailedLayer() != LayerPolicy || !strings.Contains(rep.Layers[LayerPolicy].Failure.Reason, `"/tmp/evil" is on PCR 11: Keylime fails`) {
		t.Fatalf("the proven PCR 11 entry passed the Keylime runtime policy:\n%s", reportText(rep))
	}
}

// Attack: the old part, which the state's counts describe, is changed to
// put an entry on PCR 11 (its records and PCR 10 made to match): the prefix
// hash refuses it before any count of the state could hide it.
func TestCoverageState_UnquotedPCRInOldPart(t *testing.T) {
	old := []imatest.Spec{bootAggSpec, imatest.NG(1), imatest.NG(3)}
	pol := digestPolicy(t, specsList(bootAggSpec, imatest.NG(1), imatest.NG(3), evil11Spec, imatest.NG(4)))
	state := emptyState()
	b, o := pcrBundle(t, specsList(old...), len(old))
	o.Policy, o.Monitor = pol, state
	monMustTrust(t, b, o)
	// Same length: the PCR field is rewritten in place.
	changed := []imatest.Spec{bootAggSpec, imatest.NG(1), imatest.NG(3), imatest.NG(4)}
	changed[2].PCR = 11
	b, o = pcrBundle(t, specsList(changed...), len(changed)-1)
	o.Policy, o.Monitor = pol, state
	rep := mustRefuse(t, b, o, "an entry moved to PCR 11 in the proven part")
	if rep == nil || !strings.Contains(reportText(rep), "differ from the ones the monitor state") {
		t.Fatalf("refused, but not for the changed prefix:\n%s", reportText(rep))
	}
}

// State counts that do not add up to the point's entries are not used: the
// whole list is read, and the verdict is the one without counts. No
// runtime policy (a Keylime one fails the recorded PCR 11 entry, so no
// state would be written): the unproven entry is then reported as such.
func TestCoverageState_BadCountsIgnored(t *testing.T) {
	old := []imatest.Spec{bootAggSpec, imatest.NG(1), pcr11Spec, imatest.NG(3)}
	grown := append(append([]imatest.Spec(nil), old...), imatest.NG(4), evil11Spec)
	state := emptyState()
	b, o := pcrBundle(t, specsList(old...), len(old))
	o.Monitor = state
	monMustTrust(t, b, o)
	state.Machines["m"].IMA.PCRs = map[int]int{10: 3} // PCR 11 dropped
	b, o = pcrBundle(t, specsList(grown...), len(grown)-1)
	fresh := verifyT(t, b, o)
	o.Monitor = state
	rep := verifyT(t, b, o)
	const unproven = "IMA entries on PCR 11 after the last mr_ima record are not proven"
	if !strings.Contains(reportText(rep), unproven) || !strings.Contains(reportText(fresh), unproven) || rep.Trusted != fresh.Trusted {
		t.Fatalf("counts not ignored:\nwith the state:\n%s\nwithout:\n%s", reportText(rep), reportText(fresh))
	}
}

// countingReaderAt counts the bytes read through it.
type countingReaderAt struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

// A resumed run of sim evidence (no PCRs) over the whole IMA list reads the
// proven prefix once (its hash) and the new entries alone besides: neither
// coverage nor layer 3 reads the list from its start again.
func TestCoverageState_ResumedReadsPrefixOnce(t *testing.T) {
	g := newGuest(t)
	state := emptyState()
	g.imaUpTo(30)
	monMustTrust(t, g.quote(false), g.withState(state))
	prefix := state.Machines[MachineID(g.quote(false))].IMA.Offset
	g.imaUpTo(32)
	b := g.quote(false)
	i := logIndex(t, b, "ima-binary")
	data := b.Logs[i].Data
	c := &countingReaderAt{r: bytes.NewReader(data)}
	b.Logs[i].Data = nil
	b.Logs[i].Attach(c, int64(len(data)))
	// Verified as it is: a round trip through a file would read it whole.
	if rep, err := Verify(context.Background(), b, g.withState(state)); err != nil || !rep.Trusted {
		t.Fatalf("not trusted: %v\n%s", err, reportText(rep))
	}
	t.Logf("read %d bytes, prefix %d, list %d", c.n.Load(), prefix, len(data))
	newBytes := int64(len(data)) - prefix
	if got, limit := c.n.Load(), prefix+6*newBytes; got > limit || prefix < 6*newBytes {
		t.Fatalf("read %d bytes of a %d-byte list (%d proven, %d new): want at most %d", got, len(data), prefix, newBytes, limit)
	}
}

// digestPolicy is a policy (with the digest a monitor state binds) whose
// runtime policy allows every file entry of list.
func digestPolicy(t *testing.T, list []byte) *Policy {
	t.Helper()
	kl, err := json.Marshal(allowAll(t, list))
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePolicy([]byte(`{"ima":{"keylime":`+string(kl)+`}}`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return p
}
