package fleet

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tdxverify"
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

// Held: two bundles whose runtime logs are tails from the same stored
// point, posted at once to two replicas (the since check and the advance
// race). The base is checked under the row lock, so exactly one advances;
// the other, whose base the first moved, is refused 409 with its nonce
// unused, and nothing of it is recorded.
func TestRedteam7_TailRaceTwoReplicas(t *testing.T) {
	for name, url := range storeURLs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			r1, r2 := newReplica(t, url, Config{}), newReplica(t, url, Config{})
			g := newGuest(t, 1)
			if err := r1.st.Enroll(ctx, g.machine("default")); err != nil {
				t.Fatal(err)
			}
			g.extend(t)
			if code, res := r1.post(t, g.id, g.quote(t, r1.challenge(t), nil)); code != 200 || !res.Trusted {
				t.Fatalf("whole bundle: %d %+v", code, res)
			}
			since := r1.view(t, g.id).Since
			for round := 0; round < 4; round++ {
				g.extend(t)
				n1, n2 := r1.challenge(t), r2.challenge(t)
				b1, b2 := g.quote(t, n1, since), g.quote(t, n2, since)
				before := takeSnap(t, r1.st, g.id)
				codes := make([]int, 2)
				done := make(chan struct{})
				go func() { codes[0], _ = r1.post(t, g.id, b1); close(done) }()
				codes[1], _ = r2.post(t, g.id, b2)
				<-done
				after := takeSnap(t, r1.st, g.id)
				ok, conflict := 0, 0
				for _, c := range codes {
					switch c {
					case 200:
						ok++
					case 409:
						conflict++
					}
				}
				if ok != 1 || conflict != 1 || after.version != before.version+1 || after.history != before.history+1 {
					t.Fatalf("round %d: statuses %v, version %d→%d, history %d→%d: want one advance and one 409", round, codes, before.version, after.version, before.history, after.history)
				}
				// The refused bundle's nonce is still good: as a whole
				// bundle it is judged (and advances).
				loser := n1
				if codes[1] == 409 {
					loser = n2
				}
				if code, res := r1.post(t, g.id, g.quote(t, loser, nil)); code != 200 || !res.Trusted || !res.Advanced {
					t.Fatalf("round %d: the refused bundle's nonce, whole: %d %+v", round, code, res)
				}
				since = r1.view(t, g.id).Since
			}
		})
	}
}

// replaceChain returns the TDX quote q with its PCK certificate chain (the
// last field of its signature data) replaced by chain, every size field
// around it (signature data, QE certification data, PCK data) adjusted.
func replaceChain(t *testing.T, q []byte, chain []byte) []byte {
	out, err := replaceChainErr(t, q, chain)
	if err != nil {
		t.Fatalf("the rebuilt quote does not parse: %v", err)
	}
	return out
}

// replaceChainErr is replaceChain, returning the quote and whether it parses.
func replaceChainErr(t *testing.T, q []byte, chain []byte) ([]byte, error) {
	t.Helper()
	pq, err := tdxverify.ParseQuote(q)
	if err != nil {
		t.Fatal(err)
	}
	chainOff := pq.End - len(pq.PCKChain)
	d := uint32(len(chain) - len(pq.PCKChain))
	out := append(append(bytes.Clone(q[:chainOff]), chain...), q[pq.End:]...)
	sigLen := len(pq.Signed)
	qeSize := sigLen + 4 + tdxverify.SignatureSize + tdxverify.AttestKeySize + 2
	for _, off := range []int{sigLen, qeSize, chainOff - 4} {
		binary.LittleEndian.PutUint32(out[off:], binary.LittleEndian.Uint32(out[off:])+d)
	}
	_, err = tdxverify.ParseQuote(out)
	return out, err
}

// pemBlocks splits a PEM chain into its blocks, each re-encoded.
func pemBlocks(chain []byte) [][]byte {
	var out [][]byte
	for {
		var b *pem.Block
		b, chain = pem.Decode(chain)
		if b == nil {
			return out
		}
		out = append(out, pem.EncodeToMemory(b))
	}
}

