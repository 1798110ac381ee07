package verifier

import (
	"fmt"
	"io"
	"strings"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/internal/termsafe"
)

// Layer numbers, as docs/design.md ("Verifier layers") names them.
const (
	LayerEvidence = 0
	LayerLogs     = 1
	LayerVirtual  = 2
	LayerApp      = 3
	LayerPolicy   = 4
)

var layerNames = [...]string{"evidence", "cc logs", "virtual registers", "application logs", "policy"}

// Status of a layer.
type Status string

// Layer statuses.
const (
	Pass Status = "pass"
	Fail Status = "fail"
	// Skip: the layer did not run, because an earlier one failed.
	Skip Status = "skip"
)

// Report is the verifier's answer.
type Report struct {
	Format   string `json:"format"`
	Bundle   string `json:"bundle,omitempty"`
	Platform string `json:"platform"`
	Trusted  bool   `json:"trusted"`
	// Verdict is the verdict line's word: "TRUSTED", "TRUSTED (weakened:
	// …)" when Weakened is not empty, or "NOT TRUSTED".
	Verdict string `json:"verdict"`
	// Weakened lists, for a trusted bundle, every check that an option
	// weakened or that could not prove what it normally proves (no nonce,
	// no TCB collateral, history taken on trust): a weakened TRUSTED is
	// never printed as a plain TRUSTED.
	Weakened []string      `json:"weakened,omitempty"`
	Layers   []LayerResult `json:"layers"`
	// Proven is every value the evidence proved (proven.go): what
	// `ccmr evidence show` prints and `ccmr policy create --from` pins.
	// It is set whatever the verdict, holding only what the layers that
	// passed proved.
	Proven *Proven `json:"proven,omitempty"`
}

// LayerResult is one layer's verdict: what it checked, what it could not
// check, and for a failure the first thing that broke it. Its JSON adds
// "checks", each line with its stable check ID (checkids.go).
type LayerResult struct {
	Layer      int      `json:"layer"`
	Name       string   `json:"name"`
	Status     Status   `json:"status"`
	Checked    []string `json:"checked,omitempty"`
	NotChecked []string `json:"not_checked,omitempty"`
	Failure    *Failure `json:"failure,omitempty"`
}

// Failure locates what broke a layer. Record is -1 when no single record can
// be blamed (only a final value disagrees) or the failure is outside the
// logs; its JSON then has no "record" member, and "offset" only where a
// byte of a log is named (checkids.go, failureJSON).
type Failure struct {
	Log      string `json:"log,omitempty"`
	Record   int    `json:"record"`
	Offset   int64  `json:"offset"`
	Register string `json:"register,omitempty"`
	Expected string `json:"expected,omitempty"`
	Computed string `json:"computed,omitempty"`
	Reason   string `json:"reason"`

	// tail marks the refusal of a tail the monitor state does not hold
	// the head of (checkTails): the sender's base is not the state's.
	tail bool
}

// TailRefused reports whether f refuses a log sent as a tail because the
// monitor state in use does not hold its head (or holds it elsewhere): a
// statement about the sender's base, not about the machine, which a
// service may answer by asking for the whole logs. It is not kept in the
// JSON report.
func (f *Failure) TailRefused() bool { return f != nil && f.tail }

func newReport(b *bundle.Bundle, name string) *Report {
	r := &Report{Format: "ccmr-verify-report/v1", Bundle: name, Platform: string(b.Platform), Verdict: "NOT TRUSTED"}
	for i, n := range layerNames {
		r.Layers = append(r.Layers, LayerResult{Layer: i, Name: n, Status: Skip})
	}
	return r
}

// FailedLayer is the first failing layer, or -1.
func (r *Report) FailedLayer() int {
	for _, l := range r.Layers {
		if l.Status == Fail {
			return l.Layer
		}
	}
	return -1
}

// VerdictLine is the verdict as the report prints it: NOT TRUSTED, TRUSTED,
// or TRUSTED (weakened: what was weakened; …).
func (r *Report) VerdictLine() string {
	if !r.Trusted {
		return "NOT TRUSTED"
	}
	if len(r.Weakened) == 0 {
		return "TRUSTED"
	}
	return "TRUSTED (weakened: " + strings.Join(r.Weakened, "; ") + ")"
}

// WriteText prints the report for people. Every string that can come from
// the bundle (log formats, register and file names, event names) is escaped
// (internal/termsafe): a terminal shows the report, not what the evidence
// wants drawn on it.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s (platform %s)\n", termsafe.Line(nameOr(r.Bundle)), termsafe.Line(r.VerdictLine()), termsafe.Line(r.Platform))
	for _, l := range r.Layers {
		fmt.Fprintf(&b, "layer %d %-18s %s\n", l.Layer, l.Name, l.Status)
		// A failed layer shows its FAIL first: what broke it must not sit
		// below a screenful of what passed.
		writeFailure(&b, l.Failure)
		notChecked := l.NotChecked
		if l.Failure != nil {
			notChecked = foldNotInEvidence(notChecked)
		}
		for _, c := range l.Checked {
			fmt.Fprintf(&b, "  ok   %s\n", termsafe.Line(c))
		}
		for _, c := range notChecked {
			fmt.Fprintf(&b, "  --   %s\n", termsafe.Line(c))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// foldNotInEvidence folds, in a failed layer's text, the notes on banks a
// log carries but the evidence does not ("… not in the evidence: checked
// in the banks the evidence holds") into the first and a count: there is
// one per log and bank, and they say nothing about the failure. The JSON
// report keeps each.
func foldNotInEvidence(lines []string) []string {
	var out []string
	n := 0
	for _, c := range lines {
		if strings.Contains(c, "not in the evidence") {
			n++
			if n > 1 {
				continue
			}
		}
		out = append(out, c)
	}
	if n > 1 {
		out = append(out, fmt.Sprintf("and %d more banks not in the evidence, checked in the banks it holds (-o json lists them)", n-1))
	}
	return out
}

// writeFailure writes a layer's FAIL line and where it is.
func writeFailure(b *strings.Builder, f *Failure) {
	if f == nil {
		return
	}
	fmt.Fprintf(b, "  FAIL %s\n", termsafe.Line(f.Reason))
	if f.Log != "" {
		if f.Record >= 0 {
			fmt.Fprintf(b, "       at %s record %d, byte %d\n", termsafe.Line(f.Log), f.Record, f.Offset)
		} else {
			fmt.Fprintf(b, "       in %s (no single record can be named: only the final value disagrees)\n", termsafe.Line(f.Log))
		}
	}
	if f.Register != "" {
		fmt.Fprintf(b, "       register %s\n", termsafe.Line(f.Register))
	}
	if f.Expected != "" || f.Computed != "" {
		fmt.Fprintf(b, "       expected %s\n       computed %s\n", termsafe.Line(f.Expected), termsafe.Line(f.Computed))
	}
}

func nameOr(s string) string {
	if s == "" {
		return "bundle"
	}
	return s
}
