package fleet

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
)

// Red team, round 7 (fleet): attacks on the fleet verifier's tails, its
// TDX/SNP enrolment by hardware identity and the evidence endpoint. Each
// test carries the hostile input; docs/threat-model.md, "Round 7 (fleet)",
// lists every attack tried.

// snpGroups is a policy folder whose group "snp" accepts the corpus's
// debug SNP guest, and whose group "tpm" pins nothing platform-specific
// (a TPM fleet's group without PCR rules, as a fresh deployment has).
func redteamGroups(t *testing.T) *Groups {
	t.Helper()
	dir := t.TempDir()
	for name, pol := range map[string]string{"snp": `{"snp": {"allow_debug": true}}`, "tpm": `{}`} {
		if err := os.WriteFile(filepath.Join(dir, name+".json"), []byte(pol), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	g, err := LoadGroups(dir)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// A sim or TPM machine pins a key; the verifier checks the key only on
// sim and TPM evidence. Genuine SEV-SNP evidence of any host (the corpus's
// go-sev-guest report, signed by its chip's VCEK, answering the nonce the
// service issued) posted as a TPM or sim machine was judged on the SNP
// path, where the pinned key is never looked at: TRUSTED, the state
// advanced. Evidence of another platform than the machine's is refused
// 403 before the verifier runs, nothing written, the nonce unused.
func TestRedteam7_OtherPlatformEvidenceForKeyedMachine(t *testing.T) {
	snp, vcek := corpus.Read(t, "go-sev-guest/attestation.bin"), corpus.Read(t, "go-sev-guest/vcek.testcer")
	nonce := append([]byte(nil), snp[0x50:0x90]...)
	g := newGuest(t, 1)
	for name, url := range storeURLs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			r := newReplica(t, url, Config{Groups: redteamGroups(t)})
			if err := r.st.IssueNonce(ctx, nonce, time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			for _, m := range []Machine{
				{ID: "tpm-1", Group: "snp", Platform: "tpm", KeyPEM: string(g.key)},
				{ID: "sim-1", Group: "snp", Platform: "sim", KeyPEM: string(g.key)},
				{ID: "tpm-2", Group: "tpm", Platform: "tpm", KeyPEM: string(g.key)},
			} {
				if err := r.st.Enroll(ctx, m); err != nil {
					t.Fatal(err)
				}
				// Each case on its own: a nonce a case consumed is made
				// good again (only a refusal must leave it unused).
				if _, err := r.st.(*sqlStore).db.ExecContext(ctx, "UPDATE nonces SET used = NULL"); err != nil {
					t.Fatal(err)
				}
				before := takeSnap(t, r.st, m.ID)
				code, res := r.post(t, m.ID, hwBundle(t, mr.PlatformSNP, snp, [][]byte{vcek}, nonce))
				if code != 403 {
					t.Errorf("%s (%s machine): another host's SNP report: status %d (trusted %v), want 403", m.ID, m.Platform, code, res != nil && res.Trusted)
				}
				if after := takeSnap(t, r.st, m.ID); after != before {
					t.Errorf("%s: refused evidence wrote: %+v, was %+v", m.ID, after, before)
				}
			}
			// The nonce is still unused: the report is judged as the SNP
			// machine of that chip.
			enrolHW(t, r.st, "snp-1", "snp", mr.PlatformSNP, snp, nil)
			if code, res := r.post(t, "snp-1", hwBundle(t, mr.PlatformSNP, snp, [][]byte{vcek}, nonce)); code != 200 || !res.Trusted {
				t.Errorf("the chip's own machine: %d (nonce consumed by a refusal?)", code)
			}
		})
	}
}

// Identity read CHIP_ID from any SNP report whatever key signed it, but
// only a VCEK-signed report has its CHIP_ID compared with anything (the
// VCEK's HWID): a VLEK is a cloud provider's key, shared by its chips, and
// the verifier checks no CHIP_ID under it. A VLEK report carrying the
// enrolled machine's CHIP_ID passed the pin and was judged (and recorded)
// as that machine, and `--from` enrolled a chip identity from it that no
// verification would ever bind to a chip. Only a VCEK-signed report names
// a chip.
func TestRedteam7_VLEKReportNamesNoChip(t *testing.T) {
	victim, vcek := corpus.Read(t, "go-sev-guest/attestation.bin"), corpus.Read(t, "go-sev-guest/vcek.testcer")
	vlek := bytes.Clone(corpus.Read(t, "trustee/snp/test-vlek-report.bin"))
	if vlek[0x48]>>2&7 != 1 {
		t.Fatalf("the corpus's VLEK report is not VLEK-signed: signer info %x", vlek[0x48:0x4c])
	}
	copy(vlek[snpChipIDOffset:snpChipIDOffset+snpChipIDSize], victim[snpChipIDOffset:snpChipIDOffset+snpChipIDSize])
	if id, err := Identity(mr.PlatformSNP, vlek); err == nil {
		t.Errorf("a VLEK-signed report names chip %s", id)
	}
	nonce := append([]byte(nil), vlek[0x50:0x90]...)
	for name, url := range storeURLs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			r := newReplica(t, url, Config{Groups: redteamGroups(t)})
			if err := r.st.IssueNonce(ctx, nonce, time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			enrolHW(t, r.st, "snp-1", "snp", mr.PlatformSNP, victim, nil)
			before := takeSnap(t, r.st, "snp-1")
			if code, _ := r.post(t, "snp-1", hwBundle(t, mr.PlatformSNP, vlek, [][]byte{vcek}, nonce)); code != 403 {
				t.Errorf("a VLEK report with the machine's CHIP_ID: status %d, want 403", code)
			}
			if after := takeSnap(t, r.st, "snp-1"); after != before {
				t.Errorf("refused evidence wrote: %+v, was %+v", after, before)
			}
		})
	}
}

