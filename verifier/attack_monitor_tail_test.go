package verifier

// Attacks on tails (bundle.Log.Offset) and on the segments a monitor state
// resumes (issue 17 item 3): each asserts the safe outcome.

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
)

// tailGuest is a guest whose state verified a bundle with an archive, a
// current segment and an IMA list, and has quoted again since.
func tailGuest(t *testing.T) (*guest, *MonitorState) {
	g := newGuest(t)
	state := emptyState()
	g.extend("mr_ctr.app", "1")
	if _, err := g.s.Cut(context.Background()); err != nil {
		t.Fatal(err)
	}
	g.extend("mr_ctr.app", "2")
	g.imaUpTo(4)
	monMustTrust(t, g.quote(true), g.withState(state))
	g.extend("mr_ctr.app", "3")
	g.imaUpTo(7)
	return g, state
}

// tails is the guest's next quote cut to what state verified.
func tails(t *testing.T, g *guest, state *MonitorState) *bundle.Bundle {
	b := g.quote(true)
	since, ok := state.Since(MachineID(b))
	if !ok {
		t.Fatal("no entry for the machine")
	}
	logs, err := TailLogs(b.Logs, since)
	if err != nil {
		t.Fatal(err)
	}
	b.Logs = logs
	return b
}

func runtimeTail(t *testing.T, b *bundle.Bundle) *bundle.Log {
	for i := range b.Logs {
		if b.Logs[i].Format == "runtime" && b.Logs[i].Offset > 0 {
			return &b.Logs[i]
		}
	}
	t.Fatal("no runtime tail")
	return nil
}

// The honest tails pass, from the state, without the archive.
func TestAttackTail_Honest(t *testing.T) {
	g, state := tailGuest(t)
	b := tails(t, g, state)
	if len(b.Logs) != 2 {
		t.Fatalf("want the runtime tail and the IMA tail, got %d logs", len(b.Logs))
	}
	rep := monMustTrust(t, b, g.withState(state))
	if !strings.Contains(reportText(rep), "a tail from byte") {
		t.Fatalf("the report does not say the log is a tail:\n%s", reportText(rep))
	}
}

// A tail proves nothing alone: without a state, NOT TRUSTED.
func TestAttackTail_WithoutState(t *testing.T) {
	g, state := tailGuest(t)
	monMustRefuse(t, tails(t, g, state), g.opts(), LayerLogs, "a tail proves nothing without a monitor state")
}

// A tail whose start is beyond the state's point: the bytes between were
// never judged.
func TestAttackTail_BeyondState(t *testing.T) {
	g, state := tailGuest(t)
	b := tails(t, g, state)
	lg := runtimeTail(t, b)
	lg.Offset++
	lg.Data = lg.Data[1:]
	monMustRefuse(t, b, g.withState(state), LayerLogs, "verified only")
}

// A tail that ends before the state's point (shorter than verified).
func TestAttackTail_EndsBeforeState(t *testing.T) {
	g, state := tailGuest(t)
	b := tails(t, g, state)
	lg := runtimeTail(t, b)
	lg.Offset -= 8
	lg.Data = nil
	monMustRefuse(t, b, g.withState(state), LayerLogs, "before the")
}

// A tail that starts before the state's point, its bytes there changed:
// they are not used (the replay starts at the state's point from its
// value), the report says they were not compared, and the state keeps the
// hash of the bytes it verified, not of the changed ones.
func TestAttackTail_BeforeStateChanged(t *testing.T) {
	g, state := tailGuest(t)
	honest := cloneState(t, state)
	monMustTrust(t, tails(t, g, honest), g.roundsOpts(honest))

	b := g.quote(true)
	since, _ := state.Since(MachineID(b))
	since.Runtime[0].Offset -= 1 // one byte before the state's point
	logs, err := TailLogs(b.Logs, since)
	if err != nil {
		t.Fatal(err)
	}
	b.Logs = logs
	lg := runtimeTail(t, b)
	lg.Data = bytes.Clone(lg.Data)
	lg.Data[0] ^= 0xff
	rep := monMustTrust(t, b, g.roundsOpts(state))
	if !strings.Contains(reportText(rep), "not compared") {
		t.Fatalf("the report does not name the bytes it did not compare:\n%s", reportText(rep))
	}
	if !bytes.Equal(stateBytes(t, honest), stateBytes(t, state)) {
		t.Fatal("the state took the changed bytes into its hash")
	}
}

// A tail whose first new record does not chain from the state's value: a
// record of the guest's choosing put in place of the real one.
func TestAttackTail_DoesNotChain(t *testing.T) {
	g, state := tailGuest(t)
	b := tails(t, g, state)
	lg := runtimeTail(t, b)
	if len(lg.Data) < 8 {
		t.Fatal("the tail holds no new record")
	}
	lg.Data = bytes.Clone(lg.Data)
	lg.Data[len(lg.Data)-1] ^= 0x01 // the last byte of the new record's digest
	monMustRefuse(t, b, g.withState(state), LayerLogs, "")
}

