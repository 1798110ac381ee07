package verifier

// Red-team attacks on the firmware logs (branch redteam,
// verifier/redteam_test.go): TestRedteam_FirmwareEventDataForged and
// TestRedteam_UnreplayedLogFormat (shared helpers in
// attack_helpers_test.go). Each builds a hostile input and asserts the SAFE outcome: not trusted,
// or unusable input.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/eventlog/cel"
	"github.com/ccmr-dev/ccmr/mr"
)

// fwAppendNoAction appends a crypto-agile EV_NO_ACTION record (zero
// digests for sha1 and sha256, as the spec writes them).
func fwAppendNoAction(dst []byte, pcr uint32, data []byte) []byte {
	le32 := func(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }
	dst = le32(dst, pcr)
	dst = le32(dst, 3)
	dst = le32(dst, 2)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(mr.SHA1))
	dst = append(dst, make([]byte, 20)...)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(mr.SHA256))
	dst = append(dst, make([]byte, 32)...)
	dst = le32(dst, uint32(len(data)))
	return append(dst, data...)
}

// A firmware (TCG2/CCEL) event whose data does not hash to its digest was
// only a "not checked" note: the verdict stayed a plain TRUSTED. Here
// SeaBIOS's EV_ACTION "Start Option ROM Scan" becomes "Start Option ROM
// Skip", the digest kept. And an inserted EV_NO_ACTION record, never
// extended, carries whatever text the attacker likes.
func TestRedteam_FirmwareEventDataForged(t *testing.T) {
	b, o := e2eTrustedTPM(t)
	i := logIndex(t, b, "tcg2")
	d := b.Logs[i].Data
	if !bytes.Contains(d, []byte("Start Option ROM Scan")) {
		t.Fatal("SeaBIOS event text not found")
	}
	b.Logs[i].Data = bytes.Replace(d, []byte("Start Option ROM Scan"), []byte("Start Option ROM Skip"), 1)
	t.Run("data", func(t *testing.T) {
		rep := mustRefuse(t, b, o, "a firmware event whose data was rewritten (digest kept)")
		f := rep.Layers[LayerLogs].Failure
		if rep.FailedLayer() != LayerLogs || f == nil || f.Record < 1 || f.Offset <= 0 || !strings.Contains(f.Log, "tcg2") ||
			!strings.Contains(f.Reason, "does not hash to its") {
			t.Fatalf("want layer 1 to name the log, record and offset:\n%s", reportText(rep))
		}
	})

	b, o = e2eTrustedTPM(t)
	i = logIndex(t, b, "tcg2")
	b.Logs[i].Data = fwAppendNoAction(append([]byte(nil), b.Logs[i].Data...), 8, []byte("grub_cmd: linux /vmlinuz ro quiet lockdown=integrity\x00"))
	t.Run("no-action", func(t *testing.T) {
		rep := mustRefuse(t, b, o, "a free-text EV_NO_ACTION record in the firmware log")
		f := rep.Layers[LayerLogs].Failure
		if rep.FailedLayer() != LayerLogs || f == nil || f.Record < 1 || !strings.Contains(f.Reason, "EV_NO_ACTION") {
			t.Fatalf("want layer 1 to name the EV_NO_ACTION record:\n%s", reportText(rep))
		}
	})
}

// The honest e2e bundle says which events' data it checked and which it
// could not.
func TestFirmwareDataReported(t *testing.T) {
	b, o := e2eTrustedTPM(t)
	rep := verifyT(t, b, o)
	txt := reportText(rep)
	if !strings.Contains(txt, "events hashes to their digests") || !strings.Contains(txt, "is not checked: their digest is not the hash of their data") {
		t.Fatalf("the report does not count the checked and unchecked event data:\n%s", txt)
	}
}

// A log in a format the verifier did not replay (cel-json, cel-tlv, a
// misspelt "CCEL", anything) was listed as "not replayed" next to a plain
// TRUSTED. Unknown names are unusable input now; CEL logs are replayed.
func TestRedteam_UnreplayedLogFormat(t *testing.T) {
	for _, format := range []string{"cel-json", "cel-tlv", "CCEL", "TCG2", "", "anything", "auto"} {
		t.Run(format, func(t *testing.T) {
			b, o := e2eTrustedTPM(t)
			tcg := b.Logs[logIndex(t, b, "tcg2")].Data
			forged := bytes.Replace(tcg, []byte("Calling INT 19h"), []byte("Booting signed "), 1)
			b.Logs = append(b.Logs, bundle.Log{Format: format, Source: "firmware", Data: forged})
			mustRefuse(t, b, o, "a log in format "+format+" that nothing checks")
			if format == "cel-json" || format == "cel-tlv" {
				return
			}
			// Unusable input (exit 2), never a verdict.
			if _, err := Verify(context.Background(), b, o); !errors.Is(err, mr.ErrMalformed) {
				t.Fatalf("Verify: want mr.ErrMalformed, got %v", err)
			}
		})
	}
}

