package verifier

// Coverage attacks found by the red team (branch redteam,
// verifier/redteam_test.go; shared helpers in attack_helpers_test.go):
// IMA entries a quoted PCR covers but nothing judges, events on registers
// the evidence does not cover, and quoted registers no log explains. Each
// asserts the safe outcome.

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog/tcg"
	"github.com/ccmr-dev/ccmr/internal/imatest"
	"github.com/ccmr-dev/ccmr/mr"
)

// 1. On a TPM, PCR 10 is quoted and proves every IMA entry the kernel
// measured, but once the runtime log carries mr_ima records the verifier
// replays the IMA list against mr_ima only: entries after the last mr_ima
// record are "not proven (not judged by policy)" and PCR 10 is never
// compared. A guest whose root stops the forwarder (or never forwards the
// entry of its own binary) runs /tmp/evil: the kernel's list holds it, the
// runtime policy forbids it, the verdict is TRUSTED. Here the entry is
// appended to the real list (which then does not even replay to the quoted
// PCR 10).
func TestRedteam_TPMIMATailUnjudgedDespitePCR10(t *testing.T) {
	b, o := e2eTrustedTPM(t)
	pol, err := LoadPolicy("../testdata/e2e/host/policy.json")
	if err != nil {
		t.Fatal(err)
	}
	delete(pol.Registers, "pcr10") // a runtime policy, not a pinned PCR 10 (which changes with every file order)
	o.Policy = pol
	if rep := verifyT(t, b, o); !rep.Trusted {
		t.Fatalf("e2e bundle with its policy (no pcr10 pin) not trusted:\n%s", reportText(rep))
	}
	i := logIndex(t, b, "ima-binary")
	evil := imatest.Spec{Template: "ima-ng", FileAlg: "sha256", Name: "/tmp/evil"}
	b.Logs[i].Data = evil.AppendBinary(append([]byte(nil), b.Logs[i].Data...), binary.LittleEndian)
	mustRefuse(t, b, o, "an IMA entry the runtime policy forbids, on a TPM whose quoted PCR 10 covers it")
}

// 8. Events on registers the evidence does not cover. The guest chooses the
// quote's PCR selection (`tpm2_quote -l sha256:0,1,2,3,4,5,6,7`); events of
// the firmware log on any other PCR are "not in the evidence", a note, and
// the verdict is a plain TRUSTED. Here grub's kernel command line on PCR 8
// says "ro quiet" (the real one ran init=/bin/sh) next to a genuine quote
// of PCR 0-7 and SeaBIOS's real log. Issue 15 item 13 fails a log that
// checks no quoted register at all; this one checks eight.
func TestRedteam_EventsOnUnquotedPCRs(t *testing.T) {
	b, _ := e2eTrustedTPM(t)
	fw := append([]byte(nil), b.Logs[logIndex(t, b, "tcg2")].Data...)
	pcrs := replaySHA256PCRs(t, fw, 8)
	if len(pcrs) != 8 {
		t.Fatalf("replay gives %d of PCR 0-7", len(pcrs))
	}
	nonce := []byte("redteam nonce")
	q, ak := tpmQuoteOver(t, nonce, pcrs)
	fw = appendTCG2Event(fw, 8, 0xd, []byte("grub_cmd: linux /vmlinuz root=/dev/vda ro quiet\x00"))
	fw = appendTCG2Event(fw, 9, 0xd, []byte("/boot/vmlinuz-6.8.0-signed\x00"))
	nb := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTPM, Nonce: nonce,
		Evidence: bundle.Evidence{PublicKey: string(ak), TPMQuotes: []bundle.TPMQuote{q}},
		Logs:     []bundle.Log{{Format: "tcg2", Source: "firmware", Data: fw}}}
	o := Options{TrustedKeys: [][]byte{ak}, Nonce: nonce}
	nb.Logs[0].Data = b.Logs[logIndex(t, b, "tcg2")].Data
	if rep := verifyT(t, nb, o); !rep.Trusted {
		t.Fatalf("the quote of PCR 0-7 with the real log is not trusted:\n%s", reportText(rep))
	}
	nb.Logs[0].Data = fw
	mustRefuse(t, nb, o, "grub events on PCR 8-9, which the quote does not cover")
}

