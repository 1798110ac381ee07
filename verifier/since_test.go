package verifier

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/mr"
)

// A since file round-trips, and a hostile one is refused as malformed.
func TestSinceFile(t *testing.T) {
	g, state := tailGuest(t)
	s, ok := state.Since(MachineID(g.quote(false)))
	if !ok || len(s.Runtime) != 1 || s.IMA == nil || s.Runtime[0].Offset == 0 {
		t.Fatalf("since: %+v", s)
	}
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseSince(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := back.Marshal()
	if !bytes.Equal(b, b2) {
		t.Fatalf("round trip:\n%s\n%s", b, b2)
	}
	if _, ok := state.Since("another machine"); ok {
		t.Fatal("a since for a machine the state does not hold")
	}
	for _, bad := range []string{
		`null`,
		`{"format":"ccmr-since/v0","machine":"m"}`,
		`{"format":"ccmr-since/v1","machine":"m","extra":1}`,
		`{"format":"ccmr-since/v1","machine":"m","ima":{"offset":-1}}`,
		`{"format":"ccmr-since/v1","machine":"m","runtime":[{"register":"rtmr3","offset":-4}]}`,
		`{"format":"ccmr-since/v1","machine":"m","runtime":[{"register":"rtmr3","offset":4},{"register":"rtmr3","offset":8}]}`,
		`{"format":"ccmr-since/v1","machine":"m","runtime":[{"register":"","offset":4}]}`,
		strings.TrimSuffix(string(b), "\n") + `{}`,
	} {
		if _, err := ParseSince([]byte(bad)); !errors.Is(err, mr.ErrMalformed) {
			t.Errorf("%s: want malformed, got %v", bad, err)
		}
	}
}

// TailLogs refuses logs that are tails already, and keeps logs it was not
// told about whole.
func TestTailLogsInput(t *testing.T) {
	g, state := tailGuest(t)
	b := g.quote(true)
	s, _ := state.Since(MachineID(b))
	tl, err := TailLogs(b.Logs, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TailLogs(tl, s); err == nil {
		t.Fatal("tails of tails")
	}
	same, err := TailLogs(b.Logs, &Since{Format: SinceFormat})
	if err != nil || len(same) != len(b.Logs) {
		t.Fatalf("an empty since changed the logs: %v", err)
	}
	for i := range same {
		if same[i].Offset != 0 || !bytes.Equal(same[i].Data, b.Logs[i].Data) {
			t.Fatalf("log %d changed", i)
		}
	}
}

// FuzzParseSince: a since file either parses into one that round-trips or
// is refused as malformed; it never panics.
func FuzzParseSince(f *testing.F) {
	f.Add([]byte(`{"format":"ccmr-since/v1","machine":"m","runtime":[{"register":"rtmr3","segment_init":"sha384:` + strings.Repeat("00", 48) + `","offset":4,"value":"sha384:` + strings.Repeat("11", 48) + `"}],"ima":{"offset":9}}`))
	f.Add([]byte(`{"format":"ccmr-since/v1","machine":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSince(b)
		if err != nil {
			if !errors.Is(err, mr.ErrMalformed) {
				t.Fatalf("not malformed: %v", err)
			}
			return
		}
		out, err := s.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseSince(out); err != nil {
			t.Fatalf("a parsed since does not parse again: %v\n%s", err, out)
		}
	})
}
