package sm3

import (
	"encoding/hex"
	"strings"
	"testing"
)

// Vectors from GB/T 32905-2016, Appendix A.
func TestVectors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"},
		{strings.Repeat("abcd", 16), "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"},
	} {
		got := Sum([]byte(c.in))
		if hex.EncodeToString(got[:]) != c.want {
			t.Errorf("sm3(%q) = %x, want %s", c.in, got, c.want)
		}
		h := New()
		for i := 0; i < len(c.in); i++ {
			h.Write([]byte{c.in[i]})
		}
		if hex.EncodeToString(h.Sum(nil)) != c.want {
			t.Errorf("streaming sm3(%q) mismatch", c.in)
		}
	}
}
