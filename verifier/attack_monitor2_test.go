package verifier

// Red team, round 2, the monitor state's attacks (copied from the redteam2
// branch's verifier/attack_redteam2_test.go): each test asserts the safe
// outcome and failed on the main branch before the fixmon fixes.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/mr"
)

// rt2DropRuntime removes the bundle's runtime logs.
func rt2DropRuntime(b *bundle.Bundle) {
	var logs []bundle.Log
	for _, lg := range b.Logs {
		if lg.Format != "runtime" {
			logs = append(logs, lg)
		}
	}
	b.Logs = logs
	b.Registers = onlyReal(b.Registers)
}

// A bundle without its runtime log (and without the virtual registers it
// carried) resumes the state's IMA point though mr_ima's value is unknown:
// "0 IMA entries match the 0 records of mr_ima", TRUSTED, and the entry it
// leaves holds an IMA point whose mr_ima value is no digest (alg 0) and no
// runtime entry. The state file then does not load again (every machine
// in it is lost), and in memory every sound bundle of the machine fails.
// Safe: such a bundle must not advance the IMA point; the state must stay
// usable.
func TestRedteam2_IMAPointWithoutMRIMA(t *testing.T) {
	g := newGuest(t)
	state := emptyState()
	g.extend("mr_ctr.a", "x")
	g.imaUpTo(5)
	monMustTrust(t, g.quote(false), g.withState(state))
	g.imaUpTo(8)
	b := g.quote(false)
	rt2DropRuntime(b)
	rep := verifyT(t, b, g.withState(state))
	e := state.Machines[MachineID(g.quote(false))]
	if e != nil && e.IMA != nil && !e.IMA.Value.Alg.Valid() {
		t.Errorf("the state's IMA point has mr_ima value %v after a bundle without mr_ima (verdict %s)", e.IMA.Value, rep.Verdict)
	}
	if raw, err := state.Marshal(nil); err != nil {
		t.Errorf("state does not marshal: %v", err)
	} else if _, err := ParseState(raw, nil); err != nil {
		t.Errorf("the state file written after that bundle does not load: %v", err)
	}
	g.imaUpTo(10)
	if rep := verifyT(t, g.quote(false), g.withState(state)); !rep.Trusted {
		t.Errorf("a sound bundle after it is refused:\n%s", reportText(rep))
	}
}

// The same under a runtime policy: the state was built under it (entries
// 0..4 judged), the next bundle drops its runtime log and the virtual
// claims; its new IMA entries, one of which the policy refuses, are
// "not proven (not judged by policy)" and the verdict is a plain TRUSTED.
// The same bundle without the state is refused (nothing proves the list).
func TestRedteam2_IMAPointWithoutMRIMAUnderPolicy(t *testing.T) {
	pol, deny := rt2IMAPolicy(t, 10, 5)
	g := newGuest(t)
	state := emptyState()
	g.extend("mr_ctr.a", "x")
	g.imaUpTo(5)
	o := g.withState(state)
	o.Policy = pol
	monMustTrust(t, g.quote(false), o)
	g.imaUpTo(10)
	b := g.quote(false)
	rt2DropRuntime(b)
	o2 := g.opts()
	o2.Policy = pol
	if rep := verifyT(t, b, o2); rep.Trusted {
		t.Fatalf("without the state the bundle is trusted:\n%s", reportText(rep))
	}
	if rep := verifyT(t, b, o); rep.Trusted {
		t.Errorf("entry %d, which the policy refuses, passes unjudged: the state turns a bundle without mr_ima into %s\n%s", deny, rep.Verdict, reportText(rep))
	}
}

// rt2IMAPolicy allows the files of the real IMA list's first n entries,
// except one entry at or after from whose path appears once: its digest is
// replaced. It returns the policy and that entry's index.
func rt2IMAPolicy(t *testing.T, n, from int) (*Policy, int) {
	t.Helper()
	files, count := realIMAFiles(t, n)
	deny := -1
	for i := from; i < n && deny < 0; i++ {
		if count[files[i].path] == 1 {
			deny = i
		}
	}
	if deny < 0 {
		// The list is fixed test data: a skip here would silently retire
		// the attack test.
		t.Fatalf("no entry with a unique path among entries %d-%d of the real IMA list", from, n-1)
	}
	return allowFilesExcept(t, files, deny), deny
}

