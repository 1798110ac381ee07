package verifier

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/eventlog/aael"

	"github.com/ccmr-dev/ccmr/bundle"
)

// roundsAt is the verifier's clock in these tests: states written by two
// runs of the same round are then byte for byte comparable.
var roundsAt = time.Now().UTC().Truncate(time.Second)

// stateBytes is the state as saved, to compare two states or one before
// and after a verification.
func stateBytes(t *testing.T, s *MonitorState) []byte {
	t.Helper()
	b, err := s.Marshal(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func cloneState(t *testing.T, s *MonitorState) *MonitorState {
	t.Helper()
	c, err := ParseState(stateBytes(t, s), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// roundsOpts verifies as the guest's verifier, at roundsAt.
func (g *guest) roundsOpts(state *MonitorState) Options {
	o := g.opts()
	o.Monitor, o.At = state, roundsAt
	return o
}

// round is one quote of the guest verified three ways: in full without a
// state, with the state (whole logs) and with a copy of the state from
// only what is new (TailLogs of the state's Since). The two states must
// agree after it; on a refusal neither may change.
type rounds struct {
	t     *testing.T
	g     *guest
	whole *MonitorState // advanced by whole bundles
	tails *MonitorState // advanced by tails
	// mustTrust fails a round whose bundle is not trusted in full (for
	// sequences of honest rounds; the fuzz target's tampering is not).
	mustTrust bool
}

func (rs *rounds) round(what string) {
	t, g := rs.t, rs.g
	t.Helper()
	b := g.quote(true)
	full := verifyT(t, b, g.roundsOpts(nil))
	if rs.mustTrust && !full.Trusted {
		t.Fatalf("%s: not trusted in full:\n%s", what, reportText(full))
	}
	before := stateBytes(t, rs.whole)
	withState := verifyT(t, b, g.roundsOpts(rs.whole))
	if withState.Trusted != full.Trusted {
		t.Fatalf("%s: with the state %s, in full %s:\n%s\n---\n%s", what, withState.Verdict, full.Verdict, reportText(withState), reportText(full))
	}
	if !withState.Trusted && !bytes.Equal(before, stateBytes(t, rs.whole)) {
		t.Fatalf("%s: the state advanced on a refusal", what)
	}
	since, ok := rs.tails.Since(MachineID(b))
	if !ok {
		// The first round: the tails' state starts as the whole one.
		rs.tails = cloneState(t, rs.whole)
		return
	}
	logs, err := TailLogs(b.Logs, since)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	tb := *b
	tb.Logs = logs
	tailRep := verifyT(t, &tb, g.roundsOpts(rs.tails))
	if tailRep.Trusted != full.Trusted {
		t.Fatalf("%s: the tails %s, in full %s:\n%s", what, tailRep.Verdict, full.Verdict, reportText(tailRep))
	}
	if w, tl := stateBytes(t, rs.whole), stateBytes(t, rs.tails); !bytes.Equal(w, tl) {
		t.Fatalf("%s: the state advanced by tails differs from the one advanced by whole logs:\n%s\n---\n%s", what, w, tl)
	}
}

// Issue 17: quote (with an archived segment) → verify --state → extend →
// quote → verify --state was NOT TRUSTED ("segment starts neither where
// the state's segment started nor where the state stopped"). Over several
// rounds of extends, cuts and IMA growth, every bundle is TRUSTED with the
// state as without it, and tails give the same state as whole logs.
func TestMonitorRoundsWithCuts(t *testing.T) {
	g := newGuest(t)
	rs := &rounds{t: t, g: g, whole: emptyState(), tails: emptyState(), mustTrust: true}
	ctx := context.Background()
	cut := func() {
		if _, err := g.s.Cut(ctx); err != nil {
			t.Fatal(err)
		}
	}
	g.extend("mr_ctr.app", "1")
	cut()
	g.extend("mr_ctr.app", "2")
	g.imaUpTo(3)
	rs.round("round 1: an archive and the current segment")
	g.extend("mr_ctr.app", "3")
	rs.round("round 2: the current segment grew")
	cut()
	g.extend("mr_ctr.app", "4")
	g.imaUpTo(6)
	rs.round("round 3: cut, then extended")
	rs.round("round 4: nothing new")
	g.extend("mr_ctr.app", "5")
	cut()
	rs.round("round 5: extended, then cut")
	g.extend("mr_ctr.app", "5b")
	cut()
	g.extend("mr_ctr.app", "5c")
	cut()
	rs.round("round 6: cut twice")
	g.extend("mr_ctr.db", "6")
	g.imaUpTo(9)
	rs.round("round 7: a new virtual register")
	if e := rs.whole.Machines[MachineID(g.quote(false))]; e == nil || len(e.Runtime) != 1 || len(e.Runtime[0].Archived) != 5 {
		t.Fatalf("the state should keep the hashes of the 5 archived segments: %+v", e.Runtime[0])
	}
}

// Rounds over a log of records that extend no virtual register (the
// attestation agent's, vmr.Store.AppendRecord), cut: a cut segment is its
// INIT alone (nothing to snapshot), and the state follows it, whole and
// from tails, as for virtual records; a virtual register that appears
// after such a cut snapshots normally at the next cut.
func TestMonitorRoundsAgentRecordsCut(t *testing.T) {
	g := newGuest(t)
	rs := &rounds{t: t, g: g, whole: emptyState(), tails: emptyState(), mustTrust: true}
	ctx := context.Background()
	record := func(c string) {
		rec, err := aael.NewRecord("github.com/confidential-containers", "PullImage", c)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.s.AppendRecord(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	cut := func() {
		if _, err := g.s.Cut(ctx); err != nil {
			t.Fatal(err)
		}
	}
	record("a")
	rs.round("round 1: agent records")
	cut()
	rs.round("round 2: cut, the new segment is its INIT alone")
	record("b")
	rs.round("round 3: an agent record after the cut")
	cut()
	record("c")
	g.extend("mr_ctr.app", "1")
	rs.round("round 4: cut, an agent record and a virtual one")
	cut()
	record("d")
	rs.round("round 5: cut with a snapshot of mr_ctr.app")
}

// FuzzMonitorRounds runs random sequences of extend, cut, IMA growth and
// quote → verify --state, each bundle also verified in full and from
// tails: the verdicts agree, the state never advances on a refusal, and
// tails leave the state whole logs leave. A tampered byte (op 4) in a
// bundle makes all three refuse it or all three trust it alike.
func FuzzMonitorRounds(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 0, 2, 1, 0, 2, 3, 2})
	f.Add([]byte{1, 1, 2, 0, 2, 4, 2, 0, 1, 2})
	f.Add([]byte{3, 2, 3, 0, 2, 1, 1, 2, 4, 0, 2})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 24 {
			ops = ops[:24]
		}
		g := newGuest(t)
		rs := &rounds{t: t, g: g, whole: emptyState(), tails: emptyState()}
		ctx := context.Background()
		ima := 0
		for i, op := range ops {
			switch op % 5 {
			case 0:
				g.extend("mr_ctr.app", string(rune('a'+i)))
			case 1:
				// A segment without records is not cut (vmr refuses).
				_, _ = g.s.Cut(ctx)
			case 2:
				rs.round("op " + string(rune('0'+i%10)))
			case 3:
				if ima < 30 {
					ima += 1 + int(op/5)%3
					g.imaUpTo(min(ima, 30))
				}
			case 4:
				rs.tampered(int(op/5) + i)
			}
		}
		rs.round("last")
	})
}

// tampered verifies a quote with one byte of one log flipped, with the
// state and in full: they agree, and a refusal leaves the state as it was.
func (rs *rounds) tampered(seed int) {
	t, g := rs.t, rs.g
	t.Helper()
	b := g.quote(true)
	if len(b.Logs) == 0 {
		return
	}
	lg := &b.Logs[seed%len(b.Logs)]
	if len(lg.Data) == 0 {
		return
	}
	lg.Data = bytes.Clone(lg.Data)
	lg.Data[(seed*7919)%len(lg.Data)] ^= 0x40
	full := verifyT(t, b, g.roundsOpts(nil))
	before := stateBytes(t, rs.whole)
	tb := *b
	tb.Logs = append([]bundle.Log(nil), b.Logs...)
	withState := verifyT(t, &tb, g.roundsOpts(cloneState(t, rs.whole)))
	if full.Trusted && !withState.Trusted {
		// A byte the state judged before (a prefix or an archive) fails
		// with the state only: never the reverse.
		return
	}
	if withState.Trusted && !full.Trusted {
		t.Fatalf("a tampered bundle is trusted with the state, not in full:\n%s\n---\n%s", reportText(withState), reportText(full))
	}
	if !bytes.Equal(before, stateBytes(t, rs.whole)) {
		t.Fatal("verifying a copy of the state changed the state")
	}
}
