package verifier

// Attacks on the monitor state (issue 15, items 8, 10 and 16): each test
// holds an input that verified as TRUSTED, or loaded, before the fix and
// must be refused now; the sound sequences next to them still pass.

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/mr"
)

func emptyState() *MonitorState {
	return &MonitorState{Format: StateFormat, Machines: map[string]*MachineState{}}
}

// withState is the guest's options verifying through state.
func (g *guest) withState(state *MonitorState) Options {
	o := g.opts()
	o.Monitor = state
	return o
}

// monMustTrust verifies b and requires TRUSTED.
func monMustTrust(t *testing.T, b *bundle.Bundle, o Options) *Report {
	t.Helper()
	rep := verifyT(t, b, o)
	if !rep.Trusted {
		t.Fatalf("sound bundle not trusted:\n%s", reportText(rep))
	}
	return rep
}

// monMustRefuse verifies b and requires NOT TRUSTED at layer, its report
// holding want.
func monMustRefuse(t *testing.T, b *bundle.Bundle, o Options, layer int, want string) {
	t.Helper()
	rep := verifyT(t, b, o)
	if rep.Trusted || rep.FailedLayer() != layer || !strings.Contains(reportText(rep), want) {
		t.Fatalf("want NOT TRUSTED at layer %d saying %q:\n%s", layer, want, reportText(rep))
	}
}

// ---- item 8: the state file is strict -------------------------------------

