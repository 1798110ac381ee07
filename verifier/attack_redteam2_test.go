package verifier

// Red team, round 2: attacks on the seams between the fixes of issue 15 and
// of the first red team. Each test asserts the safe outcome and failed on
// the code before its fix. (The round's other attacks are in
// attack_history2_test.go and attack_monitor2_test.go.)

import "testing"

// A TPM bundle whose AK is pinned (or certified by --ak-roots), run without
// --azure-hcl, carries an Azure HCL report and a "TD quote" in
// evidence.report that nothing reads: checkMembers lets both through on
// TPM as soon as azure_hcl_report is non-empty, and the verdict is a plain
// TRUSTED beside hardware evidence nobody checked (the rule of
// checkMembers: "whoever reads the bundle after ccmr vouched for it would
// see them beside a TRUSTED verdict"). Safe: refused, or the HCL report is
// verified.
func TestRedteam2_UnreadHCLReportRidesAlong(t *testing.T) {
	for name, mod := range map[string]func(b *Bundle){
		"hcl": func(b *Bundle) { b.Evidence.AzureHCLReport = []byte("an HCL report, honest") },
		"hcl+report": func(b *Bundle) {
			b.Evidence.AzureHCLReport = []byte("HCL")
			b.Evidence.Report = []byte("a TD quote, honest")
		},
	} {
		t.Run(name, func(t *testing.T) {
			b, o := rtE2ETPM(t)
			mod(b)
			mustRefuse(t, b, o, name)
		})
	}
}