// Held: a TDX quote of platform B whose PCK chain names platform A (the
// enrolled machine) where Identity reads it, while the quote is signed
// through B's certificates. Identity reads the chain's first PEM block;
// the verifier takes exactly three canonical blocks, the first as the leaf
// whose key must sign the QE report. A's leaf in place of B's, or put in
// front of B's chain, passes the pin (it is A's identity) but the verifier
// refuses it: NOT TRUSTED (a verdict, as for a sim or TPM bundle signed by
// another key), the state not advanced. Text before the chain, and
// trailing bytes, are refused as a quote that does not parse or is not
// canonical.
func TestRedteam7_TDXChainNamesVictimSignedByOther(t *testing.T) {
	tdxA, tdxB := corpus.Read(t, "dcap-qvl/tdx_quote"), corpus.Read(t, "trustee/tdx/tdx_quote_4.dat")
	qa, err := tdxverify.ParseQuote(tdxA)
	if err != nil {
		t.Fatal(err)
	}
	qb, err := tdxverify.ParseQuote(tdxB)
	if err != nil {
		t.Fatal(err)
	}
	ba, bb := pemBlocks(qa.PCKChain), pemBlocks(qb.PCKChain)
	if len(ba) != 3 || len(bb) != 3 {
		t.Fatalf("chains of %d and %d blocks", len(ba), len(bb))
	}
	idA, err := Identity(mr.PlatformTDX, tdxA)
	if err != nil {
		t.Fatal(err)
	}
	nonce := append([]byte(nil), qb.Body.ReportData[:]...)
	forged := map[string][]byte{
		"A's leaf in B's chain":     replaceChain(t, tdxB, bytes.Join([][]byte{ba[0], bb[1], bb[2]}, nil)),
		"A's leaf before B's chain": replaceChain(t, tdxB, bytes.Join([][]byte{ba[0], bb[0], bb[1], bb[2]}, nil)),
		"A's leaf after B's chain":  replaceChain(t, tdxB, bytes.Join([][]byte{bb[0], bb[1], bb[2], ba[0]}, nil)),
	}
	// Text around the blocks: the quote does not parse, and names nothing.
	for what, chain := range map[string][][]byte{
		"text, then A's leaf, B's chain": {[]byte("x\n"), ba[0], bb[0], bb[1], bb[2]},
		"A's leaf, then text":            {ba[0], []byte("x\n"), bb[0], bb[1], bb[2]},
		"B's chain, then text":           {bb[0], bb[1], bb[2], []byte("x")},
	} {
		q, err := replaceChainErr(t, tdxB, bytes.Join(chain, nil))
		if err == nil {
			t.Errorf("%s: the quote parses", what)
		}
		if id, err := Identity(mr.PlatformTDX, q); err == nil {
			t.Errorf("%s: identity %s", what, id)
		}
	}
	for name, url := range storeURLs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			r := newReplica(t, url, Config{Groups: redteamGroups(t)})
			if err := r.st.IssueNonce(ctx, nonce, time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			enrolHW(t, r.st, "tdx-a", "tpm", mr.PlatformTDX, tdxA, &Trust{AllowMissingCollateral: true})
			for what, q := range forged {
				if _, err := r.st.(*sqlStore).db.ExecContext(ctx, "UPDATE nonces SET used = NULL"); err != nil {
					t.Fatal(err)
				}
				id, _ := Identity(mr.PlatformTDX, q)
				before := takeSnap(t, r.st, "tdx-a")
				code, res := r.post(t, "tdx-a", hwBundle(t, mr.PlatformTDX, q, nil, nonce))
				if code == 200 && res.Trusted {
					t.Errorf("%s (identity %s, enrolled %s): TRUSTED", what, id, idA)
				}
				if after := takeSnap(t, r.st, "tdx-a"); after.version != before.version || after.state != before.state {
					t.Errorf("%s: the state moved: %+v, was %+v", what, after, before)
				}
			}
		})
	}
}