// 11. Registers no log explains. A CCEL with every RTMR1 and RTMR2 event
// (kernel, initrd, command line) taken out, next to the real quote: TRUSTED,
// "N events replay to 1 quoted register values", and nothing says that
// RTMR1 and RTMR2, the registers holding what the TD booted, are explained
// by no log at all. (verifier.TestRealTDXQuoteWithCCEL relies on this.) A
// quoted register that a firmware log of the bundle should cover but does
// not is reported, or the verdict is not a plain TRUSTED.
func TestRedteam_CCELOmitsRegisters(t *testing.T) {
	ctx := context.Background()
	raw := corpusFile(t, "go-eventlog/ccel/cos-113-intel-tdx.bin")
	l, err := tcg.Parse("ccel", raw, "ccel")
	if err != nil {
		t.Fatal(err)
	}
	// A sim device (tdx layout) brought to the values the real CCEL
	// replays to, so only the rule itself can fail the bundle.
	g := newGuest(t)
	var kept []byte
	for i, e := range l.Events {
		end := l.End
		if i+1 < len(l.Events) {
			end = l.Events[i+1].Offset
		}
		if i == 0 || (e.Index != 2 && e.Index != 3) { // the header, and every event but RTMR1's and RTMR2's
			kept = append(kept, raw[e.Offset:end]...)
		}
		d, ok := e.Digest(mr.SHA384)
		if !ok || e.Type == 3 || e.Index < 1 || e.Index > 4 {
			continue
		}
		if err := g.dev.Extend(ctx, fmt.Sprintf("rtmr%d", e.Index-1), d); err != nil {
			t.Fatal(err)
		}
	}
	ev, err := g.dev.Attest(ctx, []byte("n"))
	if err != nil {
		t.Fatal(err)
	}
	o := g.opts()
	o.Nonce = []byte("n")
	if rep := verifyT(t, bundle.New(ev, []bundle.Log{{Format: "ccel", Data: raw}}, nil), o); !rep.Trusted {
		t.Fatalf("the whole CCEL is not trusted:\n%s", reportText(rep))
	}
	rep := verifyT(t, bundle.New(ev, []bundle.Log{{Format: "ccel", Data: kept}}, nil), o)
	if !rep.Trusted {
		return
	}
	notes := strings.Join(append(rep.Layers[1].NotChecked, rep.Weakened...), "\n")
	if !strings.Contains(notes, "rtmr1") || !strings.Contains(notes, "rtmr2") {
		t.Fatalf("RTMR1 and RTMR2 explained by no log, and the report does not say so:\n%s", reportText(rep))
	}
}

// ---- variants and the honest side of the three rules ------------------------

// Attack 1 with a monitor state: the second verification resumes after the
// entries mr_ima proved, yet the quoted PCR 10 is replayed over the whole
// list, so the entry after the last mr_ima record is proven and judged,
// and an appended one is refused.
func TestCoverage_TPMIMATailWithMonitorState(t *testing.T) {
	b, o := e2eTrustedTPM(t)
	pol, err := LoadPolicy("../testdata/e2e/host/policy.json")
	if err != nil {
		t.Fatal(err)
	}
	delete(pol.Registers, "pcr10")
	o.Policy = pol
	o.Monitor = &MonitorState{Format: StateFormat, Machines: map[string]*MachineState{}}
	for i := 0; i < 2; i++ {
		rep := verifyT(t, b, o)
		if !rep.Trusted || len(rep.Weakened) > 0 {
			t.Fatalf("run %d with the state:\n%s", i, reportText(rep))
		}
		if got := strings.Join(rep.Layers[3].Checked, "\n"); !strings.Contains(got, "replay to the quoted PCR 10") {
			t.Fatalf("run %d: PCR 10 not replayed:\n%s", i, reportText(rep))
		}
	}
	i := logIndex(t, b, "ima-binary")
	evil := imatest.Spec{Template: "ima-ng", FileAlg: "sha256", Name: "/tmp/evil"}
	b.Logs[i].Data = evil.AppendBinary(append([]byte(nil), b.Logs[i].Data...), binary.LittleEndian)
	mustRefuse(t, b, o, "an appended IMA entry, resumed from the monitor state")
}

