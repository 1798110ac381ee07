package verifier

// Red team, round 5: inputs that made the verifier say TRUSTED without
// proving what it claims, on what landed with issues 16 to 18. Each test
// asserts the safe outcome and names the rule that gives it.

import (
	"bytes"
	"context"
	"encoding/binary"
	"strconv"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog/cel"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/mr"
)

// Forges: systemd's log on PCR 23 (or 16), which the guest can reset with
// TPM2_PCR_Reset at locality 0. Root in the guest resets the PCR, extends
// only the records it wants seen and writes a systemd log of them; the
// log replays from the reset value to the quoted PCR and was "checked",
// a plain TRUSTED, though records measured before the reset are gone.
// Rule: the one runtime logs follow (history.go, judgeResettable): a log
// on a guest-resettable PCR proves no history; refused, or a weakened pass
// with AcceptUnverifiedHistory.
func TestRedteam5_SystemdLogOnResettablePCR(t *testing.T) {
	j := newSDJoin(t)
	for _, i := range []int{16, 23} {
		pcr := strconv.Itoa(i)
		t.Run("pcr"+pcr, func(t *testing.T) {
			sd := sdLog(`"pcr":` + pcr + `|attested-app-clean "pcr":` + pcr + `|attested-app-ready`)
			p := j.quoted(t, sd)
			b, o := j.bundle(t, nil, sd, map[int][]byte{i: p[i]})
			rep := mustRefuse(t, b, o, "a systemd log on the guest-resettable pcr"+pcr)
			if rep != nil {
				if f := rep.Layers[LayerLogs].Failure; f == nil || f.Register != "pcr"+pcr || !strings.Contains(f.Reason, "reset") {
					t.Fatalf("want layer 1 to fail on pcr%s as resettable:\n%s", pcr, reportText(rep))
				}
			}
			o.AcceptUnverifiedHistory = true
			rep = verifyT(t, b, o)
			if !rep.Trusted || len(rep.Weakened) == 0 || !strings.Contains(strings.Join(rep.Weakened, ";"), "resettable") {
				t.Fatalf("with --accept-unverified-history, want a weakened pass naming the reset:\n%s", reportText(rep))
			}
		})
	}
}

// Forges: the same with a CEL log (cel-json here; cel-tlv reads alike)
// whose records are on PCR 23: the guest resets PCR 23, extends the
// records it keeps, and the log "holds the whole history" of a register
// that has none to prove. Rule: as above (wholeLog, judgeResettable).
func TestRedteam5_CELLogOnResettablePCR(t *testing.T) {
	j := newSDJoin(t)
	var js bytes.Buffer
	w := cel.NewWriter(&js, cel.Seq)
	v := mr.Zero(mr.SHA256)
	for _, word := range []string{"app-clean", "app-ready"} {
		d := mr.SHA256.Sum([]byte(word))
		if err := w.Write(cel.Record{PCR: 23, Digests: cel.Digests{d}, ContentType: cel.ContentPCClient,
			Content: []byte(`{"event_type":13,"event_data":"Z3J1Yg=="}`)}); err != nil {
			t.Fatal(err)
		}
		var err error
		if v, err = mr.Extend(v, d.Bytes); err != nil {
			t.Fatal(err)
		}
	}
	b, o := j.bundle(t, nil, nil, map[int][]byte{23: v.Bytes})
	b.Logs = append(b.Logs, bundle.Log{Format: "cel-json", Source: "cel", Data: js.Bytes()})
	rep := mustRefuse(t, b, o, "a CEL log on the guest-resettable pcr23")
	if rep != nil {
		if f := rep.Layers[LayerLogs].Failure; f == nil || f.Register != "pcr23" || !strings.Contains(f.Reason, "reset") {
			t.Fatalf("want layer 1 to fail on pcr23 as resettable:\n%s", reportText(rep))
		}
	}
	o.AcceptUnverifiedHistory = true
	rep = verifyT(t, b, o)
	if !rep.Trusted || !strings.Contains(strings.Join(rep.Weakened, ";"), "resettable") {
		t.Fatalf("with --accept-unverified-history, want a weakened pass naming the reset:\n%s", reportText(rep))
	}
}

// Forges: IMA entries on PCR 23 (an IMA policy rule's pcr=23). Root in the
// guest resets PCR 23, extends again the template hashes of the entries it
// keeps, and sends the list without the others (a file the policy would
// refuse): the list replays to the quoted PCRs, every remaining entry is
// judged, TRUSTED. Rule: as for runtime logs (history.go): IMA entries on
// a guest-resettable PCR prove no history; refused, or a weakened pass
// with AcceptUnverifiedHistory.
func TestRedteam5_IMAEntriesOnResettablePCR(t *testing.T) {
	j := newSDJoin(t)
	list := readE2EBundle(t).Logs[logIndex(t, readE2EBundle(t), "ima-binary")].Data
	var forged []byte
	for i, e := range imaEntries(t, list) {
		e = bytes.Clone(e)
		if i > 0 { // boot_aggregate stays on PCR 10
			binary.LittleEndian.PutUint32(e, 23)
		}
		forged = append(forged, e...)
	}
	res, err := ima.Replay(context.Background(), ima.NewBinaryReader(bytes.NewReader(forged), ima.Options{}), ima.ReplayOptions{Banks: []mr.Alg{mr.SHA256}})
	if err != nil {
		t.Fatal(err)
	}
	pcrs := j.quoted(t, nil) // the firmware log's PCRs: boot_aggregate is over PCR 0-7
	for _, v := range res.Registers {
		n, _ := mr.PCRNumber(v.Register.Name)
		pcrs[n] = v.Digest.Bytes
	}
	if len(pcrs[23]) == 0 || len(pcrs[10]) == 0 {
		t.Fatalf("the forged list extends %v, want PCR 10 and 23", res.Registers)
	}
	b, o := j.bundle(t, j.fw, nil, pcrs)
	b.Logs = append(b.Logs, bundle.Log{Format: "ima-binary", Source: "ima", Data: forged})
	rep := mustRefuse(t, b, o, "IMA entries on the guest-resettable pcr23")
	if rep != nil {
		if f := rep.Layers[LayerApp].Failure; f == nil || !strings.Contains(f.Reason, "reset") {
			t.Fatalf("want layer 3 to fail on PCR 23 as resettable:\n%s", reportText(rep))
		}
	}
	o.AcceptUnverifiedHistory = true
	rep = verifyT(t, b, o)
	if !rep.Trusted || !strings.Contains(strings.Join(rep.Weakened, ";"), "resettable") {
		t.Fatalf("with --accept-unverified-history, want a weakened pass naming the reset:\n%s", reportText(rep))
	}
}

// Forges: firmware-log events on PCR 23 (firmware never measures there;
// the guest can reset it and extend what matches any log it writes): the
// log "replays to the quoted pcr23". Rule: as above (firmwareLog,
// resettableLog).
func TestRedteam5_FirmwareEventsOnResettablePCR(t *testing.T) {
	j := newSDJoin(t)
	fw := appendTCG2Event(bytes.Clone(j.fw), 23, 0xd, []byte("made-up event"))
	j.fw = fw
	b, o := j.bundle(t, fw, nil, j.quoted(t, nil))
	rep := mustRefuse(t, b, o, "firmware events on the guest-resettable pcr23")
	if rep != nil {
		if f := rep.Layers[LayerLogs].Failure; f == nil || f.Register != "pcr23" || !strings.Contains(f.Reason, "reset") {
			t.Fatalf("want layer 1 to fail on pcr23 as resettable:\n%s", reportText(rep))
		}
	}
}
