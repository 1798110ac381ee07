package verifier

// Attack tests for issue 15, items 1, 13, 14 and 17 (history and logs,
// layer 1): each builds the hostile input and checks that it is refused;
// each failed (was TRUSTED) on the code before the fix. The sound inputs
// next to them keep verifying.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/eventlog/dstack"
	"github.com/ccmr-dev/ccmr/eventlog/tcg"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tdxverify"
)

// mustFailLayer1 checks that rep is not trusted, failed at layer 1, and that
// the failure's reason holds want. It does not stop the test, so that every
// variant of an attack in one test is tried.
func mustFailLayer1(t *testing.T, rep *Report, want string) {
	t.Helper()
	if rep.Trusted || rep.FailedLayer() != LayerLogs || !strings.Contains(rep.Layers[LayerLogs].Failure.Reason, want) {
		t.Errorf("want a layer 1 failure saying %q:\n%s", want, reportText(rep))
	}
}

// foldRuntime replays runtime log entries (no INIT) from zero and returns
// the backing register's value after them.
func foldRuntime(t *testing.T, ents [][]byte) mr.Digest {
	t.Helper()
	res, err := aael.Replay(aael.NewReader(bytes.NewReader(join(ents)), aael.Options{}), aael.ReplayOptions{Backing: "rtmr3"})
	if err != nil {
		t.Fatal(err)
	}
	v, ok := res.Value("rtmr3")
	if !ok {
		t.Fatal("no rtmr3 in the replay")
	}
	return v
}

// withInit prefixes entries with an INIT entry holding start.
func withInit(t *testing.T, start mr.Digest, ents [][]byte) []byte {
	t.Helper()
	b, err := runtimeInit(start)
	if err != nil {
		t.Fatal(err)
	}
	return append(b, join(ents)...)
}

// Item 1: the first K records of the runtime log are deleted, an INIT holds
// the register's value after them, and the matching IMA entries are
// dropped: the rest replays to the quoted rtmr3 and a runtime policy that
// one dropped entry breaks passed. Refused now; with
// AcceptUnverifiedHistory it passes weakened, naming what was not judged.
func TestAttack01_InitWithoutHistory(t *testing.T) {
	const n, k = 20, 5
	honest, imaList, o := initWithoutHistoryBase(t, n, k)

	rl := logOf(honest, "runtime")
	ents := entries(t, rl.Data)
	forged := *honest
	forged.Logs = []bundle.Log{
		{Format: "runtime", Register: "rtmr3", Alg: "sha384", Data: withInit(t, foldRuntime(t, ents[:k]), ents[k:])},
		{Format: "ima-binary", Data: join(imaList[k:])},
	}
	forged.Registers = onlyReal(honest.Registers)
	mustFailLayer1(t, verifyT(t, &forged, o), "which nothing proves")

	o.AcceptUnverifiedHistory = true
	rep := verifyT(t, &forged, o)
	want := fmt.Sprintf("rtmr3: history before INIT sha384:%x never judged; %d records judged after it", foldRuntime(t, ents[:k]).Bytes, len(ents)-k)
	if !rep.Trusted || !strings.Contains(rep.Verdict, "weakened") || !strings.Contains(rep.Verdict, want) {
		t.Fatalf("with --accept-unverified-history: want a weakened TRUSTED naming %q:\n%s", want, reportText(rep))
	}
}

