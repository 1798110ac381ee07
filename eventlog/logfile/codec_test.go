package logfile_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/eventlog/cel"
	"github.com/ccmr-dev/ccmr/eventlog/dstack"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/eventlog/logfile"
	"github.com/ccmr-dev/ccmr/eventlog/tcg"
	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
)

// allFormats are the format constants of package eventlog but auto.
var allFormats = []eventlog.Format{eventlog.FormatTCG2, eventlog.FormatCCEL, eventlog.FormatIMABinary, eventlog.FormatIMAASCII,
	eventlog.FormatRuntime, eventlog.FormatAAELText, eventlog.FormatCELJSON, eventlog.FormatCELTLV, eventlog.FormatDstackJSON, eventlog.FormatSystemd,
	"ima-binary-sha256", "ima-binary-sha384", "ima-binary-sha512", "ima-binary-sm3",
	"ima-ascii-sha256", "ima-ascii-sha384", "ima-ascii-sha512", "ima-ascii-sm3"}

func TestRegistryHoldsEveryFormat(t *testing.T) {
	roles := map[eventlog.Format]logfile.Role{
		eventlog.FormatTCG2: logfile.RoleFirmware, eventlog.FormatCCEL: logfile.RoleFirmware,
		eventlog.FormatIMABinary: logfile.RoleIMA, eventlog.FormatIMAASCII: logfile.RoleIMA,
		eventlog.FormatRuntime: logfile.RoleRuntime, eventlog.FormatAAELText: logfile.RoleRuntime,
		eventlog.FormatCELJSON: logfile.RoleWhole, eventlog.FormatCELTLV: logfile.RoleWhole, eventlog.FormatDstackJSON: logfile.RoleWhole,
		eventlog.FormatSystemd: logfile.RoleUserspace,
	}
	for _, f := range allFormats {
		if strings.HasPrefix(string(f), "ima-") {
			roles[f] = logfile.RoleIMA
		}
	}
	if got := len(logfile.Formats()); got != len(allFormats) {
		t.Errorf("registry holds %d formats, want %d: %v", got, len(allFormats), logfile.Formats())
	}
	for _, f := range allFormats {
		c, ok := logfile.Lookup(f)
		if !ok {
			t.Errorf("no codec for %s", f)
			continue
		}
		if c.Format() != f || c.Role() != roles[f] {
			t.Errorf("Lookup(%s) = codec of %s, role %d; want role %d", f, c.Format(), c.Role(), roles[f])
		}
		if got, err := logfile.ParseFormat(string(f)); err != nil || got != f {
			t.Errorf("ParseFormat(%s) = %s, %v", f, got, err)
		}
	}
	for _, bad := range []string{"CCEL", "tcg", "ima", "cel", " tcg2"} {
		if _, err := logfile.ParseFormat(bad); !errors.Is(err, mr.ErrUnsupported) {
			t.Errorf("ParseFormat(%q) = %v, want ErrUnsupported", bad, err)
		}
		if _, ok := logfile.Lookup(eventlog.Format(bad)); ok {
			t.Errorf("Lookup(%q) found a codec", bad)
		}
	}
	if _, ok := logfile.Lookup(eventlog.FormatAuto); ok {
		t.Error("auto has a codec: a bundle could name it")
	}
	if f, err := logfile.ParseFormat(""); err != nil || f != eventlog.FormatAuto {
		t.Errorf("ParseFormat(\"\") = %s, %v; want auto", f, err)
	}
}

// chainSniff is the detection chain logfile had before the registry: Sniff
// must give the same answer on every input.
func chainSniff(head []byte) (eventlog.Format, bool) {
	if f, ok := aael.Sniff(head); ok {
		return f, true
	}
	if f, ok := tcg.Sniff(head); ok {
		return f, true
	}
	if f, ok := ima.Detect(head); ok {
		return f, true
	}
	if dstack.Sniff(head) {
		return eventlog.FormatDstackJSON, true
	}
	if len(head) >= 5 && head[0] == 0 && head[1] == 0 && head[2] == 0 && head[3] == 0 && head[4] == 8 {
		return eventlog.FormatCELTLV, true
	}
	// systemd's log: RS and a first record SystemdReader reads (before
	// CEL-JSON, which would take it for a runtime export it refuses).
	if len(head) > 0 && head[0] == 0x1e {
		rec := head
		if i := bytes.IndexByte(head[1:], 0x1e); i >= 0 {
			rec = head[:i+1]
		}
		if _, err := cel.NewSystemdReader(bytes.NewReader(rec), "").Next(); err == nil {
			return eventlog.FormatSystemd, true
		}
	}
	if t := bytes.TrimLeft(head, " \t\r\n[\x1e"); bytes.HasPrefix(t, []byte("{")) && bytes.Contains(head, []byte(`"content_type"`)) {
		return eventlog.FormatCELJSON, true
	}
	return "", false
}