// Held: hardware identities given by hand (`--hw-id`) that could match
// more than one machine, or the other kind: zero, short, long, the other
// platform's prefix, a doubled prefix, spaces; upper-case hex is the same
// identity as lower-case (the stored form is lower-case, compared byte
// for byte). Enrol refuses any identity not in that form.
func TestRedteam7_HandIdentities(t *testing.T) {
	ppid := "811dca2a26b952e85bb6448b097ba4fd"
	chip := strings.Repeat("3a", 64)
	for _, c := range []struct {
		p  mr.Platform
		in string
	}{
		{mr.PlatformTDX, strings.Repeat("00", 16)},
		{mr.PlatformTDX, ppid[:30]},
		{mr.PlatformTDX, ppid + "00"},
		{mr.PlatformTDX, ""},
		{mr.PlatformTDX, "snp-chip-id:" + ppid},
		{mr.PlatformTDX, "tdx-ppid:tdx-ppid:" + ppid},
		{mr.PlatformTDX, " " + ppid},
		{mr.PlatformTDX, "tdx-ppid:" + ppid + "\n"},
		{mr.PlatformSNP, strings.Repeat("00", 64)},
		{mr.PlatformSNP, "tdx-ppid:" + ppid},
		{mr.PlatformSNP, ppid},
		{mr.PlatformSNP, chip[:126]},
		{mr.PlatformSim, ppid},
		{mr.PlatformTPM, chip},
	} {
		if id, err := ParseIdentity(c.p, c.in); err == nil {
			t.Errorf("%s --hw-id %q: identity %s", c.p, c.in, id)
		}
	}
	if a, err := ParseIdentity(mr.PlatformTDX, strings.ToUpper(ppid)); err != nil || a != "tdx-ppid:"+ppid {
		t.Errorf("upper-case PPID: %q %v", a, err)
	}
	st := openStore(t, "sqlite:"+filepath.Join(t.TempDir(), "fleet.db"))
	for _, id := range []string{"tdx-ppid:" + strings.ToUpper(ppid), "TDX-PPID:" + ppid, "tdx-ppid:" + ppid + " ", "snp-chip-id:" + ppid} {
		if err := st.Enroll(context.Background(), Machine{ID: "x", Group: "g", Platform: "tdx", Identity: id}); err == nil {
			t.Errorf("enrolled tdx identity %q", id)
		}
	}
}

// Held: trust options stored for one machine (--allow-missing-collateral)
// reach no other machine, not even one of the same host (same PPID), and
// are gone once the machine is enrolled again without them. (They are set
// at enrolment only: the API has no call that writes a machine.)
func TestRedteam7_TrustStaysWithItsMachine(t *testing.T) {
	tdxA := corpus.Read(t, "dcap-qvl/tdx_quote")
	qa, err := tdxverify.ParseQuote(tdxA)
	if err != nil {
		t.Fatal(err)
	}
	nonce := append([]byte(nil), qa.Body.ReportData[:]...)
	for name, url := range storeURLs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			r := newReplica(t, url, Config{Groups: redteamGroups(t)})
			if err := r.st.IssueNonce(ctx, nonce, time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			posts := 0
			post := func(id string) (int, *Result) {
				if _, err := r.st.(*sqlStore).db.ExecContext(ctx, "UPDATE nonces SET used = NULL"); err != nil {
					t.Fatal(err)
				}
				// A distinct bundle each time (its time differs): judged,
				// never a replay of an earlier verdict.
				posts++
				b := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTDX, Nonce: nonce, Time: time.Unix(int64(posts), 0).UTC(),
					Evidence: bundle.Evidence{Report: tdxA}}
				var buf bytes.Buffer
				if err := b.Write(&buf); err != nil {
					t.Fatal(err)
				}
				return r.post(t, id, buf.Bytes())
			}
			enrolHW(t, r.st, "td-weak", "tpm", mr.PlatformTDX, tdxA, &Trust{AllowMissingCollateral: true})
			enrolHW(t, r.st, "td-strict", "tpm", mr.PlatformTDX, tdxA, nil)
			if code, res := post("td-weak"); code != 200 || !res.Trusted {
				t.Fatalf("the machine with the option: %d %+v", code, res)
			}
			if code, res := post("td-strict"); code != 200 || res.Trusted {
				t.Errorf("the same host's other machine, without the option: %d trusted %v, want NOT TRUSTED", code, res != nil && res.Trusted)
			}
			enrolHW(t, r.st, "td-weak", "tpm", mr.PlatformTDX, tdxA, nil)
			if code, res := post("td-weak"); code != 200 || res.Trusted {
				t.Errorf("enrolled again without the option: %d trusted %v, want NOT TRUSTED", code, res != nil && res.Trusted)
			}
			// No call of the API writes a machine.
			for _, method := range []string{http.MethodPut, http.MethodPatch, http.MethodPost, http.MethodDelete} {
				req, err := http.NewRequestWithContext(ctx, method, r.url+"/v1/machines/td-strict", strings.NewReader(`{"trust":{"allow_missing_collateral":true}}`))
				if err != nil {
					t.Fatal(err)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusMethodNotAllowed && resp.StatusCode != http.StatusNotFound {
					t.Errorf("%s /v1/machines/td-strict: status %d", method, resp.StatusCode)
				}
			}
			if code, res := post("td-strict"); code != 200 || res.Trusted {
				t.Errorf("after the API calls: %d trusted %v, want NOT TRUSTED", code, res != nil && res.Trusted)
			}
		})
	}
}