// Item 1, variant: the history is extended into the register outside any
// log, and an aael-text runtime log starts with an INIT at the value after
// it. Refused.
func TestAttack01_TextInitWithoutHistory(t *testing.T) {
	ctx := context.Background()
	dev, err := sim.Open(ctx, filepath.Join(t.TempDir(), "sim"))
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Extend(ctx, "rtmr3", mr.SHA384.Sum([]byte("a kernel module the policy forbids"))); err != nil {
		t.Fatal(err)
	}
	vs, err := dev.Read(ctx, "rtmr3")
	if err != nil {
		t.Fatal(err)
	}
	text, err := aael.AppendTextInit(nil, vs[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := aael.ParseRecord("mr_ctr.a extend sha384/" + strings.Repeat("ab", 48))
	if err != nil {
		t.Fatal(err)
	}
	if text, err = aael.AppendTextLine(text, rec); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.SplitAfter(strings.TrimSuffix(string(text), "\n"), "\n") {
		if err := dev.Extend(ctx, "rtmr3", mr.SHA384.Sum([]byte(strings.TrimSuffix(line, "\n")))); err != nil {
			t.Fatal(err)
		}
	}
	ev, err := dev.Attest(ctx, []byte("n"))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := dev.PublicKeyPEM(ctx)
	b := bundle.New(ev, []bundle.Log{{Format: "aael-text", Register: "rtmr3", Alg: "sha384", Data: text}}, nil)
	o := Options{AllowSim: true, SimKeys: [][]byte{key}, Nonce: []byte("n")}
	mustFailLayer1(t, verifyT(t, b, o), "which nothing proves")

	// The same log form starting at zero (its INIT line holds zero) is sound.
	dev2, err := sim.Open(ctx, filepath.Join(t.TempDir(), "sim"))
	if err != nil {
		t.Fatal(err)
	}
	text, _ = aael.AppendTextInit(nil, mr.Zero(mr.SHA384))
	text, _ = aael.AppendTextLine(text, rec)
	for _, line := range strings.SplitAfter(strings.TrimSuffix(string(text), "\n"), "\n") {
		if err := dev2.Extend(ctx, "rtmr3", mr.SHA384.Sum([]byte(strings.TrimSuffix(line, "\n")))); err != nil {
			t.Fatal(err)
		}
	}
	ev, _ = dev2.Attest(ctx, []byte("n"))
	key, _ = dev2.PublicKeyPEM(ctx)
	b = bundle.New(ev, []bundle.Log{{Format: "aael-text", Register: "rtmr3", Alg: "sha384", Data: text}}, nil)
	o.SimKeys = [][]byte{key}
	if rep := verifyT(t, b, o); !rep.Trusted || !strings.Contains(reportText(rep), "starts at the reset value of rtmr3") {
		t.Fatalf("aael-text log from zero:\n%s", reportText(rep))
	}
}

// Item 1, variant: a cut segment's snapshot record is deleted and its value
// moved into INIT, the archived segment and the IMA entries before the cut
// dropped: the virtual registers then start at zero in the segment, and the
// rest replays to the quoted rtmr3. Refused.
func TestAttack01_SnapshotIntoInit(t *testing.T) {
	g := newGuest(t)
	g.imaUpTo(10)
	g.extend("mr_ctr.a", "1")
	if _, err := g.s.Cut(context.Background()); err != nil {
		t.Fatal(err)
	}
	g.imaUpTo(20)
	honest := g.quote(true)
	if rep := verifyT(t, honest, g.opts()); !rep.Trusted {
		t.Fatalf("honest chain:\n%s", reportText(rep))
	}
	cur := honest.Logs[1].Data
	ents := entries(t, cur) // INIT, snapshot, records...
	rd := aael.NewReader(bytes.NewReader(cur), aael.Options{})
	init, err := rd.Next()
	if err != nil || init.Init.IsZero() {
		t.Fatalf("the segment does not start with INIT: %v", err)
	}
	snap, err := rd.Next()
	if err != nil || snap.Record.Operation != aael.OpSnapshot {
		t.Fatalf("the segment's first record is not its snapshot: %v", err)
	}
	after, err := mr.Extend(init.Init, snap.Digest.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	forged := *honest
	forged.Logs = []bundle.Log{
		{Format: "runtime", Register: "rtmr3", Alg: "sha384", Data: withInit(t, after, ents[2:])},
		{Format: "ima-binary", Data: join(imaEntries(t, logOf(honest, "ima-binary").Data)[10:])},
	}
	forged.Registers = onlyReal(honest.Registers)
	mustFailLayer1(t, verifyT(t, &forged, g.opts()), "which nothing proves")

}

// Item 1, variant: a cut segment alone (its archive not shipped) starts
// with a snapshot nothing proves: refused; with the opt-in it passes
// weakened, the snapshot taken on trust.
func TestAttack01_CutSegmentAlone(t *testing.T) {
	g := newGuest(t)
	g.extend("mr_ctr.a", "1")
	if _, err := g.s.Cut(context.Background()); err != nil {
		t.Fatal(err)
	}
	g.extend("mr_ctr.a", "2")
	alone := g.quote(false)
	mustFailLayer1(t, verifyT(t, alone, g.opts()), "snapshot that nothing proves")
	o := g.opts()
	o.AcceptUnverifiedHistory = true
	rep := verifyT(t, alone, o)
	if !rep.Trusted || !strings.Contains(rep.Verdict, "rtmr3: history before INIT") || !strings.Contains(rep.Verdict, "(snapshot of mr_ctr.a taken on trust); 2 records judged after it") {
		t.Fatalf("cut segment alone with the opt-in:\n%s", reportText(rep))
	}
}

// Item 1 with the monitor state: a state that verified the whole first
// segment proves the next segment's start, so a bundle with only the new
// segment is trusted; the state is not advanced by a weakened run.
func TestAttack01_StateProvesStart(t *testing.T) {
	g := newGuest(t)
	g.extend("mr_ctr.a", "1")
	st := &MonitorState{Format: StateFormat, Machines: map[string]*MachineState{}}
	o := g.opts()
	o.Monitor = st
	if rep := verifyT(t, g.quote(true), o); !rep.Trusted {
		t.Fatalf("first bundle:\n%s", reportText(rep))
	}
	if _, err := g.s.Cut(context.Background()); err != nil {
		t.Fatal(err)
	}
	g.extend("mr_ctr.a", "2")
	b := g.quote(false) // the new segment only: its INIT is where the state stopped
	if rep := verifyT(t, b, o); !rep.Trusted {
		t.Fatalf("new segment with the state that saw the cut:\n%s", reportText(rep))
	}
	// Without the state the same bundle proves nothing before the cut.
	mustFailLayer1(t, verifyT(t, b, g.opts()), "snapshot that nothing proves")
	// A weakened run does not advance a state.
	st2 := &MonitorState{Format: StateFormat, Machines: map[string]*MachineState{}}
	o2 := g.opts()
	o2.Monitor, o2.AcceptUnverifiedHistory = st2, true
	if rep := verifyT(t, b, o2); !rep.Trusted || len(st2.Machines) != 0 {
		t.Fatalf("weakened run with a state: trusted=%v, state %+v:\n%s", rep.Trusted, st2.Machines, reportText(rep))
	}
}

// tdxOpts are the options for the corpus TDX quotes of these tests: their
// time, their REPORTDATA as the nonce. The attacks here are on layer 1.
func tdxOpts(at time.Time, nonce []byte) Options {
	return Options{At: at, Nonce: nonce, AllowMissingCollateral: true} // the corpus quotes carry no collateral (item 3)
}

// dstackBundle is dstack's simulator quote with the given logs.
func dstackBundle(t *testing.T, logs ...bundle.Log) (*bundle.Bundle, Options) {
	quote := corpusFile(t, "dstack/simulator-quote.bin")
	qr, err := tdxverify.ParseQuote(quote)
	if err != nil {
		t.Fatal(err)
	}
	nonce := qr.Body.ReportData[:]
	b := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTDX, Nonce: nonce, Evidence: bundle.Evidence{Report: quote}, Logs: logs}
	return b, tdxOpts(time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), nonce)
}

// dstackEvents decodes dstack's simulator log for editing.
func dstackEvents(t *testing.T) []map[string]any {
	var evs []map[string]any
	dec := json.NewDecoder(bytes.NewReader(corpusFile(t, "dstack/simulator-eventlog.json")))
	dec.UseNumber()
	if err := dec.Decode(&evs); err != nil {
		t.Fatal(err)
	}
	return evs
}

func encodeEvents(t *testing.T, evs []map[string]any) []byte {
	b, err := json.Marshal(evs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dstackRTMR3 is the value dstack's simulator log replays RTMR3 to.
func dstackRTMR3(t *testing.T, data []byte) mr.Digest {
	res, err := dstack.Replay(dstack.NewReader(bytes.NewReader(data), "log"), "log", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range res.Registers {
		if v.Register.Name == "rtmr3" {
			return v.Digest
		}
	}
	t.Fatal("no rtmr3 in dstack's log")
	return mr.Digest{}
}

// Item 14: a runtime log on rtmr3 holding only an INIT at the quoted value
// made the verifier skip rtmr3 in dstack's log: its compose-hash event,
// rewritten with a self-consistent digest, was free text. Now the runtime
// log must start where dstack's log ends, so the forgery fails; the
// honest log with the same INIT is trusted.
func TestAttack14_RuntimeLogHidesDstackEvents(t *testing.T) {
	real := corpusFile(t, "dstack/simulator-eventlog.json")
	initOnly := func(v mr.Digest) bundle.Log {
		return bundle.Log{Format: "runtime", Register: "rtmr3", Alg: "sha384", Data: withInit(t, v, nil)}
	}
	quoted := dstackRTMR3(t, real)

	evs := dstackEvents(t)
	for _, e := range evs {
		if e["event"] == "compose-hash" {
			payload := []byte(strings.Repeat("e", 64))
			e["event_payload"] = hex.EncodeToString(payload)
			e["digest"] = dstack.RuntimeDigest(dstack.RuntimeEventType, "compose-hash", payload).Hex()
		}
	}
	b, o := dstackBundle(t, bundle.Log{Format: "dstack-json", Data: encodeEvents(t, evs)}, initOnly(quoted))
	mustFailLayer1(t, verifyT(t, b, o), "which nothing proves")

	// dstack's RTMR3 events left out: the runtime log's INIT is then
	// proven by nothing (RTMR3 resets to zero).
	var boot []map[string]any
	for _, e := range dstackEvents(t) {
		if fmt.Sprint(e["imr"]) != "3" {
			boot = append(boot, e)
		}
	}
	b, o = dstackBundle(t, bundle.Log{Format: "dstack-json", Data: encodeEvents(t, boot)}, initOnly(quoted))
	mustFailLayer1(t, verifyT(t, b, o), "which nothing proves")

	// The honest log with the same runtime log: trusted.
	b, o = dstackBundle(t, bundle.Log{Format: "dstack-json", Data: real}, initOnly(quoted))
	rep := verifyT(t, b, o)
	if !rep.Trusted || !strings.Contains(reportText(rep), "starts at the value logs[0] (dstack-json) replays rtmr3 to") {
		t.Fatalf("dstack log and a runtime log starting where it ends:\n%s", reportText(rep))
	}
}

// ccelRecord is one TCG_PCR_EVENT2 record for buildCCEL; digests maps an
// algorithm to its digest (none: a record without digests).
type ccelRecord struct {
	index   uint32
	typ     uint32
	data    []byte
	digests []mr.Digest
}

// buildCCEL writes a crypto-agile log: the SHA1-format Spec ID header
// declaring banks, then the records.
func buildCCEL(banks []mr.Alg, recs []ccelRecord) []byte {
	le := binary.LittleEndian
	spec := append([]byte("Spec ID Event03\x00"), 0, 0, 0, 0, 0, 2, 0, 2)
	spec = le.AppendUint32(spec, uint32(len(banks)))
	for _, a := range banks {
		spec = le.AppendUint16(spec, uint16(a))
		spec = le.AppendUint16(spec, uint16(a.Size()))
	}
	spec = append(spec, 0)
	var out []byte
	out = le.AppendUint32(out, 0)
	out = le.AppendUint32(out, 3) // EV_NO_ACTION
	out = append(out, make([]byte, 20)...)
	out = le.AppendUint32(out, uint32(len(spec)))
	out = append(out, spec...)
	for _, r := range recs {
		out = le.AppendUint32(out, r.index)
		out = le.AppendUint32(out, r.typ)
		out = le.AppendUint32(out, uint32(len(r.digests)))
		for _, d := range r.digests {
			out = le.AppendUint16(out, uint16(d.Alg))
			out = append(out, d.Bytes...)
		}
		out = le.AppendUint32(out, uint32(len(r.data)))
		out = append(out, r.data...)
	}
	return out
}

// tappdBundle is dcap-qvl's quote-from-tappd (a real dstack TDX quote) with
// the given CCEL.
func tappdBundle(t *testing.T, ccel []byte) (*bundle.Bundle, Options) {
	quote := corpusFile(t, "dcap-qvl/quote-from-tappd.bin")
	qr, err := tdxverify.ParseQuote(quote)
	if err != nil {
		t.Fatal(err)
	}
	nonce := qr.Body.ReportData[:]
	return &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTDX, Nonce: nonce, Evidence: bundle.Evidence{Report: quote},
		Logs: []bundle.Log{{Format: "ccel", Data: ccel}}}, tdxOpts(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), nonce)
}

// Item 13: a made-up CCEL ("evil kernel", init=/bin/sh) with one record
// that carries no sha384 digest dropped the sha384 bank from the replay,
// and next to a real TDX quote it was TRUSTED as "3 events replay to 0
// quoted register values". Refused now.
func TestAttack13_RecordWithoutDigest(t *testing.T) {
	sum := func(s string) []mr.Digest { return []mr.Digest{mr.SHA384.Sum([]byte(s))} }
	ccel := buildCCEL([]mr.Alg{mr.SHA384}, []ccelRecord{
		{index: 2, typ: uint32(tcg.EvIPL), data: []byte("evil kernel"), digests: sum("evil kernel")},
		{index: 2, typ: uint32(tcg.EvIPL), data: []byte("init=/bin/sh"), digests: sum("init=/bin/sh")},
		{index: 1, typ: uint32(tcg.EvAction), data: []byte("no digest")},
	})
	b, o := tappdBundle(t, ccel)
	mustFailLayer1(t, verifyT(t, b, o), "carries no sha384 digest")

	// The same with a second declared bank the bad record does carry.
	ccel = buildCCEL([]mr.Alg{mr.SHA384, mr.SHA256}, []ccelRecord{
		{index: 2, typ: uint32(tcg.EvIPL), data: []byte("evil kernel"), digests: append(sum("evil kernel"), mr.SHA256.Sum([]byte("evil kernel")))},
		{index: 1, typ: uint32(tcg.EvAction), data: []byte("x"), digests: []mr.Digest{mr.SHA256.Sum([]byte("x"))}},
	})
	b, o = tappdBundle(t, ccel)
	mustFailLayer1(t, verifyT(t, b, o), "carries no sha384 digest")
}

// Item 13, variant: a log in a bank the evidence does not have (a sha256
// CCEL next to a TDX quote) replays to no quoted register: it proves
// nothing and fails instead of being listed as not checked.
func TestAttack13_LogInAnotherBank(t *testing.T) {
	ccel := buildCCEL([]mr.Alg{mr.SHA256}, []ccelRecord{
		{index: 2, typ: uint32(tcg.EvIPL), data: []byte("init=/bin/sh"), digests: []mr.Digest{mr.SHA256.Sum([]byte("init=/bin/sh"))}},
	})
	b, o := tappdBundle(t, ccel)
	mustFailLayer1(t, verifyT(t, b, o), "replay to no quoted register value")
}

// Item 13, variant: two real CCELs concatenated. The second header parses
// as records without digests, which dropped the bank; refused now. The
// real CCEL alone (its RTMR1 events, from another boot, left out as in
// TestRealTDXQuoteWithCCEL) replays to the quote's RTMR0 and fails only
// for the RTMR1 it no longer explains (coverage.go); the concatenation
// fails before that, for its own reason.
func TestAttack13_ConcatenatedCCELs(t *testing.T) {
	raw := corpusFile(t, "dstack/ccel.bin")
	l, err := tcg.Parse("ccel.bin", raw, eventlog.FormatCCEL)
	if err != nil {
		t.Fatal(err)
	}
	var ccel []byte
	for i, e := range l.Events {
		end := l.End
		if i+1 < len(l.Events) {
			end = l.Events[i+1].Offset
		}
		if i == 0 || e.Index != 2 {
			ccel = append(ccel, raw[e.Offset:end]...)
		}
	}
	b, o := tappdBundle(t, ccel)
	mustFailLayer1(t, verifyT(t, b, o), "has no event for rtmr1")
	// The second copy brings a second EV_SEPARATOR, which some OVMF
	// builds need a policy to allow; with it, the log was TRUSTED.
	two := append(append([]byte(nil), ccel...), ccel...)
	b, o = tappdBundle(t, two)
	o.Policy = &Policy{AllowDuplicateSeparator: true}
	mustFailLayer1(t, verifyT(t, b, o), "carries no sha384 digest")
	o.Policy = nil
	mustFailLayer1(t, verifyT(t, b, o), "carries no sha384 digest")
}

// Item 17: an RTMR3 event whose type is changed from dstack's runtime type
// keeps its digest (so the replay still gives the quoted RTMR3) with a
// forged payload; the verifier did not recompute it and said TRUSTED.
// Every RTMR3 event is a runtime event in dstack: another type is refused.
func TestAttack17_DstackEventType(t *testing.T) {
	for _, typ := range []int{1, 0x80000001, 0x08000002} {
		t.Run(fmt.Sprintf("0x%x", typ), func(t *testing.T) {
			evs := dstackEvents(t)
			for _, e := range evs {
				if e["event"] == "compose-hash" {
					e["event_type"] = typ
					e["event_payload"] = hex.EncodeToString([]byte(strings.Repeat("e", 64)))
				}
			}
			b, o := dstackBundle(t, bundle.Log{Format: "dstack-json", Data: encodeEvents(t, evs)})
			mustFailLayer1(t, verifyT(t, b, o), "compose-hash")
		})
	}
	// The honest log: trusted, and the boot events whose digests cannot be
	// recomputed from the JSON are reported as not checked.
	b, o := dstackBundle(t, bundle.Log{Format: "dstack-json", Data: corpusFile(t, "dstack/simulator-eventlog.json")})
	rep := verifyT(t, b, o)
	if !rep.Trusted || !strings.Contains(strings.Join(rep.Layers[LayerLogs].NotChecked, "\n"), "20 boot events") {
		t.Fatalf("dstack's own log:\n%s", reportText(rep))
	}
}
