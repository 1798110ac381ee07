package dstack

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/internal/corpus"
)

func corpusLog(t testing.TB) []byte {
	return corpus.Read(t, "dstack/simulator-eventlog.json")
}

// The dstack simulator's log replays to the RTMRs of its quote, as
// EXPECTED.json lists them.
func TestReplayMatchesQuote(t *testing.T) {
	data := corpusLog(t)
	var exp map[string]map[string]json.RawMessage
	if err := json.Unmarshal(corpus.Read(t, "dstack/EXPECTED.json"), &exp); err != nil {
		t.Fatal(err)
	}
	var q map[string]any
	if err := json.Unmarshal(exp["simulator-quote.bin + simulator-eventlog.json"]["quote"], &q); err != nil {
		t.Fatalf("dstack/EXPECTED.json: quote: %v", err)
	}
	res, err := Replay(NewReader(bytes.NewReader(data), "log"), "log", nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 27 || len(res.Registers) != 4 {
		t.Fatalf("%d events, %d registers", res.Events, len(res.Registers))
	}
	for _, v := range res.Registers {
		if want, _ := q[v.Register.Name].(string); v.Digest.Hex() != want {
			t.Errorf("%s = %s, quote has %s", v.Register.Name, v.Digest.Hex(), want)
		}
	}
	if !Sniff(data) {
		t.Error("Sniff does not recognise the log")
	}
}

func TestTamperedRuntimeEvent(t *testing.T) {
	data := corpusLog(t)
	bad := bytes.Replace(data, []byte(`"event":"app-id"`), []byte(`"event":"app-ie"`), 1)
	_, err := Replay(NewReader(bytes.NewReader(bad), "log"), "log", nil)
	var mm *eventlog.Mismatch
	if !errors.As(err, &mm) || !strings.Contains(mm.Reason, "app-ie") {
		t.Fatalf("got %v", err)
	}
	for _, in := range []string{"", "{}", "[1]", `[{"imr":7,"event_type":1,"digest":"00","event":"","event_payload":""}]`, "[{", `[{"imr":0}]`} {
		if _, err := Replay(NewReader(strings.NewReader(in), "x"), "x", nil); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func FuzzReader(f *testing.F) {
	for _, b := range corpus.Seeds(f, "dstack/simulator-eventlog.json") {
		f.Add(b)
	}
	f.Add([]byte(`[{"imr":3,"event_type":134217729,"digest":"` + strings.Repeat("00", 48) + `","event":"a","event_payload":"00"}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		Replay(NewReader(bytes.NewReader(b), "f"), "f", nil)
	})
}

// Version 2 runtime events hash their RFC 8785 canonical JSON; the expected
// strings are those of dstack's cc-eventlog tests.
func TestCanonicalV2(t *testing.T) {
	for _, c := range []struct {
		name    string
		payload []byte
		want    string
	}{
		{"compose-hash", []byte{0xab, 0xcd}, `{"event":"compose-hash","event_type":134217729,"payload":"abcd","version":2}`},
		{"event\"with\\special\nchars", []byte{0xff}, `{"event":"event\"with\\special\nchars","event_type":134217729,"payload":"ff","version":2}`},
		{"\x08\x0c\n\r\t\x01", nil, `{"event":"\b\f\n\r\t\u0001","event_type":134217729,"payload":"","version":2}`},
		{"测试-emoji-🦀", nil, `{"event":"测试-emoji-🦀","event_type":134217729,"payload":"","version":2}`},
	} {
		if got := CanonicalV2(c.name, c.payload); got != c.want {
			t.Errorf("%q: got %s, want %s", c.name, got, c.want)
		}
	}
	// A version 2 event checks with its own digest, not version 1's.
	d := RuntimeDigestV2("app-id", []byte{1})
	ev := `[{"imr":3,"event_type":134217729,"digest":"` + d.Hex() + `","event":"app-id","event_payload":"01","version":2}]`
	if _, err := Replay(NewReader(strings.NewReader(ev), "v2"), "v2", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Replay(NewReader(strings.NewReader(strings.Replace(ev, `"version":2`, `"version":1`, 1)), "v1"), "v1", nil); err == nil {
		t.Fatal("a version 2 digest passes as version 1")
	}
	if _, err := Replay(NewReader(strings.NewReader(strings.Replace(ev, `"version":2`, `"version":3`, 1)), "v3"), "v3", nil); err == nil {
		t.Fatal("version 3 accepted")
	}
}

// Issue 15 item 17: an RTMR3 event whose type is changed keeps its digest
// with any payload; dstack extends RTMR3 only with runtime events, so
// another type there is refused.
func TestAttack17_RTMR3EventType(t *testing.T) {
	data := corpusLog(t)
	bad := bytes.Replace(data, []byte(`"event_type":134217729,`), []byte(`"event_type":1,`), 1)
	if bytes.Equal(bad, data) {
		t.Fatal("no runtime event to change")
	}
	_, err := Replay(NewReader(bytes.NewReader(bad), "log"), "log", nil)
	var mm *eventlog.Mismatch
	if !errors.As(err, &mm) || !strings.Contains(mm.Reason, "dstack extends RTMR3 only with runtime events") {
		t.Fatalf("got %v", err)
	}
}