// The replay rule of TestRedteam7_ReplayAfterReenrolment, for an
// enrolment that keeps the pin but judges differently: a TDX machine
// enrolled with --allow-missing-collateral, then enrolled again without it
// (or moved to a stricter group). Its earlier bundle, posted again, was
// answered 200 trusted, judged under the option the operator had just
// withdrawn. A verdict is replayed only under the enrolment that judged
// it; an unchanged enrolment (the enrol command run again) keeps it.
func TestRedteam7_ReplayAfterTrustChange(t *testing.T) {
	tdxA := corpus.Read(t, "dcap-qvl/tdx_quote")
	qa, err := tdxverify.ParseQuote(tdxA)
	if err != nil {
		t.Fatal(err)
	}
	nonce := append([]byte(nil), qa.Body.ReportData[:]...)
	body := hwBundle(t, mr.PlatformTDX, tdxA, nil, nonce)
	for name, url := range storeURLs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			r := newReplica(t, url, Config{Groups: redteamGroups(t)})
			if err := r.st.IssueNonce(ctx, nonce, time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			weak := &Trust{AllowMissingCollateral: true}
			enrolHW(t, r.st, "td", "tpm", mr.PlatformTDX, tdxA, weak)
			if code, res := r.post(t, "td", body); code != 200 || !res.Trusted {
				t.Fatalf("under the option: %d %+v", code, res)
			}
			// The same enrolment again: a retry is still a replay.
			enrolHW(t, r.st, "td", "tpm", mr.PlatformTDX, tdxA, weak)
			if code, res := r.post(t, "td", body); code != 200 || !res.Trusted || !res.Replayed {
				t.Fatalf("a retry under the same enrolment: %d %+v", code, res)
			}
			for _, e := range []struct {
				what  string
				group string
				tr    *Trust
			}{{"without the option", "tpm", nil}, {"in another group", "snp", weak}} {
				enrolHW(t, r.st, "td", e.group, mr.PlatformTDX, tdxA, e.tr)
				before := takeSnap(t, r.st, "td")
				code, res := r.post(t, "td", body)
				if code == 200 && res.Trusted {
					t.Errorf("enrolled again %s: the earlier bundle answered 200 trusted (replayed %v)", e.what, res.Replayed)
				} else if code != 403 {
					t.Errorf("enrolled again %s: status %d, want 403", e.what, code)
				}
				if after := takeSnap(t, r.st, "td"); after != before {
					t.Errorf("refused replay wrote: %+v, was %+v", after, before)
				}
			}
		})
	}
}

