package tcg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
)

// Real logs of the corpus that CheckEventData refuses, with the reason.
var eventDataRefused = map[string]string{
	// Windows logs AIK information as an EV_NO_ACTION on "PCR -1" (a SIPA
	// structure): Microsoft's, not a form a TCG specification defines.
	"go-attestation/option_rom_eventlog": "record 60 at byte 72361",
}

// TestCorpusEventData: every real firmware log of the corpus passes
// CheckEventData (but the listed ones), so the verifier's stricter reading
// of event data fails no honest eventlog.
func TestCorpusEventData(t *testing.T) {
	dir := corpus.Require(t)
	cases, err := corpus.EventLogs(dir)
	if err != nil {
		t.Fatal(err)
	}
	att, err := corpus.AttestationLogs(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range append(cases, att...) {
		if _, refused := corpusRefused[c.Name]; refused {
			continue
		}
		data, err := os.ReadFile(c.Path)
		if err != nil {
			t.Fatal(err)
		}
		l, err := Parse(c.Name, data, c.Format)
		if err != nil {
			t.Fatal(err)
		}
		dc, err := l.CheckEventData()
		if why, ok := eventDataRefused[c.Name]; ok {
			if err == nil || !strings.Contains(err.Error(), why) {
				t.Errorf("%s: want a refusal at %q, got %v", c.Name, why, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.Name, err)
			continue
		}
		t.Logf("%s: %d checked; not checked: %s; EV_NO_ACTION: %s", c.Name, dc.Checked, dc.NotCheckedText(), dc.NoActionText())
	}
}

// agileLog builds a crypto-agile sha256 log: the Spec ID header, then recs.
func agileLog(recs ...[]byte) []byte {
	spec := append([]byte("Spec ID Event03\x00"), 0, 0, 0, 0, 0, 2, 0, 2)
	spec = binary.LittleEndian.AppendUint32(spec, 1)
	spec = binary.LittleEndian.AppendUint16(spec, uint16(mr.SHA256))
	spec = binary.LittleEndian.AppendUint16(spec, 32)
	spec = append(spec, 0)
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(EvNoAction))
	b = append(b, make([]byte, 20)...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(spec)))
	b = append(b, spec...)
	for _, r := range recs {
		b = append(b, r...)
	}
	return b
}

func agileRec(pcr uint32, typ EventType, digest, data []byte) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, pcr)
	b = binary.LittleEndian.AppendUint32(b, uint32(typ))
	b = binary.LittleEndian.AppendUint32(b, 1)
	b = binary.LittleEndian.AppendUint16(b, uint16(mr.SHA256))
	b = append(b, digest...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

func TestCheckEventData(t *testing.T) {
	zero := make([]byte, 32)
	sum := func(d []byte) []byte { return mr.SHA256.Sum(d).Bytes }
	act := []byte("Start Option ROM Scan")
	loc := append([]byte("StartupLocality\x00"), 3)
	for _, tc := range []struct {
		name string
		recs [][]byte
		bad  string // "" when the log must pass
	}{
		{"honest", [][]byte{agileRec(0, EvNoAction, zero, loc), agileRec(1, EvAction, sum(act), act), agileRec(4, EvPostCode, sum([]byte("x")), []byte("y"))}, ""},
		{"forged-action", [][]byte{agileRec(1, EvAction, sum(act), []byte("Start Option ROM Skip"))}, "record 1 at byte"},
		{"free-text-no-action", [][]byte{agileRec(8, EvNoAction, zero, []byte("grub_cmd: linux /vmlinuz\x00"))}, "no form a TCG specification defines"},
		{"second-spec-id", [][]byte{agileRec(0, EvNoAction, zero, []byte("Spec ID Event03\x00rest"))}, "only in record 0"},
		{"locality-5", [][]byte{agileRec(0, EvNoAction, zero, append([]byte("StartupLocality\x00"), 5))}, "not a startup locality"},
		{"locality-late", [][]byte{agileRec(0, EvAction, sum(act), act), agileRec(0, EvNoAction, zero, loc)}, "after PCR 0 was extended"},
		{"no-action-digest", [][]byte{agileRec(0, EvNoAction, sum(loc), loc)}, "non-zero sha256 digest"},
		{"nv-dynamic-short", [][]byte{agileRec(0, EvNoAction, zero, append([]byte("NvIndexDynamic\x00\x00"), 1, 0, 0, 0, 0, 0, 0, 0))}, "NvIndexDynamic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := Parse("t", agileLog(tc.recs...), eventlog.FormatTCG2)
			if err != nil {
				t.Fatal(err)
			}
			dc, err := l.CheckEventData()
			if tc.bad == "" {
				if err != nil {
					t.Fatal(err)
				}
				if dc.Checked != 1 || dc.NotChecked["EV_POST_CODE"] != 1 || dc.NoAction["StartupLocality"] != 1 {
					t.Fatalf("%+v", dc)
				}
				return
			}
			var mm *eventlog.Mismatch
			if !errors.As(err, &mm) || !errors.Is(err, eventlog.ErrMismatch) || !strings.Contains(err.Error(), tc.bad) || mm.Record < 1 {
				t.Fatalf("want a mismatch containing %q, got %v", tc.bad, err)
			}
			if !bytes.Contains([]byte(err.Error()), []byte("at byte")) {
				t.Fatalf("no byte offset: %v", err)
			}
		})
	}
}