// CEL logs are replayed against the quoted registers: an honest one (the
// e2e runtime log on pcr14, exported to CEL-JSON, standing in for it) is
// trusted; one that extends a register the evidence does not cover, or
// replays to another value, is not.
func TestCELLogReplayed(t *testing.T) {
	b, o := e2eTrustedTPM(t)
	ri := logIndex(t, b, "runtime")
	var js bytes.Buffer
	// The runtime log of pcr14 as CEL-JSON (its mr_ima records are then
	// opaque): replaces the runtime log, so no virtual register is claimed.
	if _, err := cel.ExportRuntime(&js, fwRuntimeReader(b.Logs[ri]), cel.Seq); err != nil {
		t.Fatal(err)
	}
	b.Logs[ri] = bundle.Log{Format: "cel-json", Source: "cel", Data: js.Bytes()}
	dropVirtualAndIMA(b)
	rep := verifyT(t, b, o)
	if !rep.Trusted || !strings.Contains(reportText(rep), "(cel-json): ") {
		t.Fatalf("an honest CEL-JSON log is not trusted:\n%s", reportText(rep))
	}

	// One more record (firmware-style content, which nothing checks): the
	// replay no longer gives the quoted pcr14.
	rec := cel.Record{PCR: 14, Digests: cel.Digests{mr.SHA256.Sum([]byte("evil"))}, ContentType: cel.ContentPCClient,
		Content: []byte(`{"event_type":13,"event_data":"Z3J1Yg=="}`)}
	var extra bytes.Buffer
	w := cel.NewWriter(&extra, cel.Seq)
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	i := logIndex(t, b, "cel-json")
	good := b.Logs[i].Data
	b.Logs[i].Data = append(append([]byte(nil), good...), extra.Bytes()...)
	mustRefuse(t, b, o, "a CEL-JSON record the quote does not cover")

	// A record on a PCR the quote does not cover.
	rec.PCR = 23
	extra.Reset()
	w = cel.NewWriter(&extra, cel.Seq)
	w.Write(rec)
	b.Logs[i].Data = append(append([]byte(nil), good...), extra.Bytes()...)
	rep = mustRefuse(t, b, o, "a CEL-JSON record on an unquoted register")
	if rep != nil && !strings.Contains(reportText(rep), "pcr23") {
		t.Fatalf("the failure does not name pcr23:\n%s", reportText(rep))
	}
}

func fwRuntimeReader(l bundle.Log) aael.EntryReader {
	return aael.NewReader(bytes.NewReader(l.Data), aael.Options{File: "runtime log"})
}

// fwTLV appends one CEL-TLV record: recnum, PCR index, one digest, and a
// content TLV of type ct.
func fwTLV(dst []byte, recnum uint64, pcr uint32, d mr.Digest, ct uint8, content []byte) []byte {
	tlv := func(dst []byte, typ uint8, v []byte) []byte {
		dst = append(dst, typ)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
		return append(dst, v...)
	}
	dst = tlv(dst, cel.TLVRecNum, binary.BigEndian.AppendUint64(nil, recnum))
	dst = tlv(dst, cel.TLVPCR, binary.BigEndian.AppendUint32(nil, pcr))
	dg := binary.BigEndian.AppendUint32([]byte{byte(d.Alg)}, uint32(len(d.Bytes)))
	dst = tlv(dst, cel.TLVDigests, append(dg, d.Bytes...))
	return tlv(dst, ct, content)
}

// A CEL-TLV log is replayed too: the e2e runtime log's pcr14 digests as
// CEL-TLV records replay to the quoted pcr14; a record more does not.
func TestCELTLVReplayed(t *testing.T) {
	b, o := e2eTrustedTPM(t)
	ri := logIndex(t, b, "runtime")
	rd := fwRuntimeReader(b.Logs[ri])
	var tlv []byte
	for n := uint64(0); ; n++ {
		e, err := rd.Next()
		if err != nil {
			break
		}
		if !e.Extended {
			continue
		}
		tlv = fwTLV(tlv, n, e.MRIndex, e.Digest, 7, e.Event)
	}
	if len(tlv) == 0 {
		t.Fatal("no extended entry in the runtime log")
	}
	b.Logs[ri] = bundle.Log{Format: "cel-tlv", Source: "cel", Data: tlv}
	dropVirtualAndIMA(b)
	rep := verifyT(t, b, o)
	txt := reportText(rep)
	if !rep.Trusted || !strings.Contains(txt, "(cel-tlv): ") || !strings.Contains(txt, "content of") {
		t.Fatalf("an honest CEL-TLV log is not trusted, or its unchecked content not reported:\n%s", txt)
	}
	i := logIndex(t, b, "cel-tlv")
	b.Logs[i].Data = fwTLV(append([]byte(nil), tlv...), 99, 14, mr.SHA256.Sum([]byte("evil")), 7, []byte("evil"))
	mustRefuse(t, b, o, "a CEL-TLV record the quote does not cover")
	b.Logs[i].Data = fwTLV(append([]byte(nil), tlv...), 99, 9, mr.SHA256.Sum([]byte("evil")), cel.TLVCOSEvent, []byte("evil"))
	mustRefuse(t, b, o, "a COS event whose content does not hash to its digest")
}
