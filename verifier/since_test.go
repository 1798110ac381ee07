package verifier

import (
	"bytes"
	"testing"
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