// The replay rule once more, for the group's policy: a sim machine's
// bundle TRUSTED under its group's policy; the operator changes the
// policy so that this machine's values fail, and reloads (SIGHUP). The
// earlier bundle, posted again, was answered 200 trusted, judged under
// the policy just withdrawn. A verdict is replayed only while the group
// has the policy it was judged under.
func TestRedteam7_ReplayAfterPolicyChange(t *testing.T) {
	dir := t.TempDir()
	pol := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, "web.json"), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pol(`{}`)
	groups, err := LoadGroups(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, url := range storeURLs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			pol(`{}`)
			if err := groups.Reload(); err != nil {
				t.Fatal(err)
			}
			r := newReplica(t, url, Config{Groups: groups})
			g := newGuest(t, 1)
			if err := r.st.Enroll(ctx, g.machine("web")); err != nil {
				t.Fatal(err)
			}
			body := g.evidence(t, r.challenge(t), false)
			if code, res := r.post(t, g.id, body); code != 200 || !res.Trusted {
				t.Fatalf("under the first policy: %d %+v", code, res)
			}
			if code, res := r.post(t, g.id, body); code != 200 || !res.Replayed {
				t.Fatalf("a retry under the same policy: %d %+v", code, res)
			}
			pol(`{"registers": {"mr_app": "sha384:` + strings.Repeat("00", 48) + `"}}`)
			if err := groups.Reload(); err != nil {
				t.Fatal(err)
			}
			before := takeSnap(t, r.st, g.id)
			code, res := r.post(t, g.id, body)
			if code == 200 && res.Trusted {
				t.Errorf("after the policy changed: the earlier bundle answered 200 trusted (replayed %v)", res.Replayed)
			} else if code != 403 {
				t.Errorf("after the policy changed: status %d, want 403", code)
			}
			if after := takeSnap(t, r.st, g.id); after != before {
				t.Errorf("refused replay wrote: %+v, was %+v", after, before)
			}
			// A new bundle is judged under the new policy: NOT TRUSTED.
			if code, res := r.post(t, g.id, g.evidence(t, r.challenge(t), false)); code != 200 || res.Trusted {
				t.Errorf("a new bundle under the new policy: %d trusted %v", code, res != nil && res.Trusted)
			}
		})
	}
}

// Held: tails of other shapes than the agent's, each at the stored point
// or around it, as v1 and v2 bundles. A v1 bundle's tail at the point is
// taken as a v2 one is (trusted, advanced); a negative offset (on the
// runtime log, or on a log of another format, where "no point" and the
// offset once compared equal), the runtime log twice (the tail and the
// whole log after it, or the whole log first and the tail second), a
// firmware-format log sent as a tail: refused 409 or judged NOT TRUSTED,
// never advancing, and a 409 leaves the nonce unused.
func TestRedteam7_TailShapes(t *testing.T) {
	for name, url := range storeURLs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			r := newReplica(t, url, Config{})
			g := newGuest(t, 1)
			if err := r.st.Enroll(ctx, g.machine("default")); err != nil {
				t.Fatal(err)
			}
			g.extend(t)
			if code, res := r.post(t, g.id, g.quote(t, r.challenge(t), nil)); code != 200 || !res.Trusted {
				t.Fatalf("whole bundle: %d %+v", code, res)
			}
			since := r.view(t, g.id).Since
			g.extend(t)
			// shaped is the guest's bundle for a new challenge, its logs
			// cut to tails from since and then changed by f, as v1.
			shaped := func(f func(tl, whole []bundle.Log) []bundle.Log) ([]byte, []byte) {
				n := r.challenge(t)
				tb, wb := readBundle(t, g.quote(t, n, since)), readBundle(t, g.quote(t, n, nil))
				tb.Logs = f(tb.Logs, wb.Logs)
				for i := range tb.Logs {
					raw, err := tb.Logs[i].Bytes()
					if err != nil {
						t.Fatal(err)
					}
					tb.Logs[i] = bundle.Log{Format: tb.Logs[i].Format, Register: tb.Logs[i].Register, Alg: tb.Logs[i].Alg, Offset: tb.Logs[i].Offset, Data: raw}
				}
				tb.Format = bundle.Format
				var buf bytes.Buffer
				if err := tb.Write(&buf); err != nil {
					t.Fatal(err)
				}
				return buf.Bytes(), n
			}
			for _, c := range []struct {
				what string
				f    func(tl, whole []bundle.Log) []bundle.Log
			}{
				{"negative offset on the runtime log", func(tl, _ []bundle.Log) []bundle.Log { tl[0].Offset = -1; return tl }},
				{"a tcg2 log from byte -1 beside the tail", func(tl, _ []bundle.Log) []bundle.Log {
					return append(tl, bundle.Log{Format: "tcg2", Offset: -1, Data: []byte{1, 2, 3}})
				}},
				{"a tcg2 log as a tail", func(tl, _ []bundle.Log) []bundle.Log {
					return append(tl, bundle.Log{Format: "tcg2", Offset: 8, Data: []byte{1, 2, 3}})
				}},
				{"the tail, then the whole log", func(tl, whole []bundle.Log) []bundle.Log { return append(tl, whole...) }},
				{"the whole log, then the tail", func(tl, whole []bundle.Log) []bundle.Log { return append(whole, tl...) }},
				{"the tail from one byte later", func(tl, _ []bundle.Log) []bundle.Log {
					raw, _ := tl[0].Bytes()
					tl[0] = bundle.Log{Format: tl[0].Format, Register: tl[0].Register, Alg: tl[0].Alg, Offset: tl[0].Offset + 1, Data: raw[1:]}
					return tl
				}},
			} {
				body, n := shaped(c.f)
				before := takeSnap(t, r.st, g.id)
				code, res := r.post(t, g.id, body)
				if code == 200 && (res.Trusted || res.Advanced) {
					t.Errorf("%s: 200 trusted %v advanced %v", c.what, res.Trusted, res.Advanced)
				}
				if code == 200 {
					t.Logf("%s: %s", c.what, res.Verdict)
				} else {
					t.Logf("%s: %d", c.what, code)
				}
				if code == 200 {
					continue
				}
				if after := takeSnap(t, r.st, g.id); after != before {
					t.Errorf("%s: refused (%d) but wrote: %+v, was %+v", c.what, code, after, before)
				}
				// The nonce of a refused bundle is still good.
				if code, res := r.post(t, g.id, g.quote(t, n, nil)); code != 200 || !res.Trusted {
					t.Fatalf("%s: refused with %d, then its nonce, whole: %d %+v", c.what, code, code, res)
				}
				since = r.view(t, g.id).Since
				g.extend(t)
			}
			// The agent's own tail as v1: judged as the v2 one.
			body, _ := shaped(func(tl, _ []bundle.Log) []bundle.Log { return tl })
			if code, res := r.post(t, g.id, body); code != 200 || !res.Trusted || !res.Advanced {
				t.Fatalf("the tail as a v1 bundle: %d %+v", code, res)
			}
		})
	}
}