// Attack 1, the honest side: the e2e list has one entry after the last
// mr_ima record (measured after the forwarder's last pass); PCR 10 proves
// it, and the runtime policy judges it instead of leaving it unproven.
func TestCoverage_TPMIMATailJudged(t *testing.T) {
	b, o := e2eTrustedTPM(t)
	rep := verifyT(t, b, o)
	if got := strings.Join(rep.Layers[3].Checked, "\n"); !strings.Contains(got, "after the last mr_ima record are proven by the quoted PCRs") {
		t.Fatalf("the tail is not proven by PCR 10:\n%s", reportText(rep))
	}
	if strings.Contains(strings.Join(rep.Layers[3].NotChecked, "\n"), "not proven") {
		t.Fatalf("an unproven tail is still reported:\n%s", reportText(rep))
	}
}

// Attack 2: the failure names the uncovered registers; the opt-in makes it
// a weakened pass that names them too.
func TestCoverage_UnquotedLogRegistersFlag(t *testing.T) {
	b, _ := e2eTrustedTPM(t)
	fw := append([]byte(nil), b.Logs[logIndex(t, b, "tcg2")].Data...)
	pcrs := replaySHA256PCRs(t, fw, 6)
	nonce := []byte("coverage nonce")
	q, ak := tpmQuoteOver(t, nonce, pcrs) // PCR 0-5: the log's PCR 6 and 7 events are not covered
	fw = appendTCG2Event(fw, 8, 0xd, []byte("grub_cmd: linux /vmlinuz ro quiet\x00"))
	nb := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTPM, Nonce: nonce,
		Evidence: bundle.Evidence{PublicKey: string(ak), TPMQuotes: []bundle.TPMQuote{q}},
		Logs:     []bundle.Log{{Format: "tcg2", Source: "firmware", Data: fw}}}
	o := Options{TrustedKeys: [][]byte{ak}, Nonce: nonce}
	rep := verifyT(t, nb, o)
	mustFailLayer1(t, rep, "events on pcr6, pcr7, pcr8, which the evidence does not cover")
	if !rep.Trusted && rep.Layers[1].Failure.Register != "pcr6" {
		t.Errorf("failure register %q, want pcr6", rep.Layers[1].Failure.Register)
	}
	o.AllowUnquotedLogRegisters = true
	rep = verifyT(t, nb, o)
	if !rep.Trusted || !strings.Contains(rep.Verdict, "weakened") || !strings.Contains(strings.Join(rep.Weakened, "\n"), "pcr6, pcr7, pcr8, which the evidence does not cover, taken on trust") {
		t.Fatalf("with --allow-unquoted-log-registers:\n%s", reportText(rep))
	}
	// The opt-in does not rescue a log that covers no quoted register.
	q2, ak2 := tpmQuoteOver(t, nonce, map[int][]byte{16: make([]byte, 32)})
	nb.Evidence = bundle.Evidence{PublicKey: string(ak2), TPMQuotes: []bundle.TPMQuote{q2}}
	o.TrustedKeys = [][]byte{ak2}
	mustFailLayer1(t, verifyT(t, nb, o), "the log proves nothing")
}

// Attack 2, banks: a quote of the sha256 bank only next to a log with sha1
// and sha256 digests checks every event in sha256; the sha1 bank is a note,
// not a failure (the honest shape of `tpm2_quote -l sha256:...`).
func TestCoverage_OtherBankIsANote(t *testing.T) {
	b, o := e2eTrustedTPM(t)
	var keep []bundle.TPMQuote
	for _, q := range b.Evidence.TPMQuotes {
		if q.Alg == "sha256" {
			keep = append(keep, q)
		}
	}
	b.Evidence.TPMQuotes = keep
	rep := verifyT(t, b, o)
	if !rep.Trusted || len(rep.Weakened) > 0 {
		t.Fatalf("sha256 quote only:\n%s", reportText(rep))
	}
	if !strings.Contains(strings.Join(rep.Layers[1].NotChecked, "\n"), "pcr0 sha1 is not in the evidence: its 1 events are checked in the banks the evidence holds") {
		t.Fatalf("the sha1 bank is not reported:\n%s", reportText(rep))
	}
}

