package backend

import (
	"errors"
	"testing"

	"github.com/ccmr-dev/ccmr/mr"
)

func TestParseSpec(t *testing.T) {
	for _, c := range []struct {
		in, kind, arg, layout string
	}{
		{"", "auto", "", ""},
		{"auto", "auto", "", ""},
		{"sim", "sim", "", ""},
		{"sim:/tmp/x", "sim", "/tmp/x", ""},
		{"sim:/tmp/x?layout=tpm", "sim", "/tmp/x", "tpm"},
		{"sim:?layout=tpm", "sim", "", "tpm"},
		{"tcp://127.0.0.1:2321", "tpm", "tcp://127.0.0.1:2321", ""},
		{"tpm:tcp://127.0.0.1:2321", "tpm", "tcp://127.0.0.1:2321", ""},
		{"tpm:/dev/tpm0", "tpm", "/dev/tpm0", ""},
		{"unix:/run/swtpm.sock", "tpm", "unix:/run/swtpm.sock", ""},
		{"tdx:/tmp/root", "tdx", "/tmp/root", ""},
		{"snp", "snp", "", ""},
	} {
		s, err := ParseSpec(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if s.Kind != c.kind || s.Arg != c.arg || s.Options.Get("layout") != c.layout {
			t.Errorf("%q: got %+v", c.in, s)
		}
	}
	for _, bad := range []string{"vmware", "auto:x", "sim:/x?color=red", "tdx:/x?layout=tpm"} {
		if _, err := ParseSpec(bad); err == nil {
			t.Errorf("%q: no error", bad)
		} else if !errors.Is(err, mr.ErrUnsupported) && !errors.Is(err, mr.ErrMalformed) {
			t.Errorf("%q: error %v is not a sentinel", bad, err)
		}
	}
}
