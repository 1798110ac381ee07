package cel

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gocel "github.com/google/go-eventlog/cel"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func runtimeLog(t testing.TB) []byte {
	b := must(aael.AppendInit(nil, 4, mr.Digest{Alg: mr.SHA384, Bytes: bytes.Repeat([]byte{9}, 48)}))
	for i := 0; i < 4; i++ {
		d := sha512.Sum384([]byte{byte(i)})
		rec := must(aael.ExtendRecord("mr_ima", mr.Digest{Alg: mr.SHA384, Bytes: d[:]}))
		var err error
		if b, _, err = aael.AppendEntry(b, 4, mr.SHA384, rec); err != nil {
			t.Fatal(err)
		}
		if b, _, err = aael.AppendEntry(b, 4, mr.SHA384, aael.Record{Domain: "coco.com", Operation: "op", Content: `{"a": "b c"}`}); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func TestRuntimeRoundTrip(t *testing.T) {
	bin := runtimeLog(t)
	want := must(aael.Replay(aael.NewReader(bytes.NewReader(bin), aael.Options{}), aael.ReplayOptions{}))
	for _, enc := range []Encoding{Seq, Lines, Array} {
		var js bytes.Buffer
		n, err := ExportRuntime(&js, aael.NewReader(bytes.NewReader(bin), aael.Options{}), enc)
		if err != nil || n != 9 {
			t.Fatalf("enc %d: export %d %v", enc, n, err)
		}
		// Every record is a well-formed CEL-JSON object of the documented shape.
		first := strings.TrimLeft(js.String(), "\x1e[\n")
		var generic map[string]any
		if err := json.NewDecoder(strings.NewReader(first)).Decode(&generic); err != nil {
			t.Fatal(err)
		}
		if generic["content_type"] != "aael" || generic["recnum"] != 0.0 || generic["pcr"] != 4.0 {
			t.Errorf("enc %d: first record %v", enc, generic)
		}
		c := generic["content"].(map[string]any)
		if c["event_type"] != 3.0 || !strings.HasPrefix(c["record"].(string), "INIT sha384/0909") {
			t.Errorf("enc %d: INIT content %v", enc, c)
		}
		var back bytes.Buffer
		if n, err := ImportRuntime(&back, bytes.NewReader(js.Bytes()), "x.json"); err != nil || n != 9 {
			t.Fatalf("enc %d: import %d %v", enc, n, err)
		}
		if !bytes.Equal(back.Bytes(), bin) {
			t.Errorf("enc %d: import differs from the original log", enc)
		}
		got := must(aael.Replay(NewRuntimeReader(bytes.NewReader(js.Bytes()), "x.json"), aael.ReplayOptions{}))
		if !got.Registers[0].Digest.Equal(want.Registers[0].Digest) || !got.Virtual[0].Digest.Equal(want.Virtual[0].Digest) {
			t.Errorf("enc %d: JSON replay differs", enc)
		}
	}
	// A record text changed in the JSON no longer matches its digest.
	var js bytes.Buffer
	must(ExportRuntime(&js, aael.NewReader(bytes.NewReader(bin), aael.Options{}), Seq))
	bad := bytes.Replace(js.Bytes(), []byte(`\"b c\"`), []byte(`\"b d\"`), 1)
	_, err := aael.Replay(NewRuntimeReader(bytes.NewReader(bad), "bad.json"), aael.ReplayOptions{File: "bad.json"})
	var m *eventlog.Mismatch
	if !errors.As(err, &m) || m.Record != 2 {
		t.Errorf("tampered JSON: %v", err)
	}
	// Offsets name the record's first byte.
	off := int64(bytes.Index(js.Bytes(), []byte("\x1e{\"recnum\":2,")))
	if m != nil && m.Offset != off {
		t.Errorf("offset %d, want %d", m.Offset, off)
	}
}

func TestIMARecord(t *testing.T) {
	data := []byte("\x01\x02template data\x00")
	th := sha1.Sum(data)
	s256 := sha256.Sum256(data)
	rec := must(IMARecord(7, 10, []mr.Digest{{Alg: mr.SHA1, Bytes: th[:]}, {Alg: mr.SHA256, Bytes: s256[:]}}, "ima-ng", data))
	var buf bytes.Buffer
	w := NewWriter(&buf, Lines)
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	var g struct {
		RecNum  int `json:"recnum"`
		PCR     int `json:"pcr"`
		Digests []struct {
			HashAlg string `json:"hashAlg"`
			Digest  string `json:"digest"`
		} `json:"digests"`
		ContentType string `json:"content_type"`
		Content     struct {
			TemplateName string `json:"template_name"`
			TemplateData string `json:"template_data"`
		} `json:"content"`
	}
	if err := json.Unmarshal(buf.Bytes(), &g); err != nil {
		t.Fatal(err)
	}
	td := must(base64.StdEncoding.DecodeString(g.Content.TemplateData))
	if g.RecNum != 7 || g.PCR != 10 || g.ContentType != "ima_template" || g.Content.TemplateName != "ima-ng" ||
		!bytes.Equal(td, data) || len(g.Digests) != 2 || g.Digests[1].HashAlg != "sha256" {
		t.Errorf("IMA record %s", buf.String())
	}
	r, _, err := NewReader(&buf, "").Next()
	if err != nil || r.RecNum != 7 || !r.Digests[0].Equal(rec.Digests[0]) {
		t.Errorf("read back: %v %+v", err, r)
	}
}

func TestSystemdShape(t *testing.T) {
	r := NewReader(bytes.NewReader(must(os.ReadFile("testdata/systemd-style.jsonseq"))), "s")
	var recs []Record
	for {
		rec, _, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	want := sha256.Sum256([]byte("enter-initrd"))
	if len(recs) != 2 || recs[0].PCR != 11 || recs[0].ContentType != "systemd" || !bytes.Equal(recs[0].Digests[0].Bytes, want[:]) ||
		len(recs[1].Digests) != 2 || recs[1].Digests[0].Alg != mr.SHA1 {
		t.Errorf("records %+v", recs)
	}
	var c struct{ String string }
	if json.Unmarshal(recs[0].Content, &c); c.String != "enter-initrd" {
		t.Errorf("content %s", recs[0].Content)
	}
}

func TestJSONErrors(t *testing.T) {
	d := `[{"hashAlg":"sha256","digest":"` + strings.Repeat("00", 32) + `"}]`
	for _, c := range []struct{ in, want string }{
		{"x", "not CEL-JSON"},
		{`{"recnum":0,"pcr":1,"digests":` + d + `,"content_type":"x","content":{}} {"pcr":1}`, "record 1"},
		{`[{"recnum":0,"pcr":1,"digests":[{"hashAlg":"md5","digest":"00"}],"content_type":"x"}]`, "unsupported"},
		{`[{"recnum":0,"pcr":1,"digests":[{"hashAlg":"sha256","digest":"00"}],"content_type":"x"}]`, "wrong digest size"},
		{`[{"recnum":0,"pcr":1,"digests":` + d + `,"content_type":"x","extra":1}]`, "unknown field"},
		{"\x1e{\"pcr\":1,\"digests\":" + d + ",\"content_type\":\"x\"}\n\x1e{\"pcr\":", "record 1"},
	} {
		r := NewReader(strings.NewReader(c.in), "f.json")
		var err error
		for err == nil {
			_, _, err = r.Next()
		}
		var le *eventlog.Error
		if !errors.As(err, &le) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.in, err, c.want)
		}
	}
	// Runtime import refuses foreign content types and bad records.
	for _, in := range []string{
		`{"recnum":0,"pcr":4,"digests":` + d + `,"content_type":"systemd","content":{}}`,
		`{"recnum":0,"pcr":4,"digests":` + d + `,"content_type":"aael","content":{"event_type":6,"record":"a b"}}`,
		`{"recnum":0,"pcr":4,"digests":` + d + `,"content_type":"aael","content":{"event_type":6,"record":"a b c\n"}}`,
		`{"recnum":0,"pcr":4,"digests":` + d + `,"content_type":"aael","content":{"event_type":5,"record":"a b c"}}`,
	} {
		if _, err := ImportRuntime(io.Discard, strings.NewReader(in), "f"); err == nil {
			t.Errorf("%s: imported", in)
		}
	}
}

func TestTLVConfidentialSpace(t *testing.T) {
	dir := filepath.Join(corpus.Require(t), "go-tpm-tools")
	raw := must(os.ReadFile(filepath.Join(dir, "cel", "confidential-space-rtmr3.cel.bin")))
	var exp map[string]json.RawMessage
	if err := json.Unmarshal(must(os.ReadFile(filepath.Join(dir, "EXPECTED.json"))), &exp); err != nil {
		t.Fatal(err)
	}
	var e struct {
		Records int    `json:"records"`
		RTMR3   string `json:"replayed_CCMR4(RTMR3)_from_zero"`
	}
	if err := json.Unmarshal(exp["cel/confidential-space-rtmr3.cel.bin"], &e); err != nil || e.RTMR3 == "" {
		t.Fatalf("EXPECTED.json: %v %+v", err, e)
	}
	var recs []*TLVRecord
	res, err := ReplayTLV(NewTLVReader(bytes.NewReader(raw), "cs.cel"), TLVReplayOptions{File: "cs.cel", Alg: mr.SHA384,
		OnRecord: func(r *TLVRecord) error { recs = append(recs, r); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != e.Records || len(res.Registers) != 1 || res.Registers[0].Register.Name != "rtmr3" || res.Registers[0].Digest.Hex() != e.RTMR3 {
		t.Errorf("replay %d events %+v, want %d and rtmr3 %s", res.Events, res.Registers, e.Records, e.RTMR3)
	}
	// Second opinion: go-eventlog's decoder sees the same records.
	theirs, err := gocel.DecodeToCEL(bytes.NewBuffer(raw))
	if err != nil {
		t.Fatal(err)
	}
	if len(theirs.Records()) != len(recs) {
		t.Fatalf("go-eventlog: %d records, ours %d", len(theirs.Records()), len(recs))
	}
	for i, r := range theirs.Records() {
		o := recs[i]
		if r.RecNum != o.RecNum || uint32(r.Index) != o.Register || r.IndexType != o.IndexType ||
			r.Content.Type != o.ContentType || !bytes.Equal(r.Content.Value, o.Content) || len(r.Digests) != len(o.Digests) {
			t.Errorf("record %d differs from go-eventlog", i)
		}
		for _, d := range o.Digests {
			if !bytes.Equal(r.Digests[d.Alg.Hash()], d.Bytes) {
				t.Errorf("record %d %v digest differs", i, d.Alg)
			}
		}
	}
	// One content byte changed: mismatch at that record.
	bad := append([]byte(nil), raw...)
	k := recs[5]
	bad[k.Offset+k.Size-1] ^= 1
	_, err = ReplayTLV(NewTLVReader(bytes.NewReader(bad), "cs.cel"), TLVReplayOptions{File: "cs.cel", Alg: mr.SHA384})
	var m *eventlog.Mismatch
	if !errors.As(err, &m) || m.Record != 5 || m.Offset != k.Offset {
		t.Errorf("tampered: %v", err)
	}
	// Truncated: error naming the last record.
	_, err = ReplayTLV(NewTLVReader(bytes.NewReader(raw[:len(raw)-3]), "cs.cel"), TLVReplayOptions{File: "cs.cel", Alg: mr.SHA384})
	var le *eventlog.Error
	if !errors.As(err, &le) || le.Record != e.Records-1 || le.Offset != recs[len(recs)-1].Offset || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("truncated: %v", err)
	}
	// Missing bank.
	if _, err := ReplayTLV(NewTLVReader(bytes.NewReader(raw), ""), TLVReplayOptions{Alg: mr.SHA256}); !errors.As(err, &le) {
		t.Errorf("sha256 bank: %v", err)
	}
}

func TestTLVErrors(t *testing.T) {
	for _, c := range []struct {
		in   []byte
		want string
	}{
		{[]byte{0, 0, 0, 0, 8, 0, 0}, "truncated"},
		{[]byte{5, 0, 0, 0, 1, 0}, "want recnum"},
		{[]byte{0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 4, 3, 0, 0, 0, 5, 0x0c, 0, 0, 0, 48}, "truncated sha384 digest"},
		{[]byte{0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 4, 3, 0, 0, 0, 5, 0x99, 0, 0, 0, 0}, "unknown digest algorithm"},
		{[]byte{0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 4, 3, 0xff, 0xff, 0xff, 0xff}, "exceeds"},
	} {
		_, err := NewTLVReader(bytes.NewReader(c.in), "t").Next()
		var le *eventlog.Error
		if !errors.As(err, &le) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("% x: %v, want %q", c.in, err, c.want)
		}
	}
}
