package verifier

// Red team, round 5: inputs that made the verifier say TRUSTED without
// proving what it claims, on what landed with issues 16 to 18. Each test
// asserts the safe outcome and names the rule that gives it.

import (
	"strconv"
	"strings"
	"testing"
)

// Forges: systemd's log on PCR 23 (or 16), which the guest can reset with
// TPM2_PCR_Reset at locality 0. Root in the guest resets the PCR, extends
// only the records it wants seen and writes a systemd log of them; the
// log replays from the reset value to the quoted PCR and was "checked",
// a plain TRUSTED, though records measured before the reset are gone.
// Rule: the one runtime logs follow (history.go, judgeResettable): a log
// on a guest-resettable PCR proves no history; refused, or a weakened pass
// with AcceptUnverifiedHistory.
func TestRedteam5_SystemdLogOnResettablePCR(t *testing.T) {
	j := newSDJoin(t)
	for _, i := range []int{16, 23} {
		pcr := strconv.Itoa(i)
		t.Run("pcr"+pcr, func(t *testing.T) {
			sd := sdLog(`"pcr":` + pcr + `|attested-app-clean "pcr":` + pcr + `|attested-app-ready`)
			p := j.quoted(t, sd)
			b, o := j.bundle(t, nil, sd, map[int][]byte{i: p[i]})
			rep := mustRefuse(t, b, o, "a systemd log on the guest-resettable pcr"+pcr)
			if rep != nil {
				if f := rep.Layers[LayerLogs].Failure; f == nil || f.Register != "pcr"+pcr || !strings.Contains(f.Reason, "reset") {
					t.Fatalf("want layer 1 to fail on pcr%s as resettable:\n%s", pcr, reportText(rep))
				}
			}
			o.AcceptUnverifiedHistory = true
			rep = verifyT(t, b, o)
			if !rep.Trusted || len(rep.Weakened) == 0 || !strings.Contains(strings.Join(rep.Weakened, ";"), "resettable") {
				t.Fatalf("with --accept-unverified-history, want a weakened pass naming the reset:\n%s", reportText(rep))
			}
		})
	}
}