// checkSniff requires Sniff to agree with the old chain and, when it names
// a format, that format's codec to detect head and no codec before it.
func checkSniff(t *testing.T, name string, head []byte) {
	got, ok := logfile.Sniff(head)
	want, wok := chainSniff(head)
	// The one intended difference: the start of a larger file whose last
	// record is cut is judged by the records before it, as TCG.
	cutTCG := len(head) >= logfile.SniffSize && (got == eventlog.FormatTCG2 || got == eventlog.FormatCCEL) && (!wok || want == eventlog.FormatCELTLV)
	if (got != want || ok != wok) && !cutTCG {
		t.Fatalf("%s: Sniff = %q %v, the detection chain says %q %v", name, got, ok, want, wok)
	}
	if !ok {
		return
	}
	for _, f := range logfile.Formats() {
		c, _ := logfile.Lookup(f)
		if f == got {
			if !c.Detect(head) {
				t.Fatalf("%s: Sniff says %s, its codec does not detect it", name, got)
			}
			return
		}
		if c.Detect(head) {
			t.Fatalf("%s: %s detects the input before %s", name, f, got)
		}
	}
}

func TestSniffCorpus(t *testing.T) {
	dir, err := corpus.Dir()
	if err != nil {
		t.Skipf("public corpus absent: %v", err)
	}
	seen := map[eventlog.Format]int{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 64<<10 {
			b = b[:64<<10]
		}
		checkSniff(t, p, b)
		f, _ := logfile.Sniff(b)
		seen[f]++
		return nil
	})
	for _, f := range []eventlog.Format{eventlog.FormatTCG2, eventlog.FormatCCEL, eventlog.FormatIMABinary, eventlog.FormatDstackJSON} {
		if seen[f] == 0 {
			t.Errorf("no corpus file sniffed as %s: %v", f, seen)
		}
	}
}

// A SHA-1 TCG log longer than the sniffed head starts like CEL-TLV (00 00
// 00 00 08: PCR 0, EV_S_CRTM_VERSION); with its last record cut by the head
// it was taken for CEL-TLV and failed to parse.
func TestSniffLongSHA1Log(t *testing.T) {
	dir, err := corpus.Dir()
	if err != nil {
		t.Skipf("public corpus absent: %v", err)
	}
	p := filepath.Join(dir, "go-attestation", "option_rom_eventlog")
	lf, err := logfile.Open(p, eventlog.FormatAuto)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if lf.Format != eventlog.FormatTCG2 {
		t.Fatalf("%s sniffed as %s, want tcg2", p, lf.Format)
	}
	if _, err := lf.Replay(context.Background(), logfile.Options{}); err != nil {
		t.Fatal(err)
	}
	// Show flags the record the verifier refuses (an EV_NO_ACTION record
	// in no TCG-defined form); replay, above, does not fail on it.
	flagged := -1
	err = lf.Show(context.Background(), logfile.Options{}, func(e eventlog.Event) error {
		for _, p := range e.Problems {
			if strings.HasPrefix(p, "the verifier refuses this record: EV_NO_ACTION") {
				flagged = e.Index
			}
		}
		return nil
	})
	if err != nil || flagged != 60 {
		t.Fatalf("show: record %d flagged, want 60 (%v)", flagged, err)
	}
	// The head Open sniffs, alone.
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := logfile.Sniff(b[:logfile.SniffSize]); !ok || f != eventlog.FormatTCG2 {
		t.Fatalf("the first %d bytes sniffed as %q %v", logfile.SniffSize, f, ok)
	}
	// Garbage after a good first record, at full head size, is not taken
	// for TCG by the fallback: record 0 must parse, and a record 1 that
	// does not is refused by Parse later, naming it.
	junk := bytes.Repeat([]byte{0xA5}, logfile.SniffSize)
	copy(junk, []byte{0, 0, 0, 0, 8, 0, 0, 0})
	if f, ok := logfile.Sniff(junk); ok && (f == eventlog.FormatTCG2 || f == eventlog.FormatCCEL) {
		if _, err := logfile.FromBytes("junk", junk, f).Replay(context.Background(), logfile.Options{}); err == nil {
			t.Fatalf("junk sniffed as %s and replayed", f)
		}
	}
}

func FuzzSniff(f *testing.F) {
	f.Add([]byte("INIT sha384/00"))
	f.Add([]byte{0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte(`[{"imr":0,"event_payload":""}]`))
	f.Add([]byte("\x1e{\"content_type\":\"aael\"}"))
	f.Add([]byte("10 0000000000000000000000000000000000000000 ima-ng sha1:00 /x\n"))
	if b, err := os.ReadFile("../cel/testdata/systemd-style.jsonseq"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		checkSniff(t, "fuzz input", head)
		if len(head) > 0 && len(head) < logfile.SniffSize {
			// The head of a larger file: the cut-record fallback runs.
			long := bytes.Repeat(head, logfile.SniffSize/len(head)+1)[:logfile.SniffSize]
			checkSniff(t, "fuzz input repeated", long)
		}
	})
}

