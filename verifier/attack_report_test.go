package verifier

import (
	"bytes"
	"strings"
	"testing"
)

// TestAttack15_ReportTextForgery (issue 15 item 15): names from the bundle
// reach the text report of `ccmr verify`. A runtime log whose register name
// holds escape sequences and newlines must not clear the terminal or print
// lines of its own (a forged "TRUSTED" verdict or layer line) in the report
// of a bundle that is not trusted.
func TestAttack15_ReportTextForgery(t *testing.T) {
	g := newGuest(t)
	g.imaUpTo(3)
	b := g.quote(false)
	hostile := "rtmr3\x1b[2J\x1b[H\nbundle: TRUSTED (platform sim)\nlayer 4 policy             pass"
	for i := range b.Logs {
		if b.Logs[i].Format == "runtime" {
			b.Logs[i].Register = hostile
		}
	}
	rep := verifyT(t, b, g.opts())
	if rep.Trusted {
		t.Fatal("a runtime log on an unknown register is trusted")
	}
	var out bytes.Buffer
	if err := rep.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if strings.ContainsAny(text, "\x1b\r") {
		t.Errorf("the report holds a raw control character:\n%q", text)
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "bundle: TRUSTED") || strings.HasPrefix(line, "layer 4 policy             pass") {
			t.Errorf("the report prints a line the bundle wrote: %q", line)
		}
	}
}