// Attack 3, the note: registers no log explains are reported, whatever the
// platform; registers at their reset value are not.
func TestCoverage_RegistersExplainedByNoLog(t *testing.T) {
	g := newGuest(t)
	if err := g.dev.Extend(context.Background(), "rtmr2", mr.SHA384.Sum([]byte("kernel"))); err != nil {
		t.Fatal(err)
	}
	ev, err := g.dev.Attest(context.Background(), []byte("n"))
	if err != nil {
		t.Fatal(err)
	}
	rep := verifyT(t, bundle.New(ev, nil, nil), g.opts())
	notes := strings.Join(rep.Layers[1].NotChecked, "\n")
	if !rep.Trusted || !strings.Contains(notes, "rtmr2 (sha384) is quoted but explained by no log") || strings.Contains(notes, "rtmr1") {
		t.Fatalf("rtmr2 extended, no log:\n%s", reportText(rep))
	}
}

// Attack 3, the TPM side: a SeaBIOS log with PCR 4's events (the boot
// loader) taken out, next to the real quote, is incomplete.
func TestCoverage_TCG2OmitsFirmwarePCR(t *testing.T) {
	b, o := e2eTrustedTPM(t)
	i := logIndex(t, b, "tcg2")
	raw := b.Logs[i].Data
	l, err := tcg.Parse("fw", raw, "tcg2")
	if err != nil {
		t.Fatal(err)
	}
	var kept []byte
	for j, e := range l.Events {
		end := l.End
		if j+1 < len(l.Events) {
			end = l.Events[j+1].Offset
		}
		if j == 0 || e.Index != 4 {
			kept = append(kept, raw[e.Offset:end]...)
		}
	}
	b.Logs[i].Data = kept
	mustFailLayer1(t, verifyT(t, b, o), "has no event for pcr4 (sha1, sha256)")
}

// Attack 1, entries on a PCR the quote does not cover: a TPM quote of PCR
// 0-10 and 14 (the runtime log's backing PCR), an IMA list with an entry on
// PCR 11 (an IMA policy rule pcr=11). mr_ima's records prove that entry;
// the quoted PCR 10 proves the others: TRUSTED without a runtime policy; a
// Keylime runtime policy fails the proven PCR 11 entry, as Keylime fails
// every entry on a PCR other than 10. An entry on PCR 11 after the last
// mr_ima record is proven by nothing: the runtime policy cannot judge it
// and fails.
func TestCoverage_MrIMAProvesEntriesOnUnquotedPCR(t *testing.T) {
	bootAgg := sha256.Sum256(make([]byte, 10*32))
	specs := []imatest.Spec{{Template: "ima-ng", FileAlg: "sha256", Name: "boot_aggregate", Digest: bootAgg[:]},
		imatest.NG(1), {Template: "ima-ng", FileAlg: "sha256", Name: "/etc/pcr11", PCR: 11}, imatest.NG(3)}
	list := specsList(specs...)
	b, o := pcrBundle(t, list, len(specs))
	rep := verifyT(t, b, o)
	if !rep.Trusted || len(rep.Weakened) > 0 {
		t.Fatalf("PCR 11 entry proven by mr_ima:\n%s", reportText(rep))
	}
	o.Policy = &Policy{Runtime: allowAll(t, list)}
	if rep := verifyT(t, b, o); rep.Trusted || rep.FailedLayer() != LayerPolicy || !strings.Contains(rep.Layers[LayerPolicy].Failure.Reason, `"/etc/pcr11" is on PCR 11: Keylime fails`) {
		t.Fatalf("a Keylime runtime policy passed an entry on PCR 11:\n%s", reportText(rep))
	}
	if got := strings.Join(rep.Layers[3].Checked, "\n"); !strings.Contains(got, "1 IMA entries on PCR 11 (not quoted) are proven by their mr_ima records") ||
		strings.Contains(strings.Join(rep.Layers[3].NotChecked, "\n"), "not proven") {
		t.Fatalf("the report does not say mr_ima proves the PCR 11 entry:\n%s", reportText(rep))
	}
	more := append(specs, imatest.Spec{Template: "ima-ng", FileAlg: "sha256", Name: "/tmp/evil", PCR: 11})
	list = specsList(more...)
	b, o = pcrBundle(t, list, len(specs))
	o.Policy = &Policy{Runtime: allowAll(t, list)} // allowed, yet proven by nothing
	rep = verifyT(t, b, o)
	if rep.Trusted || rep.FailedLayer() != LayerPolicy || !strings.Contains(rep.Layers[LayerPolicy].Failure.Reason, "PCR 11, which the evidence does not quote") {
		t.Fatalf("an unproven PCR 11 entry after the last mr_ima record:\n%s", reportText(rep))
	}
}
