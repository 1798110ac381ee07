package tail

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/mr"
)

var good = `{"format":"ccmr-since/v1","machine":"m","runtime":[{"register":"rtmr3","segment_init":"sha384:` + zeros + `","offset":4,"value":"sha384:` + zeros + `"}],"ima":{"offset":9}}`

var zeros = strings.Repeat("00", 48)

// A hostile since file is refused as malformed, never half-read.
func TestParseSinceHostile(t *testing.T) {
	s, err := ParseSince([]byte(good))
	if err != nil || s.IMA.Offset != 9 || s.Runtime[0].Offset != 4 {
		t.Fatalf("%+v %v", s, err)
	}
	for _, bad := range []string{
		``,
		`null`,
		`{"format":"ccmr-since/v0","machine":"m"}`,
		`{"format":"ccmr-since/v1","machine":"m","extra":1}`,
		`{"format":"ccmr-since/v1","machine":"m","ima":{"offset":-1}}`,
		`{"format":"ccmr-since/v1","machine":"m","runtime":[{"register":"rtmr3","offset":-4}]}`,
		`{"format":"ccmr-since/v1","machine":"m","runtime":[{"register":"rtmr3","offset":4},{"register":"rtmr3","offset":8}]}`,
		`{"format":"ccmr-since/v1","machine":"m","runtime":[{"register":"","offset":4}]}`,
		good + `{}`,
		`{"format":"ccmr-since/v1","machine":"` + strings.Repeat("m", MaxSinceFile) + `"}`,
	} {
		if _, err := ParseSince([]byte(bad)); !errors.Is(err, mr.ErrMalformed) {
			t.Errorf("%.80s: want malformed, got %v", bad, err)
		}
	}
}

// The IMA list is cut at the since's offset (a tail naming it), an IMA list
// shorter than the offset and logs the since does not name stay whole, and
// a tail is refused as input.
func TestLogsIMA(t *testing.T) {
	list := bytes.Repeat([]byte{7}, 100)
	logs := []bundle.Log{
		{Format: "ima-binary", Data: list},
		{Format: "dstack-json", Data: []byte("[]")},
	}
	out, err := Logs(logs, &Since{Format: SinceFormat, IMA: &SinceIMA{Offset: 40}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0].Offset != 40 || !bytes.Equal(must(out[0].Bytes()), list[40:]) || out[1].Offset != 0 || len(out[1].Data) != 2 {
		t.Fatalf("%+v", out)
	}
	if _, err := Logs(out, &Since{Format: SinceFormat}); err == nil {
		t.Fatal("tails of tails")
	}
	same, err := Logs(logs, &Since{Format: SinceFormat, IMA: &SinceIMA{Offset: 101}})
	if err != nil || same[0].Offset != 0 {
		t.Fatalf("a list shorter than the offset was cut: %+v %v", same, err)
	}
	if n, _ := Logs(logs, nil); len(n) != 2 || n[0].Offset != 0 {
		t.Fatal("a nil since changed the logs")
	}
}

// An attached log's tail reads the file from the offset on.
func TestOfAttached(t *testing.T) {
	data := []byte("0123456789")
	var lg bundle.Log
	lg.Format = "ima-binary"
	lg.Attach(bytes.NewReader(data), int64(len(data)))
	tl, err := Of(&lg, 3)
	if err != nil || tl.Size() != 7 || !bytes.Equal(must(tl.Bytes()), data[3:]) {
		t.Fatalf("%v", err)
	}
	if _, err := Of(&lg, 11); err == nil {
		t.Fatal("an offset past the end")
	}
}

// FuzzParseSince: a since file either parses into one that round-trips or
// is refused as malformed; it never panics.
func FuzzParseSince(f *testing.F) {
	f.Add([]byte(good))
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

func must(b []byte, err error) []byte {
	if err != nil {
		return nil
	}
	return b
}