// GET /v1/machines/{id} gives the machine's last verdict. After the
// machine was enrolled again with another key, it still gave the retired
// device's TRUSTED verdict as the machine's last, to a relying party that
// polls it. The last verdict is the last one under the current enrolment:
// none until the new device's first bundle is judged. (The history keeps
// every verdict.)
func TestRedteam7_LastVerdictAfterReenrolment(t *testing.T) {
	for name, url := range storeURLs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			r := newReplica(t, url, Config{})
			old, repl := newGuest(t, 1), newGuest(t, 2)
			if err := r.st.Enroll(ctx, old.machine("default")); err != nil {
				t.Fatal(err)
			}
			if code, res := r.post(t, old.id, old.evidence(t, r.challenge(t), false)); code != 200 || !res.Trusted {
				t.Fatalf("the old device's bundle: %d %+v", code, res)
			}
			if v := r.view(t, old.id); v.Last == nil || !v.Last.Trusted {
				t.Fatalf("last verdict before re-enrolment: %+v", v.Last)
			}
			m := repl.machine("default")
			m.ID = old.id
			if err := r.st.Enroll(ctx, m); err != nil {
				t.Fatal(err)
			}
			if v := r.view(t, old.id); v.Last != nil {
				t.Errorf("after re-enrolment with another key, the last verdict is the retired device's: trusted %v", v.Last.Trusted)
			}
			if h, err := r.st.History(ctx, old.id); err != nil || len(h) != 1 {
				t.Errorf("history: %d verdicts, %v", len(h), err)
			}
			if code, res := r.post(t, old.id, repl.evidence(t, r.challenge(t), false)); code != 200 || !res.Trusted {
				t.Fatalf("the new device's bundle: %d %+v", code, res)
			}
			if v := r.view(t, old.id); v.Last == nil || !v.Last.Trusted || v.Last.Bundle == "" {
				t.Errorf("the new device's verdict is not the last: %+v", v.Last)
			}
		})
	}
}
