package verifier

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle"
)

// Verifying through a monitor state gives the result of a full
// verification, bundle after bundle, across a cut; a state that does not
// fit the evidence is a clear failure and the state is left as it was.
func TestMonitorState(t *testing.T) {
	g := newGuest(t)
	state := &MonitorState{Format: StateFormat, Machines: map[string]*MachineState{}}
	withState := func() Options { o := g.opts(); o.Monitor = state; return o }
	full := func(b *bundle.Bundle) *MachineState {
		m := &MonitorState{Format: StateFormat, Machines: map[string]*MachineState{}}
		o := g.opts()
		o.Monitor = m
		if rep := verifyT(t, b, o); !rep.Trusted {
			t.Fatalf("full verification:\n%s", reportText(rep))
		}
		return m.Machines[MachineID(b)]
	}
	// same verifies b through the state and the whole history (every
	// segment) in full, and requires the two to agree.
	same := func(b *bundle.Bundle) {
		t.Helper()
		if rep := verifyT(t, b, withState()); !rep.Trusted {
			t.Fatalf("with state:\n%s", reportText(rep))
		}
		inc, all := state.Machines[MachineID(b)], full(g.quote(true))
		if inc.IMA.Entries != all.IMA.Entries || !inc.IMA.Value.Equal(all.IMA.Value) {
			t.Fatalf("IMA: incremental %+v, full %+v", inc.IMA, all.IMA)
		}
		ri, ra := inc.Runtime[0], all.Runtime[0]
		if !ri.Value.Equal(ra.Value) || len(ri.Virtual) != len(ra.Virtual) {
			t.Fatalf("runtime: incremental %+v, full %+v", ri, ra)
		}
		for i := range ri.Virtual {
			if !ri.Virtual[i].Digest.Equal(ra.Virtual[i].Digest) || ri.Virtual[i].Count != ra.Virtual[i].Count {
				t.Fatalf("virtual: incremental %+v, full %+v", ri.Virtual[i], ra.Virtual[i])
			}
		}
	}

	g.imaUpTo(10)
	same(g.quote(false))
	g.imaUpTo(20)
	g.extend("mr_ctr.a", "x")
	same(g.quote(false))
	if got := state.Machines[MachineID(g.quote(false))].IMA.Entries; got != 20 {
		t.Fatalf("state holds %d IMA entries, want 20", got)
	}

	// A cut right where the state stopped: the current segment alone
	// verifies, its snapshot checked against the state.
	if _, err := g.s.Cut(context.Background()); err != nil {
		t.Fatal(err)
	}
	g.imaUpTo(25)
	b := g.quote(false)
	same(b)

	// Records after the state, then a cut: the current segment alone does
	// not continue the state; with the archived segments it does.
	g.imaUpTo(28)
	if _, err := g.s.Cut(context.Background()); err != nil {
		t.Fatal(err)
	}
	g.imaUpTo(32)
	saved := *state.Machines[MachineID(b)]
	if rep := verifyT(t, g.quote(false), withState()); rep.Trusted || !strings.Contains(rep.Layers[1].Failure.Reason, "does not continue the monitor state") {
		t.Fatalf("segment that skips unverified records:\n%s", reportText(rep))
	}
	if got := *state.Machines[MachineID(b)]; got.IMA.Entries != saved.IMA.Entries {
		t.Fatal("a failed verification changed the state")
	}
	b = g.quote(true)
	b.Logs = b.Logs[1:] // the segment before the state's is not needed
	same(b)

	// The log rewritten: shorter than what the state verified.
	short := g.quote(false)
	short.Logs[0].Data = short.Logs[0].Data[:len(short.Logs[0].Data)/2]
	if rep := verifyT(t, short, withState()); rep.Trusted || rep.FailedLayer() != 1 {
		t.Fatalf("rewritten log:\n%s", reportText(rep))
	}
	// Another boot of the same machine (a fresh log), pinned to the same ID.
	g2 := newGuest(t)
	g2.imaUpTo(3)
	o := withState()
	o.Machine = MachineID(b)
	o.SimKeys = [][]byte{g2.key}
	if rep := verifyT(t, g2.quote(false), o); rep.Trusted || rep.FailedLayer() != 1 {
		t.Fatalf("new boot against the old state:\n%s", reportText(rep))
	}
	// Save and load round trip.
	p := filepath.Join(t.TempDir(), "state.json")
	if err := state.Save(p, nil); err != nil {
		t.Fatal(err)
	}
	back, err := LoadState(p, nil)
	if err != nil || back.Machines[MachineID(b)].IMA.Entries != 32 {
		t.Fatalf("LoadState: %v %+v", err, back)
	}
}
