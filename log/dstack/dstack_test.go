package dstack

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/log"
	"github.com/ccmr-dev/ccmr/log/tcg/corpus"
)

func corpusLog(t testing.TB) []byte {
	dir, err := corpus.Dir()
	if err != nil {
		t.Skipf("public corpus absent: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "dstack/simulator-eventlog.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The dstack simulator's log replays to the RTMRs of its quote, as
// EXPECTED.json lists them.
func TestReplayMatchesQuote(t *testing.T) {
	data := corpusLog(t)
	dir, _ := corpus.Dir()
	var exp map[string]map[string]json.RawMessage
	b, _ := os.ReadFile(filepath.Join(dir, "dstack/EXPECTED.json"))
	if err := json.Unmarshal(b, &exp); err != nil {
		t.Fatal(err)
	}
	var q map[string]any
	json.Unmarshal(exp["simulator-quote.bin + simulator-eventlog.json"]["quote"], &q)
	res, err := Replay(NewReader(bytes.NewReader(data), "log"), "log", nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 27 || len(res.Registers) != 4 {
		t.Fatalf("%d events, %d registers", res.Events, len(res.Registers))
	}
	for _, v := range res.Registers {
		if want := q[v.Register.Name].(string); v.Digest.Hex() != want {
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
	var mm *log.Mismatch
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
	if dir, err := corpus.Dir(); err == nil {
		if b, err := os.ReadFile(filepath.Join(dir, "dstack/simulator-eventlog.json")); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`[{"imr":3,"event_type":134217729,"digest":"` + strings.Repeat("00", 48) + `","event":"a","event_payload":"00"}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		Replay(NewReader(bytes.NewReader(b), "f"), "f", nil)
	})
}