// A state whose IMA point holds no mr_ima value (what the attack above left
// behind) is refused on load: resumed, its new entries would be replayed
// from zero instead of from a value a trusted run proved.
func TestMonitor2_StateIMAPointWithoutValue(t *testing.T) {
	st := NewState()
	st.Machines["m"] = &MachineState{Policy: "none", IMA: &IMAState{Entries: 5, Offset: 100, Prefix: strings.Repeat("00", 32)}}
	raw, err := st.Marshal(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseState(raw, nil); err == nil {
		t.Fatal("a state whose IMA point has no mr_ima value loads")
	}
}

// rt2RuntimeTail makes a state at the current end of the guest's runtime
// log, appends one record, and returns the bundle, the state and the byte
// offset where the appended entry starts.
func rt2RuntimeTail(t *testing.T) (*guest, *MonitorState, *bundle.Bundle, int64) {
	t.Helper()
	g := newGuest(t)
	state := emptyState()
	g.extend("mr_ctr.a", "x")
	g.imaUpTo(5)
	monMustTrust(t, g.quote(false), g.withState(state))
	off := state.Machines[MachineID(g.quote(false))].Runtime[0].Offset
	g.extend("mr_ctr.a", "y")
	b := g.quote(false)
	lg := logOf(b, "runtime")
	if int64(len(lg.Data)) <= off {
		t.Fatalf("no entry after the state's offset %d", off)
	}
	lg.Data = bytes.Clone(lg.Data)
	return g, state, b, off
}

// The runtime log format holds entries of one MR index ("one log per
// backing register"): a full verification refuses a log whose later entry
// names another MR index. Resumed from a monitor state, the reader starts
// afresh at the state's offset, so the same log passes: the verdict of the
// incremental verification differs from the full one.
func TestRedteam2_ResumedTailOtherMRIndex(t *testing.T) {
	g, state, b, off := rt2RuntimeTail(t)
	lg := logOf(b, "runtime")
	mri := binary.LittleEndian.Uint32(lg.Data[off:])
	binary.LittleEndian.PutUint32(lg.Data[off:], mri+1)
	// Without the state: refused.
	full := verifyT(t, b, g.opts())
	if full.Trusted {
		t.Fatalf("full verification trusts a log mixing MR indices:\n%s", reportText(full))
	}
	// With the state: must be refused as well.
	rep := verifyT(t, b, g.withState(state))
	if rep.Trusted {
		t.Fatalf("the monitor state's resume accepts a log the full verification refuses (%s):\n%s",
			strings.TrimSpace(full.Layers[full.FailedLayer()].Failure.Reason), reportText(rep))
	}
}

// A runtime entry of a state that does not say which MR index and digest
// algorithm its entries use (a state written before they were kept) is
// refused on load: its resume could not hold the new entries to them.
func TestMonitor2_StateRuntimeWithoutMRIndex(t *testing.T) {
	rs := &RuntimeState{Register: "rtmr3", Value: mr.Zero(mr.SHA384), Prefix: strings.Repeat("00", 32), Alg: "sha384"}
	for name, mut := range map[string]func(*RuntimeState){
		"no mr_index": func(*RuntimeState) {},
		"no alg":      func(rs *RuntimeState) { rs.MRIndex, rs.Alg = new(uint32), "" },
		"other alg":   func(rs *RuntimeState) { rs.MRIndex, rs.Alg = new(uint32), "sha256" },
		"SHA384":      func(rs *RuntimeState) { rs.MRIndex, rs.Alg = new(uint32), "SHA384" },
	} {
		c := *rs
		mut(&c)
		st := NewState()
		st.Machines["m"] = &MachineState{Policy: "none", Runtime: []*RuntimeState{&c}}
		raw, err := st.Marshal(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseState(raw, nil); err == nil {
			t.Errorf("%s: the state loads", name)
		}
	}
	ok := *rs
	ok.MRIndex = new(uint32)
	st := NewState()
	st.Machines["m"] = &MachineState{Policy: "none", Runtime: []*RuntimeState{&ok}}
	raw, _ := st.Marshal(nil)
	if _, err := ParseState(raw, nil); err != nil {
		t.Errorf("a complete runtime entry is refused: %v", err)
	}
}

// rt2TextGuest is a sim device whose rtmr3 is extended line by line as an
// aael-text runtime log (INIT zero, then records).
type rt2TextGuest struct {
	t    *testing.T
	dev  *sim.Device
	key  []byte
	text []byte
}

func rt2NewTextGuest(t *testing.T) *rt2TextGuest {
	ctx := context.Background()
	dev, err := sim.Open(ctx, filepath.Join(t.TempDir(), "sim"))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := dev.PublicKeyPEM(ctx)
	g := &rt2TextGuest{t: t, dev: dev, key: key}
	init, _ := aael.AppendTextInit(nil, mr.Zero(mr.SHA384))
	g.line(init)
	return g
}

// line appends one aael-text line (with LF) and extends rtmr3 with it.
func (g *rt2TextGuest) line(l []byte) {
	if err := g.dev.Extend(context.Background(), "rtmr3", mr.SHA384.Sum(bytes.TrimSuffix(l, []byte("\n")))); err != nil {
		g.t.Fatal(err)
	}
	g.text = append(g.text, l...)
}

func (g *rt2TextGuest) record(s string) {
	rec, err := aael.ParseRecord("mr_ctr.a extend sha384/" + hex.EncodeToString(mr.SHA384.Sum([]byte(s)).Bytes))
	if err != nil {
		g.t.Fatal(err)
	}
	l, err := aael.AppendTextLine(nil, rec)
	if err != nil {
		g.t.Fatal(err)
	}
	g.line(l)
}

func (g *rt2TextGuest) bundle() *bundle.Bundle {
	ev, err := g.dev.Attest(context.Background(), []byte("n"))
	if err != nil {
		g.t.Fatal(err)
	}
	return bundle.New(ev, []bundle.Log{{Format: "aael-text", Register: "rtmr3", Alg: "sha384", Data: bytes.Clone(g.text)}}, nil)
}

func (g *rt2TextGuest) opts(state *MonitorState) Options {
	return Options{AllowSim: true, SimKeys: [][]byte{g.key}, Nonce: []byte("n"), Monitor: state}
}

// An aael-text runtime log resumed from a monitor state is read from the
// state's offset by a TextReader, which takes the first line there as the
// log's INIT line: every sound continuation of an aael-text log fails
// ("first line: ... is not `INIT ALG/HEX`"), and with it every later
// bundle of the machine (a state never resets). Fail-closed, not a false
// TRUSTED (a forged mid-log INIT line is refused: "INIT entry in a resumed
// replay"), but the monitor cannot follow aael-text logs at all.
func TestRedteam2_TextLogResume(t *testing.T) {
	g := rt2NewTextGuest(t)
	g.record("a")
	state := emptyState()
	monMustTrust(t, g.bundle(), g.opts(state))
	g.record("b")
	if rep := verifyT(t, g.bundle(), g.opts(nil)); !rep.Trusted {
		t.Fatalf("the continued log is not trusted in full:\n%s", reportText(rep))
	}
	if rep := verifyT(t, g.bundle(), g.opts(state)); !rep.Trusted {
		t.Errorf("the sound continuation of an aael-text log is refused with the monitor state:\n%s", reportText(rep))
	}
}

// The resumed aael-text log is held to what a full read holds it to: a
// forged INIT line after the state's offset, or a line hashed with another
// algorithm than the log's, is refused; the state advances over a sound
// continuation, twice.
func TestMonitor2_TextLogResumeRefusesForgery(t *testing.T) {
	g := rt2NewTextGuest(t)
	g.record("a")
	state := emptyState()
	monMustTrust(t, g.bundle(), g.opts(state))
	g.record("b")
	monMustTrust(t, g.bundle(), g.opts(state))
	g.record("c")
	monMustTrust(t, g.bundle(), g.opts(state))
	// An INIT line at the state's offset, the register extended with it.
	init, _ := aael.AppendTextInit(nil, mr.Zero(mr.SHA384))
	g.line(init)
	if rep := verifyT(t, g.bundle(), g.opts(state)); rep.Trusted {
		t.Errorf("a mid-log INIT line is trusted with the state:\n%s", reportText(rep))
	}
	if rep := verifyT(t, g.bundle(), g.opts(nil)); rep.Trusted {
		t.Errorf("a mid-log INIT line is trusted in full:\n%s", reportText(rep))
	}
}
