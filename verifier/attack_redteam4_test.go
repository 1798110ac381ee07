package verifier

// Red team 4: attacks on monitor tails, the TDX path and the log-format
// registry that landed together. Each test says what it forges and which
// rule stops it; each passed (TRUSTED) before its fix.

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog/dstack"
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
	if len(e.IMA.PCRs) != 1 || e.IMA.PCRs[10] != e.IMA.Entries {
		t.Fatalf("the state counts the IMA list's entries per PCR as %v, want all %d on PCR 10", e.IMA.PCRs, e.IMA.Entries)
	}
	e.IMA.PCRs = nil
	point := e.IMA.Offset
	list := readE2EBundle(t).Logs[logIndex(t, readE2EBundle(t), "ima-binary")].Data
	forged := bytes.Clone(imaEntries(t, list)[0])
	binary.LittleEndian.PutUint32(forged, 200)
	monMustRefuse(t, rt4IMATail(t, point-int64(len(forged)), forged), o, LayerApp, "quotes the PCRs the list extends")
}

// A state whose per-PCR IMA counts name no PCR index, count nothing, or do
// not add up to its entries does not load.
func TestRedteam4_StateIMAPCRsStrict(t *testing.T) {
	for _, pcrs := range []map[int]int{{-1: 1}, {10: 0}, {10: 2}, {10: 1, 11: 1}, {10: -1, 11: 2}} {
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
		Value: mr.SHA384.Sum(nil), PCRs: map[int]int{11: 1}}}
	raw, _ := st.Marshal(nil)
	if _, err := ParseState(raw, nil); err != nil {
		t.Fatalf("a sound state does not load: %v", err)
	}
}

// rt4SHA256Only is the e2e bundle quoted in the sha256 bank only (the
// honest shape of `tpm2_quote -l sha256:...`).
func rt4SHA256Only(t *testing.T, b *bundle.Bundle) {
	var keep []bundle.TPMQuote
	for _, q := range b.Evidence.TPMQuotes {
		if q.Alg == "sha256" {
			keep = append(keep, q)
		}
	}
	b.Evidence.TPMQuotes = keep
}

// rt4FirmwareEvent is the e2e bundle (sha256 quote only) with one more
// event on PCR 14, the runtime log's register, in its firmware log.
func rt4FirmwareEvent(t *testing.T, data string) *bundle.Bundle {
	b := readE2EBundle(t)
	rt4SHA256Only(t, b)
	i := logIndex(t, b, "tcg2")
	b.Logs[i].Data = appendTCG2Event(bytes.Clone(b.Logs[i].Data), 14, 0xd, []byte(data+"\x00"))
	return b
}

// A runtime log that resumes a monitor state is not replayed from its
// start, so the firmware log's replay of its register, which a whole
// verification compares with the runtime log's start, was compared with
// nothing: a made-up event on PCR 14 (here EV_IPL "evil"; on TDX a dstack
// compose-hash event on RTMR3 alike) was TRUSTED with the state, reported
// as replaying "to the start of 1 runtime logs", and refused without it.
// Rule: the state keeps the chain's proven start (RuntimeState.Start); a
// resumed chain's firmware or dstack replay must give it, by events that
// may start a runtime log (resumedStart).
func TestRedteam4_ResumedChainFirmwareEventOnRuntimeRegister(t *testing.T) {
	b, o := e2eTrustedTPM(t)
	rt4SHA256Only(t, b)
	state := emptyState()
	o.Monitor = state
	monMustTrust(t, b, o)
	st := state.Machines[MachineID(b)].Runtime[0]
	if st.Start == nil || !st.Start.Equal(mr.Zero(mr.SHA256)) {
		t.Fatalf("the state keeps the runtime log's start as %v, want the reset value", st.Start)
	}
	full := o
	full.Monitor = nil
	monMustRefuse(t, rt4FirmwareEvent(t, "evil"), full, LayerLogs, "proves no runtime log's start")
	monMustRefuse(t, rt4FirmwareEvent(t, "evil"), o, LayerLogs, "is no runtime log's start")
	// An event shim makes there (EV_IPL MokList) starts a runtime log, but
	// not at the start this boot's state proved.
	monMustRefuse(t, rt4FirmwareEvent(t, "MokList"), o, LayerLogs, "another value than the start of its runtime log")
	// The honest bundle still resumes.
	b = readE2EBundle(t)
	rt4SHA256Only(t, b)
	monMustTrust(t, b, o)
	// A state written before it kept the start cannot judge those events.
	state.Machines[MachineID(b)].Runtime[0].Start = nil
	monMustRefuse(t, rt4FirmwareEvent(t, "MokList"), o, LayerLogs, "keeps no start of its runtime log")
}

// The same on TDX with dstack: dstack's compose-hash event on RTMR3 (what
// a relying party of a dstack app judges) rewritten with a self-consistent
// digest was TRUSTED once a monitor state had verified the runtime log that
// starts where dstack's log ends (TestAttack14 refuses it without a state).
// Rule: resumedStart, as above.
func TestRedteam4_ResumedChainForgedDstackComposeHash(t *testing.T) {
	real := corpusFile(t, "dstack/simulator-eventlog.json")
	quoted := dstackRTMR3(t, real)
	runtime := bundle.Log{Format: "runtime", Register: "rtmr3", Alg: "sha384", Data: withInit(t, quoted, nil)}
	state := emptyState()
	b, o := dstackBundle(t, bundle.Log{Format: "dstack-json", Data: real}, runtime)
	o.Monitor, o.Machine = state, "dstack-sim"
	monMustTrust(t, b, o)

	evs := dstackEvents(t)
	for _, e := range evs {
		if e["event"] == "compose-hash" {
			payload := []byte(strings.Repeat("e", 64))
			e["event_payload"] = hex.EncodeToString(payload)
			e["digest"] = dstack.RuntimeDigest(dstack.RuntimeEventType, "compose-hash", payload).Hex()
		}
	}
	forged, _ := dstackBundle(t, bundle.Log{Format: "dstack-json", Data: encodeEvents(t, evs)}, runtime)
	monMustRefuse(t, forged, o, LayerLogs, "another value than the start of its runtime log")

	// The honest bundle resumes, the dstack replay compared.
	b, _ = dstackBundle(t, bundle.Log{Format: "dstack-json", Data: real}, runtime)
	rep := monMustTrust(t, b, o)
	if !strings.Contains(reportText(rep), "replays rtmr3 to the start of its runtime log the monitor state proved") {
		t.Fatalf("the report does not say dstack's replay was compared:\n%s", reportText(rep))
	}
}
