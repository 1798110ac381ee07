package verifier

// Red team 4: attacks on monitor tails, the TDX path and the log-format
// registry that landed together. Each test says what it forges and which
// rule stops it; each passed (TRUSTED) before its fix.

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/mr"
)

// rt4TPMState verifies the real kernel's TPM bundle (its IMA list has 9
// entries, 8 forwarded to mr_ima, the 9th proven by the quoted PCR 10 only)
// through a new monitor state and returns the state and the options.
func rt4TPMState(t *testing.T) (*MonitorState, Options) {
	t.Helper()
	b, o := e2eTrustedTPM(t)
	state := emptyState()
	o.Monitor = state
	monMustTrust(t, b, o)
	return state, o
}

// rt4IMATail is the e2e bundle with its IMA list cut to a tail: from byte
// start (before the state's point) holding data.
func rt4IMATail(t *testing.T, start int64, data []byte) *bundle.Bundle {
	t.Helper()
	b := readE2EBundle(t)
	i := logIndex(t, b, "ima-binary")
	b.Logs[i] = bundle.Log{Format: "ima-binary", Offset: start, Data: data}
	return b
}

// An IMA tail when the evidence quotes the PCRs the list extends is refused
// (the PCRs hold the whole list; the entries a tail lacks, and the ones
// after the last mr_ima record, would be judged by nothing). The check read
// the PCRs the list extends from the tail's own first bytes, which lie
// before the state's point and are compared with nothing: a tail that
// starts there with a made-up entry on PCR 200 (copied from the list's
// first entry) made the list look like one on an unquoted PCR, so the tail
// was accepted, the quoted PCR 10 never replayed, and the 9th entry, which
// only PCR 10 proves and a policy would judge, silently dropped: TRUSTED.
// Rule: the PCRs of a tail are those of the entries after the state's point
// (the only ones read), and PCR 10, never those of the unverified bytes.
func TestRedteam4_IMATailHidesQuotedPCRs(t *testing.T) {
	state, o := rt4TPMState(t)
	point := state.Machines[MachineID(readE2EBundle(t))].IMA.Offset

	// The honest tail from the state's point is refused: PCR 10 is quoted.
	list := readE2EBundle(t).Logs[logIndex(t, readE2EBundle(t), "ima-binary")].Data
	monMustRefuse(t, rt4IMATail(t, point, list[point:]), o, LayerApp, "quotes the PCRs the list extends")

	// The forged head: the list's first entry on PCR 200, ending at the
	// state's point; the 9th entry (after the point) left out.
	first := imaEntries(t, list)[0]
	forged := bytes.Clone(first)
	binary.LittleEndian.PutUint32(forged, 200)
	monMustRefuse(t, rt4IMATail(t, point-int64(len(forged)), forged), o, LayerApp, "quotes the PCRs the list extends")
}

// The state records the PCRs of the entries it proved, and a state from
// before it did (no pcrs) cannot vouch for a tail on evidence with PCRs:
// the entries the tail lacks may be on any quoted PCR. The same forged tail
// against such a state is refused too.
func TestRedteam4_IMATailStateWithoutPCRs(t *testing.T) {
	state, o := rt4TPMState(t)
	e := state.Machines[MachineID(readE2EBundle(t))]
	if !slices.Equal(e.IMA.PCRs, []int{10}) {
		t.Fatalf("the state records the IMA list's PCRs as %v, want [10]", e.IMA.PCRs)
	}
	e.IMA.PCRs = nil
	point := e.IMA.Offset
	list := readE2EBundle(t).Logs[logIndex(t, readE2EBundle(t), "ima-binary")].Data
	forged := bytes.Clone(imaEntries(t, list)[0])
	binary.LittleEndian.PutUint32(forged, 200)
	monMustRefuse(t, rt4IMATail(t, point-int64(len(forged)), forged), o, LayerApp, "quotes the PCRs the list extends")
}

// A state whose IMA PCRs are no PCR indexes, or not ascending, does not load.
func TestRedteam4_StateIMAPCRsStrict(t *testing.T) {
	for _, pcrs := range [][]int{{-1}, {256}, {10, 10}, {11, 10}} {
		st := NewState()
		st.Machines["m"] = &MachineState{Policy: "none", IMA: &IMAState{Entries: 1, Offset: 0, Prefix: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
			Value: mr.SHA384.Sum(nil), PCRs: pcrs}}
		raw, err := st.Marshal(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseState(raw, nil); err == nil {
			t.Errorf("a state with IMA pcrs %v loads", pcrs)
		}
	}
	st := NewState()
	st.Machines["m"] = &MachineState{Policy: "none", IMA: &IMAState{Entries: 1, Offset: 0, Prefix: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		Value: mr.SHA384.Sum(nil), PCRs: []int{10, 11}}}
	raw, _ := st.Marshal(nil)
	if _, err := ParseState(raw, nil); err != nil {
		t.Fatalf("a sound state does not load: %v", err)
	}
}