// celJSON is a runtime log of four AAEL records exported as CEL-JSON.
func celJSON(t *testing.T) []byte {
	var b []byte
	for i := 0; i < 4; i++ {
		var err error
		rec := aael.Record{Domain: "coco.com", Operation: "op", Content: fmt.Sprintf("n=%d", i)}
		if b, _, err = aael.AppendEntry(b, 4, mr.SHA384, rec); err != nil {
			t.Fatal(err)
		}
	}
	var js bytes.Buffer
	if _, err := cel.ExportRuntime(&js, aael.NewReader(bytes.NewReader(b), aael.Options{}), cel.Seq); err != nil {
		t.Fatal(err)
	}
	return js.Bytes()
}

// TestFromOpenerSameAsBytes reads one log held in memory and through an
// opener (how the verifier reads a bundle's log) and requires the same
// events and replay.
func TestFromOpenerSameAsBytes(t *testing.T) {
	data := celJSON(t)
	f := eventlog.FormatCELJSON
	opened := 0
	a := logfile.FromBytes("log", data, f)
	b := logfile.FromOpener("log", func() io.Reader { opened++; return bytes.NewReader(data) }, f)
	var ea, eb []eventlog.Event
	ctx := context.Background()
	if err := a.Show(ctx, logfile.Options{}, func(e eventlog.Event) error { ea = append(ea, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := b.Show(ctx, logfile.Options{}, func(e eventlog.Event) error { eb = append(eb, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(ea) == 0 || len(ea) != len(eb) || opened == 0 {
		t.Fatalf("%d events from bytes, %d through the opener (opened %d times)", len(ea), len(eb), opened)
	}
	ra, err := a.Replay(ctx, logfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.Replay(ctx, logfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ra.Registers) == 0 || len(ra.Registers) != len(rb.Registers) || !ra.Registers[0].Digest.Equal(rb.Registers[0].Digest) {
		t.Fatalf("replays differ: %v and %v", ra.Registers, rb.Registers)
	}
}

// TestCheck: what import runs on a log. A log that does not parse is an
// error naming where; a record contradicting its content is left to verify.
func TestCheck(t *testing.T) {
	data := celJSON(t)
	ctx := context.Background()
	if err := logfile.FromBytes("ok", data, eventlog.FormatCELJSON).Check(ctx, logfile.Options{}); err != nil {
		t.Fatalf("a good log: %v", err)
	}
	// A digest changed: the record no longer matches its content.
	i := bytes.Index(data, []byte(`"digest":"`))
	if i < 0 {
		t.Fatal("no digest in the test log")
	}
	bad := bytes.Clone(data)
	j := i + len(`"digest":"`)
	if bad[j] == 'a' {
		bad[j] = 'b'
	} else {
		bad[j] = 'a'
	}
	if _, err := logfile.FromBytes("bad", bad, eventlog.FormatCELJSON).Replay(ctx, logfile.Options{}); !errors.Is(err, eventlog.ErrMismatch) {
		t.Fatalf("replay of a changed digest: %v, want a mismatch", err)
	}
	if err := logfile.FromBytes("bad", bad, eventlog.FormatCELJSON).Check(ctx, logfile.Options{}); err != nil {
		t.Fatalf("check of a changed digest: %v, want it left to verify", err)
	}
	cut := data[:len(data)/2+7] // inside the third record
	err := logfile.FromBytes("cut", cut, eventlog.FormatCELJSON).Check(ctx, logfile.Options{})
	var le *eventlog.Error
	if !errors.As(err, &le) || !errors.Is(err, mr.ErrMalformed) {
		t.Fatalf("check of a truncated log: %v, want an *eventlog.Error wrapping ErrMalformed", err)
	}
	if err := logfile.FromBytes("x", data, "CCEL").Check(ctx, logfile.Options{}); !errors.Is(err, mr.ErrUnsupported) || !strings.Contains(err.Error(), "CCEL") {
		t.Fatalf("an unknown format: %v", err)
	}
}

// The readers of logs that start mid-way choose their parser by format as
// the codecs do, and refuse every other format.
func TestReadersByFormat(t *testing.T) {
	js := celJSON(t)
	rd, err := logfile.NewRuntimeReader(eventlog.FormatCELJSON, bytes.NewReader(js), aael.Options{File: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := rd.Next(); err != nil || e.Index != 0 {
		t.Fatalf("cel-json entry: %v %v", e, err)
	}
	for _, f := range []eventlog.Format{eventlog.FormatRuntime, eventlog.FormatAAELText} {
		if _, err := logfile.NewRuntimeReader(f, bytes.NewReader(nil), aael.Options{}); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	for _, f := range []eventlog.Format{eventlog.FormatIMABinary, eventlog.FormatIMAASCII} {
		if _, err := logfile.NewIMAReader(f, bytes.NewReader(nil), ima.Options{}); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		if _, err := logfile.NewRuntimeReader(f, bytes.NewReader(nil), aael.Options{}); !errors.Is(err, mr.ErrUnsupported) {
			t.Errorf("runtime reader of %s: %v", f, err)
		}
	}
	for _, f := range []eventlog.Format{eventlog.FormatTCG2, eventlog.FormatRuntime, "ima", ""} {
		if _, err := logfile.NewIMAReader(f, bytes.NewReader(nil), ima.Options{}); !errors.Is(err, mr.ErrUnsupported) {
			t.Errorf("IMA reader of %q: %v", f, err)
		}
	}
}