// A bundle already judged for a machine gets its recorded verdict back, so
// that an agent's retry is idempotent. After the machine was enrolled again
// with another key (its old device retired, or compromised), the old
// device's last bundle, posted once more, was answered 200 "trusted" with
// the old EAR: a TRUSTED answer for the machine id about a key it no longer
// has. A verdict recorded under an earlier enrolment's pin is not the
// machine's any more: refused 403, nothing written. A verdict of the
// current pin is still replayed.
func TestRedteam7_ReplayAfterReenrolment(t *testing.T) {
	for name, url := range storeURLs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			r := newReplica(t, url, Config{})
			old, repl := newGuest(t, 1), newGuest(t, 2)
			if err := r.st.Enroll(ctx, old.machine("default")); err != nil {
				t.Fatal(err)
			}
			body := old.evidence(t, r.challenge(t), false)
			if code, res := r.post(t, old.id, body); code != 200 || !res.Trusted {
				t.Fatalf("the old device's bundle: %d %+v", code, res)
			}
			// A retry under the same pin: its verdict back.
			if code, res := r.post(t, old.id, body); code != 200 || !res.Replayed || !res.Trusted {
				t.Fatalf("a retry: %d %+v", code, res)
			}
			// The machine gets a new device: enrolled again with its key.
			m := repl.machine("default")
			m.ID = old.id
			if err := r.st.Enroll(ctx, m); err != nil {
				t.Fatal(err)
			}
			before := takeSnap(t, r.st, old.id)
			code, res := r.post(t, old.id, body)
			if code == 200 && res.Trusted {
				t.Errorf("the retired device's bundle after re-enrolment: 200 trusted (replayed %v)", res.Replayed)
			} else if code != 403 {
				t.Errorf("the retired device's bundle after re-enrolment: status %d, want 403", code)
			}
			if after := takeSnap(t, r.st, old.id); after != before {
				t.Errorf("refused replay wrote: %+v, was %+v", after, before)
			}
			// The new device's own bundle: judged, then replayed.
			nb := repl.evidence(t, r.challenge(t), false)
			for i := 0; i < 2; i++ {
				if code, res := r.post(t, old.id, nb); code != 200 || !res.Trusted || res.Replayed != (i == 1) {
					t.Fatalf("the new device's bundle, post %d: %d %+v", i, code, res)
				}
			}
		})
	}
}