// A tail after a segment of its register: only the first log of a
// register may be a tail.
func TestAttackTail_NotFirstSegment(t *testing.T) {
	g, state := tailGuest(t)
	b := tails(t, g, state)
	whole := g.quote(true)
	b.Logs = append([]bundle.Log{whole.Logs[0]}, b.Logs...)
	monMustRefuse(t, b, g.withState(state), LayerLogs, "only the first log of a register may be a tail")
}

// An IMA tail when the state proved no IMA point.
func TestAttackTail_IMAWithoutPoint(t *testing.T) {
	g, state := tailGuest(t)
	b := tails(t, g, state)
	state.Machines[MachineID(b)].IMA = nil
	monMustRefuse(t, b, g.withState(state), LayerLogs, "never verified the IMA list")
}

// A negative offset.
func TestAttackTail_NegativeOffset(t *testing.T) {
	g, state := tailGuest(t)
	b := tails(t, g, state)
	runtimeTail(t, b).Offset = -5
	monMustRefuse(t, b, g.withState(state), LayerLogs, "negative offset")
}

// A state from another boot is not used: its tails then fail.
func TestAttackTail_StateFromAnotherBoot(t *testing.T) {
	g, state := tailGuest(t)
	b := tails(t, g, state)
	e := state.Machines[MachineID(b)]
	for i := range e.Registers {
		if e.Registers[i].Name == "mrtd" {
			e.Registers[i].Digest.Bytes = bytes.Repeat([]byte{1}, len(e.Registers[i].Digest.Bytes))
		}
	}
	monMustRefuse(t, b, g.withState(state), LayerLogs, "is not used for this bundle")
}

// A whole bundle whose archived segment (judged, not replayed again) was
// changed: refused, as a changed prefix is.
func TestAttackTail_ArchiveChanged(t *testing.T) {
	g, state := tailGuest(t)
	b := g.quote(true)
	b.Logs[0].Data = bytes.Clone(b.Logs[0].Data)
	b.Logs[0].Data[len(b.Logs[0].Data)-1] ^= 0x01
	monMustRefuse(t, b, g.withState(state), LayerLogs, "the archived segment differs")
}

// A whole bundle that carries a segment before the archive the state
// judged: history it never saw.
func TestAttackTail_ExtraArchive(t *testing.T) {
	g, state := tailGuest(t)
	b := g.quote(true)
	b.Logs = append([]bundle.Log{b.Logs[0]}, b.Logs...)
	monMustRefuse(t, b, g.withState(state), LayerLogs, "segments precede")
}

// A whole log whose judged part was changed (the prefix the state hashed).
func TestAttackTail_WholeLogPrefixChanged(t *testing.T) {
	g, state := tailGuest(t)
	b := g.quote(true)
	lg := &b.Logs[1]
	lg.Data = bytes.Clone(lg.Data)
	lg.Data[state.Machines[MachineID(b)].Runtime[0].Offset-1] ^= 0x01 // the judged part's last byte
	monMustRefuse(t, b, g.withState(state), LayerLogs, "differ from the ones the monitor state")
}

// A state whose hash state does not match its prefix hash does not load.
func TestAttackTail_ForgedHashState(t *testing.T) {
	_, state := tailGuest(t)
	for _, e := range state.Machines {
		e.Runtime[0].PrefixState = e.IMA.PrefixState
	}
	if _, err := ParseState(stateBytes(t, state), nil); err == nil {
		t.Fatal("a state whose prefix_state is another log's loads")
	}
}

// A policy that names the IMA aggregate (over the whole list) with an IMA
// tail: the aggregate cannot be computed, NOT TRUSTED, never passed over.
func TestAttackTail_IMAAggregateNeedsWholeList(t *testing.T) {
	g := newGuest(t)
	state := emptyState()
	g.extend("mr_ctr.app", "1")
	g.imaUpTo(4)
	list, err := os.ReadFile(g.list)
	if err != nil {
		t.Fatal(err)
	}
	agg, _, err := ima.Aggregate(context.Background(), ima.NewBinaryReader(bytes.NewReader(list), ima.Options{}), -1)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := ParsePolicy([]byte(`{"ima": {"aggregate": "`+agg.String()+`"}}`), ".")
	if err != nil {
		t.Fatal(err)
	}
	o := g.withState(state)
	o.Policy = pol
	monMustTrust(t, g.quote(true), o)
	g.extend("mr_ctr.app", "2")
	monMustRefuse(t, tails(t, g, state), o, LayerPolicy, "the aggregate needs the whole list")
}

// A firmware log sent as a tail: only runtime logs and the IMA list resume.
func TestAttackTail_FirmwareLog(t *testing.T) {
	g, state := tailGuest(t)
	b := tails(t, g, state)
	b.Logs = append(b.Logs, bundle.Log{Format: "ccel", Data: []byte{1, 2, 3, 4}, Offset: 64})
	monMustRefuse(t, b, g.withState(state), LayerLogs, "only runtime logs and the IMA list may be sent as tails")
}
