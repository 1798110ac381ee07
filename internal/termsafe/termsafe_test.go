package termsafe

import "testing"

func TestLine(t *testing.T) {
	for in, want := range map[string]string{
		"plain /usr/bin/ls":      "plain /usr/bin/ls",
		"a\x1b[2Jb":              `a\x1b[2Jb`,
		"x\nlayer 4 policy pass": `x\nlayer 4 policy pass`,
		"bad\xffutf8":            `bad\xffutf8`,
		"rtl\u202eevil":          `rtl\u202eevil`,
		"tab\tok":                "tab\tok",
		"carriage\rreturn":       `carriage\rreturn`,
		"unicode é kept":         "unicode é kept",
		"\x9b31m (raw byte)":     `\x9b31m (raw byte)`,
		"\u009b31m (8-bit CSI)":  `\u009b31m (8-bit CSI)`,
	} {
		if got := Line(in); got != want {
			t.Errorf("Line(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestString(t *testing.T) {
	if got := String("/usr/bin/ls"); got != "/usr/bin/ls" {
		t.Errorf("String kept-safe = %q", got)
	}
	if got := String("a b\n"); got != `"a b\n"` {
		t.Errorf("String = %q", got)
	}
	if Safe("a\tb") {
		t.Error("a tab is not safe inside a token")
	}
}

func FuzzLine(f *testing.F) {
	f.Add("a\x1b[2J\n\xff")
	f.Fuzz(func(t *testing.T, s string) {
		out := Line(s)
		if !safeLine(out) {
			t.Fatalf("Line(%q) = %q still holds unsafe characters", s, out)
		}
	})
}
