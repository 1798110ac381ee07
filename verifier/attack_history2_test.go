package verifier

// Red team, round 2: a runtime log's history moved into a firmware log on
// the runtime log's own register (issue 15 item 1 through judgeStart's
// "firmware log" proof).

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/eventlog/tcg"
	"github.com/ccmr-dev/ccmr/mr"
)

// rt2CCELOf is a CCEL holding the runtime log entries ents as events on
// RTMR3 (CC MR index 4), each of type typ with data from data (nil: the
// entry's own event bytes).
func rt2CCELOf(t *testing.T, ents [][]byte, typ uint32, data func(i int, ev []byte) []byte) []byte {
	t.Helper()
	var recs []ccelRecord
	rd := aael.NewReader(bytes.NewReader(join(ents)), aael.Options{})
	for i := 0; ; i++ {
		e, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		d := bytes.Clone(e.Event)
		if data != nil {
			d = data(i, d)
		}
		recs = append(recs, ccelRecord{index: 4, typ: typ, data: d, digests: []mr.Digest{e.Digest}})
	}
	return buildCCEL([]mr.Alg{mr.SHA384}, recs)
}

// historyInCCEL verifies the attack bundle: the first k of n runtime log
// records (mr_ima records of IMA entries the policy refuses) moved into a
// CCEL made by mk as events on RTMR3, the runtime log starting with INIT
// at the value after them, the IMA list without those entries.
func historyInCCEL(t *testing.T, accept bool, mk func(ents [][]byte) []byte) *Report {
	t.Helper()
	const n, k = 20, 5
	honest, imaList, o := initWithoutHistoryBase(t, n, k)
	ents := entries(t, logOf(honest, "runtime").Data)
	forged := *honest
	forged.Logs = []bundle.Log{
		{Format: "ccel", Data: mk(ents[:k])},
		{Format: "runtime", Register: "rtmr3", Alg: "sha384", Data: withInit(t, foldRuntime(t, ents[:k]), ents[k:])},
		{Format: "ima-binary", Data: join(imaList[k:])},
	}
	forged.Registers = onlyReal(honest.Registers)
	o.AcceptUnverifiedHistory = accept
	return verifyT(t, &forged, o)
}

// Item 1 of issue 15 again, through the history rule's "firmware log"
// proof (red team round 2): the first k records of the runtime log are
// moved, byte for byte, into a made-up CCEL as events on RTMR3, the
// runtime log starts with INIT at the value after them, and the IMA list
// drops those entries. judgeStart took the CCEL's replay of rtmr3 as the
// proven start: plain TRUSTED. No TDX firmware or boot chain measures into
// RTMR3, so a CCEL with events there proves no runtime log's start.
func TestRedteam2_HistoryMovedIntoCCEL(t *testing.T) {
	rep := historyInCCEL(t, false, func(ents [][]byte) []byte { return rt2CCELOf(t, ents, aael.EvEventTag, nil) })
	if rep.Trusted {
		t.Fatalf("the runtime log's first records moved into a CCEL hide IMA entries from the policy: %s\n%s", rep.Verdict, reportText(rep))
	}
	mustFailLayer1(t, rep, "logs[0] (ccel) has 5 events on rtmr3")
}

// The same with EV_IPL events that carry made-up text.
func TestRedteam2_HistoryMovedIntoCCELAsIPL(t *testing.T) {
	text := func(i int, _ []byte) []byte {
		return []byte("grub_cmd: linux /vmlinuz root=/dev/vda" + strings.Repeat("1", i) + "\x00")
	}
	rep := historyInCCEL(t, false, func(ents [][]byte) []byte { return rt2CCELOf(t, ents, uint32(tcg.EvIPL), text) })
	mustFailLayer1(t, rep, "logs[0] (ccel) has 5 events on rtmr3")
}

// --accept-unverified-history makes it a weakened pass that names the
// register and the CCEL's events on it that were never judged.
func TestRedteam2_HistoryMovedIntoCCELAccepted(t *testing.T) {
	rep := historyInCCEL(t, true, func(ents [][]byte) []byte { return rt2CCELOf(t, ents, aael.EvEventTag, nil) })
	if !rep.Trusted || len(rep.Weakened) == 0 || !strings.Contains(reportText(rep), "logs[0] (ccel)'s 5 events on rtmr3 never judged") {
		t.Fatalf("accepted unverified history is not a weakened pass naming the CCEL's events on rtmr3: %s\n%s", rep.Verdict, reportText(rep))
	}
}

// On a TPM, a runtime log's backing PCR proves its start from a TCG2 log
// only when the log's events there are shim's MOK measurements on PCR 14,
// each at most once.
func TestFirmwareStartProblemsTCG2(t *testing.T) {
	ipl := func(s string) ccelRecord {
		return ccelRecord{index: 14, typ: uint32(tcg.EvIPL), data: []byte(s), digests: []mr.Digest{mr.SHA256.Sum([]byte(s))}}
	}
	regs := map[regKey]bool{{"pcr14", mr.SHA256}: true}
	for _, c := range []struct {
		recs []ccelRecord
		bad  int // events on pcr14 that are not shim's, 0: proven
	}{
		{[]ccelRecord{ipl("MokList\x00"), ipl("MokListX\x00"), ipl("MokSBState\x00"), ipl("MokListTrusted\x00"), ipl("MokPolicy\x00")}, 0},
		{[]ccelRecord{ipl("MokList\x00"), ipl("MokList\x00")}, 1},
		{[]ccelRecord{ipl("MokList")}, 1},
		{[]ccelRecord{ipl("SbatLevel\x00")}, 1},
		{[]ccelRecord{ipl("evil\x00"), ipl("MokListX\x00")}, 1},
		{[]ccelRecord{{index: 14, typ: aael.EvEventTag, data: []byte("MokList\x00"), digests: []mr.Digest{mr.SHA256.Sum(nil)}}}, 1},
		{[]ccelRecord{{index: 7, typ: uint32(tcg.EvIPL), data: []byte("x"), digests: []mr.Digest{mr.SHA256.Sum(nil)}}}, 0},
	} {
		fl, err := tcg.Parse("fw", buildCCEL([]mr.Alg{mr.SHA256}, c.recs), eventlog.FormatTCG2)
		if err != nil {
			t.Fatal(err)
		}
		got := firmwareStartProblems("fw", eventlog.FormatTCG2, fl, regs)
		if cs, bad := got["pcr14"]; bad != (c.bad > 0) || (bad && !strings.Contains(cs.unproven, "not shim's")) {
			t.Errorf("%+v: %+v", c.recs, got)
		}
	}
	// The same records in a CCEL on a register with a runtime log: none
	// is allowed.
	fl, err := tcg.Parse("fw", buildCCEL([]mr.Alg{mr.SHA384}, []ccelRecord{{index: 4, typ: uint32(tcg.EvIPL), data: []byte("MokList\x00"), digests: []mr.Digest{mr.SHA384.Sum(nil)}}}), eventlog.FormatCCEL)
	if err != nil {
		t.Fatal(err)
	}
	if got := firmwareStartProblems("fw", eventlog.FormatCCEL, fl, map[regKey]bool{{"rtmr3", mr.SHA384}: true}); got["rtmr3"].unproven == "" {
		t.Errorf("a CCEL event on rtmr3 proves the start: %+v", got)
	}
}
