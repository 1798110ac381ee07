package sim

import (
	"bytes"
	"os"
	"testing"
)

func seed(f *testing.F, names ...string) {
	for _, n := range names {
		b, err := os.ReadFile("testdata/" + n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzParseState: no panic, and whatever parses round-trips.
func FuzzParseState(f *testing.F) {
	seed(f, "state-tdx.json", "state-tpm.json")
	f.Add(newState(LayoutTPM).Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ParseState(b)
		if err != nil {
			return
		}
		m := st.Marshal()
		st2, err := ParseState(m)
		if err != nil {
			t.Fatalf("re-parse of marshalled state: %v", err)
		}
		if !bytes.Equal(st2.Marshal(), m) || st2.Seq != st.Seq || st2.Layout != st.Layout {
			t.Fatal("state does not round-trip")
		}
	})
}
