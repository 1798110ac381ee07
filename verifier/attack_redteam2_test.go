package verifier

// Red team, round 2: attacks on the seams between the fixes of issue 15 and
// of the first red team. Each test asserts the safe outcome and failed on
// the code before its fix. (The round's other attacks are in
// attack_history2_test.go and attack_monitor2_test.go.)

import (
	"bytes"
	"context"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
)

// A TPM bundle whose AK is pinned (or certified by --ak-roots), run without
// --azure-hcl, carries an Azure HCL report and a "TD quote" in
// evidence.report that nothing reads: checkMembers lets both through on
// TPM as soon as azure_hcl_report is non-empty, and the verdict is a plain
// TRUSTED beside hardware evidence nobody checked (the rule of
// checkMembers: "whoever reads the bundle after ccmr vouched for it would
// see them beside a TRUSTED verdict"). Safe: refused, or the HCL report is
// verified.
func TestRedteam2_UnreadHCLReportRidesAlong(t *testing.T) {
	for name, mod := range map[string]func(b *bundle.Bundle){
		"hcl": func(b *bundle.Bundle) { b.Evidence.AzureHCLReport = []byte("an HCL report, honest") },
		"hcl+report": func(b *bundle.Bundle) {
			b.Evidence.AzureHCLReport = []byte("HCL")
			b.Evidence.Report = []byte("a TD quote, honest")
		},
	} {
		t.Run(name, func(t *testing.T) {
			b, o := e2eTrustedTPM(t)
			mod(b)
			mustRefuse(t, b, o, name)
		})
	}
}

// A chain's later segment in another MR index: the MR index is in no
// digest, so the replay of segment 2 under another register's name still
// ends at the quoted value, and the chain was taken for one register's log.
// Every segment must use the first one's MR index and algorithm.
func TestRedteam2_SegmentInAnotherMRIndex(t *testing.T) {
	g := newGuest(t)
	g.imaUpTo(3)
	if _, err := g.s.Cut(context.Background()); err != nil {
		t.Fatal(err)
	}
	g.imaUpTo(6)
	b := g.quote(true)
	if rep := verifyT(t, b, g.opts()); !rep.Trusted {
		t.Fatalf("the chain of two segments is not trusted:\n%s", reportText(rep))
	}
	last := &b.Logs[1]
	if last.Format != "runtime" {
		t.Fatalf("logs[1] is %s, want the second runtime segment", last.Format)
	}
	data := append([]byte(nil), last.Data...)
	rd := aael.NewReader(bytes.NewReader(data), aael.Options{})
	for {
		e, err := rd.Next()
		if err != nil {
			break
		}
		binary.LittleEndian.PutUint32(data[e.Offset:], e.MRIndex+1)
	}
	last.Data = data
	rep := verifyT(t, b, g.opts())
	if rep.Trusted {
		t.Fatalf("a segment in another MR index: %s\n%s", rep.Verdict, reportText(rep))
	}
	if f := rep.Layers[LayerLogs].Failure; f == nil || !strings.Contains(f.Reason, "MR index") {
		t.Fatalf("the failure does not name the MR index:\n%s", reportText(rep))
	}
}