func TestAttack08_StrictStateFile(t *testing.T) {
	zero := strings.Repeat("00", 32)
	good := `{"format":"` + StateFormat + `","machines":{}}`
	for _, c := range []struct{ name, state string }{
		// Refused before the fix too (held): kept so that they stay so.
		{"null", `null`},
		{"second object after the state", good + good},
		{"not an object", `[]`},
		// Loaded before the fix.
		{"unknown member", `{"format":"` + StateFormat + `","machines":{},"trusted_everything":true}`},
		{"unknown member in an entry", `{"format":"` + StateFormat + `","machines":{"m":{"policy":"none","registers":[],"proven":true}}}`},
		{"null machine entry", `{"format":"` + StateFormat + `","machines":{"m":null}}`},
		{"null runtime entry", `{"format":"` + StateFormat + `","machines":{"m":{"policy":"none","registers":[],"runtime":[null]}}}`},
		{"runtime entry repeated", `{"format":"` + StateFormat + `","machines":{"m":{"policy":"none","registers":[],"runtime":[` +
			`{"register":"rtmr3","offset":1,"prefix_sha256":"` + zero + `"},{"register":"rtmr3","offset":9,"prefix_sha256":"` + zero + `"}]}}}`},
		{"negative IMA offset", `{"format":"` + StateFormat + `","machines":{"m":{"policy":"none","registers":[],"ima":{"entries":3,"offset":-1,"prefix_sha256":"` + zero + `"}}}}`},
		{"no machines", `{"format":"` + StateFormat + `"}`},
		{"another format", `{"format":"ccmr-monitor-state/v0","machines":{}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(p, []byte(c.state), 0o600); err != nil {
				t.Fatal(err)
			}
			if m, err := LoadState(p, nil); err == nil || !errors.Is(err, mr.ErrMalformed) {
				t.Fatalf("state %s loaded: %v %+v", c.state, err, m)
			}
		})
	}
	p := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(p, []byte(good+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadState(p, nil); err != nil {
		t.Fatalf("sound empty state refused: %v", err)
	}
}

// ---- item 10: machines without a per-machine identity ----------------------

// tdxCorpusBundle is the real TDX v4 quote of the corpus with its collateral,
// trusted at the returned time.
func tdxCorpusBundle(t *testing.T, rel string) (*bundle.Bundle, time.Time) {
	quote := corpusFile(t, "dcap-qvl/"+rel)
	coll := corpusFile(t, "dcap-qvl/"+rel+"_collateral.json")
	var exp map[string]json.RawMessage
	var e struct {
		ReportData string `json:"report_data"`
	}
	if err := json.Unmarshal(corpusFile(t, "dcap-qvl/EXPECTED.json"), &exp); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(exp[rel], &e); err != nil {
		t.Fatal(err)
	}
	nonce, _ := hex.DecodeString(e.ReportData)
	return &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTDX, Nonce: nonce, Evidence: bundle.Evidence{Report: quote},
		Collateral: &bundle.Collateral{TDX: json.RawMessage(coll)}}, time.Date(2025, 7, 10, 0, 0, 0, 0, time.UTC)
}

// Two TDX machines' bundles through one state: before the fix both went to
// the one entry "tdx", so one machine's bundle failed or replaced another's.
func TestAttack10_TDXMachinesShareOneEntry(t *testing.T) {
	a, at := tdxCorpusBundle(t, "tdx_quote")
	b, _ := tdxCorpusBundle(t, "tdx_quote_outdated")
	state := emptyState()
	for _, bd := range []*bundle.Bundle{a, b} {
		if id := MachineID(bd); id != "" {
			t.Fatalf("TDX evidence named machine %q: every TDX machine would share it", id)
		}
		rep, err := Verify(context.Background(), bd, Options{At: at, Nonce: bd.Nonce, Monitor: state})
		if !errors.Is(err, ErrNoMachine) {
			t.Fatalf("TDX bundle through a state without a machine name: err %v, report %+v", err, rep)
		}
	}
	if len(state.Machines) != 0 {
		t.Fatalf("state changed: %v", state.Machines)
	}
	// Named, each machine has its own entry.
	for _, m := range []string{"td-a", "td-b"} {
		rep, err := Verify(context.Background(), a, Options{At: at, Nonce: a.Nonce, Monitor: state, Machine: m})
		if err != nil || !rep.Trusted {
			t.Fatalf("named TDX machine %s: %v\n%s", m, err, reportText(rep))
		}
	}
	if len(state.Machines) != 2 || state.Machines["td-a"] == nil || state.Machines["td-b"] == nil {
		t.Fatalf("want entries td-a and td-b, have %v", state.Machines)
	}
}

// All SNP guests of one host share their VCEK: before the fix they shared
// the entry named after it.
func TestAttack10_SNPGuestsShareTheVCEKEntry(t *testing.T) {
	report := corpusFile(t, "go-sev-guest/attestation.bin")
	vcek := corpusFile(t, "go-sev-guest/vcek.testcer")
	b := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformSNP, Nonce: report[0x50 : 0x50+64], Evidence: bundle.Evidence{Report: report, Certificates: [][]byte{vcek}}}
	if id := MachineID(b); id != "" {
		t.Fatalf("SNP evidence named machine %q after the host's VCEK", id)
	}
	state := emptyState()
	_, err := Verify(context.Background(), b, Options{At: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), Monitor: state})
	if !errors.Is(err, ErrNoMachine) || len(state.Machines) != 0 {
		t.Fatalf("SNP bundle through a state without a machine name: %v, state %v", err, state.Machines)
	}
}

// ---- item 16a: concurrent verifications of one state file ------------------

// Goroutines, each a machine, load, change and save one state file round
// after round under LockState: no update is lost and the file always loads.
// (cmd/ccmr/testdata/attack_monitor.txt runs the same with processes, which
// lost updates and tore the file before the fix.)
func TestAttack16a_ConcurrentUpdatesUnderTheLock(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.json")
	const machines, rounds = 8, 40
	prefix := strings.Repeat("00", 32)
	var wg sync.WaitGroup
	errs := make(chan error, machines*rounds)
	for m := 0; m < machines; m++ {
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			for i := 1; i <= rounds; i++ {
				err := func() error {
					unlock, err := LockState(context.Background(), p)
					if err != nil {
						return err
					}
					defer unlock()
					st, err := LoadState(p, nil)
					if err != nil {
						return err
					}
					if e := st.Machines[name]; i > 1 && (e == nil || e.IMA.Entries != i-1) {
						return fmt.Errorf("%s round %d: the update of round %d was lost", name, i, i-1)
					}
					st.Machines[name] = &MachineState{Policy: "none", IMA: &IMAState{Entries: i, Prefix: prefix, Value: mr.Zero(mr.SHA384)}}
					return st.Save(p, nil)
				}()
				if err != nil {
					errs <- err
					return
				}
			}
		}(fmt.Sprintf("m%d", m))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st, err := LoadState(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	for m := 0; m < machines; m++ {
		if e := st.Machines[fmt.Sprintf("m%d", m)]; e == nil || e.IMA.Entries != rounds {
			t.Fatalf("machine m%d: %+v", m, e)
		}
	}
	left, _ := filepath.Glob(p + "*.tmp")
	if more, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".*.tmp")); len(left)+len(more) > 0 {
		t.Fatalf("temporary files left: %v %v", left, more)
	}
}

// ---- item 16b: what the state's entries were judged under -----------------

// monitorIMAPolicy is a parsed policy whose runtime policy allows every file of the
// real IMA list's first n entries with its digest, except entry deny, whose
// digest it gives as another one. deny is chosen with a path that appears
// once, so that only that entry breaks the policy.
func monitorIMAPolicy(t *testing.T, n int, wantDeny bool) (*Policy, int) {
	t.Helper()
	files, count := realIMAFiles(t, n)
	deny := -1
	if wantDeny {
		for i := 1; i < 10 && deny < 0; i++ {
			if count[files[i].path] == 1 {
				deny = i
			}
		}
		if deny < 0 {
			t.Fatal("no entry with a unique path among the first 10")
		}
	}
	return allowFilesExcept(t, files, deny), deny
}

// A state written by a run without a policy vouched for its entries to a
// later run with a policy that refuses one of them: before the fix the
// later run judged only the new entries, TRUSTED.
func TestAttack16b_StateJudgedWithoutPolicy(t *testing.T) {
	g := newGuest(t)
	state := emptyState()
	g.imaUpTo(10)
	monMustTrust(t, g.quote(false), g.withState(state))
	g.imaUpTo(20)
	pol, deny := monitorIMAPolicy(t, 20, true)
	o := g.withState(state)
	o.Policy = pol
	monMustRefuse(t, g.quote(false), o, LayerPolicy, fmt.Sprintf("record %d", deny))
	// The same bundle judged in full without a state is refused too: the
	// state must not change the verdict.
	o2 := g.opts()
	o2.Policy = pol
	monMustRefuse(t, g.quote(false), o2, LayerPolicy, fmt.Sprintf("record %d", deny))
}

// The same with a policy that allowed everything when the state was
// written and a stricter one now.
func TestAttack16b_StateJudgedUnderAnotherPolicy(t *testing.T) {
	g := newGuest(t)
	state := emptyState()
	g.imaUpTo(10)
	loose, _ := monitorIMAPolicy(t, 20, false)
	o := g.withState(state)
	o.Policy = loose
	monMustTrust(t, g.quote(false), o)
	g.imaUpTo(20)
	strict, deny := monitorIMAPolicy(t, 20, true)
	o.Policy = strict
	monMustRefuse(t, g.quote(false), o, LayerPolicy, fmt.Sprintf("record %d", deny))
	// Under the policy it was judged with, the state is used.
	o.Policy = loose
	rep := monMustTrust(t, g.quote(false), o)
	if !strings.Contains(reportText(rep), "10 IMA entries proven by the monitor state of") {
		t.Fatalf("resumed verification does not say what the state proved:\n%s", reportText(rep))
	}
}

// A record of mr_ctr.a extended before the state was written, when no
// application log was checked, escaped the application log checked later.
func TestAttack16b_AppLogNeverJudged(t *testing.T) {
	g := newGuest(t)
	state := emptyState()
	g.extend("mr_ctr.a", "evil\n")
	monMustTrust(t, g.quote(false), g.withState(state))
	g.extend("mr_ctr.a", "good\n")
	o := g.withState(state)
	o.AppLogs = map[string][]byte{"mr_ctr.a": []byte("good\n")}
	monMustRefuse(t, g.quote(false), o, LayerApp, "event 0 does not match record 0")
	// The whole application log, judged in full, passes and the state is
	// then bound to it.
	o.AppLogs = map[string][]byte{"mr_ctr.a": []byte("evil\ngood\n")}
	monMustTrust(t, g.quote(false), o)
	if got := state.Machines[MachineID(g.quote(false))].AppLogs; len(got) != 1 || got[0] != "mr_ctr.a" {
		t.Fatalf("state entry app logs %v", got)
	}
}

// ---- item 16c: another boot ------------------------------------------------

// Another boot (rtmr1 differs: other firmware or kernel) whose runtime log
// starts, after a cut, exactly where the state of the first boot stopped:
// before the fix the state's history vouched for it, TRUSTED, though this
// boot's history was never seen. Now the entry is not used and the bundle
// is verified in full: its snapshot is proven by nothing.
func TestAttack16c_OtherBootReusesHistory(t *testing.T) {
	ctx := context.Background()
	g := newGuest(t)
	state := emptyState()
	g.imaUpTo(10)
	g.extend("mr_ctr.a", "x")
	monMustTrust(t, g.quote(false), g.withState(state))
	if err := g.dev.Extend(ctx, "rtmr1", mr.SHA384.Sum([]byte("other kernel"))); err != nil {
		t.Fatal(err)
	}
	if _, err := g.s.Cut(ctx); err != nil {
		t.Fatal(err)
	}
	monMustRefuse(t, g.quote(false), g.withState(state), LayerLogs, "snapshot that nothing proves")
	rep := verifyT(t, g.quote(false), g.withState(state))
	if !strings.Contains(reportText(rep), "another boot (rtmr1 sha384 differs)") {
		t.Fatalf("report does not say the state is another boot's:\n%s", reportText(rep))
	}
	// With the whole history the new boot verifies in full and replaces
	// the entry.
	b := g.quote(true)
	monMustTrust(t, b, g.withState(state))
	found := false
	for _, r := range state.Machines[MachineID(b)].Registers {
		if r.Name == "rtmr1" {
			found = !r.Digest.IsZero()
		}
	}
	if !found {
		t.Fatal("the entry was not replaced by the new boot's")
	}
}

// ---- item 16d: an authenticated state file --------------------------------

// A state file changed by someone without the key (an entry raised to claim
// more proven entries, moved to another machine, its MAC dropped) is
// refused; so is a key that is not the one it was written with.
func TestAttack16d_StateFileUnderKey(t *testing.T) {
	g := newGuest(t)
	state := emptyState()
	g.imaUpTo(10)
	monMustTrust(t, g.quote(false), g.withState(state))
	key := []byte("0123456789abcdef0123456789abcdef")
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	if err := state.Save(p, key); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadState(p, key); err != nil {
		t.Fatalf("state under its own key: %v", err)
	}
	orig, _ := os.ReadFile(p)
	write := func(b []byte) string {
		q := filepath.Join(dir, fmt.Sprintf("s%d.json", len(b)))
		if err := os.WriteFile(q, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return q
	}
	raised := bytes.Replace(orig, []byte(`"entries": 10`), []byte(`"entries": 11`), 1)
	if bytes.Equal(raised, orig) {
		t.Fatal("no IMA entry count in the state")
	}
	var noMAC MonitorState
	if err := json.Unmarshal(orig, &noMAC); err != nil {
		t.Fatal(err)
	}
	unsigned, _ := noMAC.Marshal(nil)
	for _, c := range []struct {
		name string
		file string
		key  []byte
	}{
		{"entry changed", write(raised), key},
		{"MAC dropped", write(unsigned), key},
		{"another key", p, []byte("another key, 16 bytes or more")},
		{"MAC but no key", p, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := LoadState(c.file, c.key); !errors.Is(err, ErrStateKey) {
				t.Fatalf("want ErrStateKey, got %v", err)
			}
		})
	}
}

// ---- item 16e: the prefix the state took on its word -----------------------

// An IMA entry renamed in the part the state proved: its bytes are not
// replayed again, so before the fix the rename passed silently.
func TestAttack16e_IMAPrefixRenamed(t *testing.T) {
	g := newGuest(t)
	state := emptyState()
	g.imaUpTo(10)
	monMustTrust(t, g.quote(false), g.withState(state))
	g.imaUpTo(20)
	b := g.quote(false)
	lg := logOf(b, "ima-binary")
	es := imaEntries(t, lg.Data)
	e5 := ima.NewBinaryReader(bytes.NewReader(es[5]), ima.Options{})
	ent, err := e5.Next()
	if err != nil {
		t.Fatal(err)
	}
	name := []byte(ent.FileName())
	at := bytes.Index(lg.Data, name)
	if at < 0 || at > len(join(es[:10])) {
		t.Fatalf("entry 5's name %q not in the proven part", name)
	}
	lg.Data = bytes.Clone(lg.Data)
	lg.Data[at+len(name)-1] ^= 0x01 // /usr/bin/evil one letter away
	monMustRefuse(t, b, g.withState(state), LayerApp, "changed after it was judged")
	// The list as the kernel wrote it resumes, and the report says which
	// entries were taken on the state's word.
	rep := monMustTrust(t, g.quote(false), g.withState(state))
	if !strings.Contains(reportText(rep), "10 IMA entries proven by the monitor state of") {
		t.Fatalf("report:\n%s", reportText(rep))
	}
}

// A record changed in the runtime log's part the state verified: the same.
func TestAttack16e_RuntimePrefixChanged(t *testing.T) {
	g := newGuest(t)
	state := emptyState()
	g.extend("mr_ctr.a", "x")
	g.imaUpTo(5)
	monMustTrust(t, g.quote(false), g.withState(state))
	off := state.Machines[MachineID(g.quote(false))].Runtime[0].Offset
	g.extend("mr_ctr.a", "y")
	b := g.quote(false)
	lg := logOf(b, "runtime")
	at := bytes.Index(lg.Data, []byte("mr_ctr.a"))
	if at < 0 || int64(at) >= off {
		t.Fatalf("no mr_ctr.a record in the verified part (at %d, offset %d)", at, off)
	}
	lg.Data = bytes.Clone(lg.Data)
	lg.Data[at+len("mr_ctr.")] = 'z'
	monMustRefuse(t, b, g.withState(state), LayerLogs, "differ from the ones the monitor state of")
	rep := monMustTrust(t, g.quote(false), g.withState(state))
	if !strings.Contains(reportText(rep), "records ("+fmt.Sprint(off)+" bytes) proven by the monitor state of") {
		t.Fatalf("report:\n%s", reportText(rep))
	}
}

// ---- the state carries weakenings -----------------------------------------

// A verdict that resumes from an entry built by weakened verdicts is itself
// weakened: a state cannot turn a weakened TRUSTED into a plain one.
func TestMonitorCarriesWeakenings(t *testing.T) {
	g := newGuest(t)
	state := emptyState()
	g.imaUpTo(10)
	monMustTrust(t, g.quote(false), g.withState(state))
	e := state.Machines[MachineID(g.quote(false))]
	if len(e.Weakened) != 0 {
		t.Fatalf("a sound verdict left weakenings %v", e.Weakened)
	}
	e.Weakened = []string{"history taken on trust"}
	g.imaUpTo(12)
	rep := monMustTrust(t, g.quote(false), g.withState(state))
	if !strings.Contains(rep.Verdict, "weakened: monitor state of ") || !strings.Contains(rep.Verdict, "history taken on trust") {
		t.Fatalf("verdict %q", rep.Verdict)
	}
	if w := state.Machines[MachineID(g.quote(false))].Weakened; len(w) != 1 || w[0] != "history taken on trust" {
		t.Fatalf("new entry weakenings %v", w)
	}
	// Without a nonce the bundle's freshness is not proven, but that is
	// about the bundle, not the history: it is not carried.
	o := g.withState(state)
	o.Nonce = nil
	g.imaUpTo(14)
	monMustTrust(t, g.quote(false), o)
	if w := state.Machines[MachineID(g.quote(false))].Weakened; len(w) != 1 {
		t.Fatalf("nonce weakening carried: %v", w)
	}
}

// The policy digest a state entry is bound to covers the files the policy
// references: a runtime policy changed under the same policy file is
// another policy.
func TestPolicyDigestCoversReferencedFiles(t *testing.T) {
	dir := t.TempDir()
	pf := filepath.Join(dir, "policy.json")
	rp := filepath.Join(dir, "rp.json")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(pf, `{"ima":{"runtime_policy":"rp.json"}}`)
	write(rp, keylimeFull(t, `{"digests":{"/bin/a":["`+strings.Repeat("00", 32)+`"]},"excludes":[]}`))
	p1, err := LoadPolicy(pf)
	if err != nil {
		t.Fatal(err)
	}
	write(rp, keylimeFull(t, `{"digests":{"/bin/a":["`+strings.Repeat("11", 32)+`"]},"excludes":[]}`))
	p2, err := LoadPolicy(pf)
	if err != nil {
		t.Fatal(err)
	}
	p3, err := LoadPolicy(pf)
	if err != nil {
		t.Fatal(err)
	}
	if p1.Digest.IsZero() || p1.Digest.Equal(p2.Digest) || !p2.Digest.Equal(p3.Digest) {
		t.Fatalf("digests %v %v %v", p1.Digest, p2.Digest, p3.Digest)
	}
	// A policy built in code has no digest: a state cannot be bound to it.
	g := newGuest(t)
	o := g.withState(emptyState())
	o.Policy = &Policy{}
	if _, err := Verify(context.Background(), g.quote(false), o); err == nil {
		t.Fatal("a policy without a digest was used with a monitor state")
	}
}
