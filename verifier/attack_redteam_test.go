package verifier

// Red-team attacks not listed in issue 15 (or variants its fixes would
// plausibly miss). Each test builds a hostile input and asserts the SAFE
// outcome: not trusted, or unusable input. They fail on the code they were
// written against.

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tdxverify"
)

// 4. A policy register with an empty list of reference values judges
// nothing, and the report says "pcr0 is a reference value". A generated
// policy whose list came out empty trusts every value.
func TestRedteam_EmptyPolicyRegisterList(t *testing.T) {
	b, o := e2eTrustedTPM(t)
	pol, err := ParsePolicy([]byte(`{"registers": {"pcr0": [], "pcr4": []}}`), ".")
	if err != nil {
		return // refused: safe
	}
	o.Policy = pol
	mustRefuse(t, b, o, "a policy whose reference lists are empty")
}

// 5. Member names are matched case-insensitively and a repeated member
// replaces the first: "IMA": null after "ima": {...} drops the runtime
// policy, though the policy visibly holds it and docs/policy.md says
// unknown members are refused. Issue 15 item 8 refuses unknown members and
// trailing values; DisallowUnknownFields does not catch either of these.
func TestRedteam_PolicyMemberCaseAndRepeat(t *testing.T) {
	forbid := `{"keylime": {"digests": {"/nothing": ["00"]}}}`
	for _, p := range []string{
		`{"ima": ` + forbid + `, "IMA": null}`,
		`{"ima": ` + forbid + `, "ima": null}`,
		`{"Registers": {"pcr0": "sha256:0000000000000000000000000000000000000000000000000000000000000000"}}`,
	} {
		pol, err := ParsePolicy([]byte(p), ".")
		if err != nil {
			continue // refused: safe
		}
		if !strings.Contains(p, "Registers") && pol.Runtime == nil {
			t.Errorf("policy %s: accepted, and its runtime policy silently dropped", p)
		} else if strings.Contains(p, "Registers") {
			t.Errorf("policy %s: a member spelt with capitals accepted as \"registers\"", p)
		}
	}
}

// 6. The same in the bundle: "Logs": [] after "logs" empties the logs, and a
// TPM quote's PCR map may name one PCR twice ("5" and "05" both parse as 5
// with Sscanf, which also takes "5abc"); which value is used depends on Go's
// map order, and the bundle shows a value the verifier never checked.
func TestRedteam_BundleDuplicatePCRKey(t *testing.T) {
	_, o := e2eTrustedTPM(t)
	for _, k := range []string{"05", "5abc", "+5"} {
		b := readE2EBundle(t)
		real := b.Evidence.TPMQuotes[1].PCRs["5"]
		fake := strings.Repeat("ab", len(real)/2)
		b.Evidence.TPMQuotes[1].PCRs[k] = fake
		for n := 0; n < 32; n++ {
			rep, err := Verify(context.Background(), b, o)
			if err != nil {
				break // refused as malformed: safe
			}
			if rep.Trusted {
				t.Fatalf("PCR key %q next to \"5\": the bundle also claims pcr5=%s, and is TRUSTED", k, fake)
			}
		}
	}
}

// 7. A runtime log on a firmware PCR. The verifier skips, in the firmware
// log, every register that has a runtime log (all banks), while the runtime
// chain checks one bank. A runtime log on pcr4 holding only an INIT with the
// quoted sha256 value "replays to the quoted value"; the SeaBIOS log's pcr4
// events (the boot loader) are then never compared, so they can be
// anything. Variant of issue 15 items 1 and 14 (which speak of rtmr3 and of
// logs starting with INIT on the backing register).
func TestRedteam_RuntimeLogOnFirmwarePCR(t *testing.T) {
	b, o := e2eTrustedTPM(t)
	var pcr4 string
	for _, q := range b.Evidence.TPMQuotes {
		if q.Alg == "sha256" {
			pcr4 = q.PCRs["4"]
		}
	}
	v, err := mr.ParseHex(mr.SHA256, pcr4)
	if err != nil {
		t.Fatal(err)
	}
	init, err := aael.AppendInit(nil, 4, v)
	if err != nil {
		t.Fatal(err)
	}
	i := logIndex(t, b, "tcg2")
	// The boot loader event of pcr4: its digests become the hash of
	// something else (a forged boot path).
	d := append([]byte(nil), b.Logs[i].Data...)
	at := bytes.Index(d, []byte("Calling INT 19h"))
	if at < 0 {
		t.Fatal("no INT 19h event")
	}
	// entry: pcr(4) type(4) count(4) [alg(2) sha1(20)] [alg(2) sha256(32)] size(4) data
	start := at - 4 - 32 - 2 - 20 // the sha1 digest
	copy(d[start:start+20], mr.SHA1.Sum([]byte("evil loader")).Bytes)
	copy(d[start+22:start+22+32], mr.SHA256.Sum([]byte("evil loader")).Bytes)
	b.Logs[i].Data = d
	mustRefuse(t, b, o, "forged pcr4 firmware events alone") // sanity: caught without the runtime log
	b.Logs = append(b.Logs, bundle.Log{Format: "runtime", Register: "pcr4", Alg: "sha256", Data: init})
	mustRefuse(t, b, o, "forged pcr4 firmware events hidden by a runtime log on pcr4")
}

// 9. The bundle's member names are matched case-insensitively by Go, and a
// repeated member replaces the first. A bundle with "logs" (a forged
// firmware log) and then "Logs" (the genuine one) verifies the genuine one
// and is TRUSTED; a Python consumer of the same file (json.load: case
// sensitive) reads "logs", the forged one. The bundle must be one
// unambiguous value: refuse repeated and case-variant members (exit 2).
func TestRedteam_BundleCaseFoldedMember(t *testing.T) {
	raw, err := os.ReadFile("../testdata/e2e/guest/bundle.json")
	if err != nil {
		t.Fatal(err)
	}
	_, o := e2eTrustedTPM(t)
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	genuine := m["logs"]
	forged := bytes.Replace(genuine, []byte(`"format": "tcg2"`), []byte(`"format": "tcg2", "source": "forged"`), 1)
	if bytes.Equal(forged, genuine) {
		forged = bytes.Replace(genuine, []byte(`"format":"tcg2"`), []byte(`"format":"tcg2","source":"forged"`), 1)
	}
	m["logs"] = forged
	out, _ := json.Marshal(m)
	for _, dup := range []string{"Logs", "LOGS", "logs"} {
		doc := append(bytes.Clone(bytes.TrimSuffix(bytes.TrimSpace(out), []byte("}"))), []byte(`,"`+dup+`":`)...)
		doc = append(append(doc, genuine...), '}')
		b, err := bundle.Read(bytes.NewReader(doc), "dup")
		if err != nil {
			continue // refused: safe
		}
		if b.Logs[0].Source == "forged" {
			t.Fatalf("%q: the first member was used", dup)
		}
		rep, err := Verify(context.Background(), b, o)
		if err == nil && rep.Trusted {
			t.Errorf("bundle with \"logs\" and then %q: read without complaint and %s", dup, rep.Verdict)
		}
	}
}

// 10. `--at` (Options.At) moves the clock of every certificate, CRL and
// collateral check, yet the verdict is a plain TRUSTED: the real TDX v4
// quote of the corpus, whose collateral expired in 2025, is TRUSTED "at
// 2025-07-10" with nothing on the verdict line; a PCK certificate revoked,
// or a TCB level that went OutOfDate, after that date passes the same way.
// A verdict judged at another time than now is weakened and says when.
func TestRedteam_AtInThePastNotWeakened(t *testing.T) {
	quote := corpusFile(t, "dcap-qvl/tdx_quote")
	coll := corpusFile(t, "dcap-qvl/tdx_quote_collateral.json")
	q, err := tdxverify.ParseQuote(quote)
	if err != nil {
		t.Fatal(err)
	}
	nonce := q.Body.ReportData[:]
	b := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTDX, Nonce: nonce,
		Evidence: bundle.Evidence{Report: quote}, Collateral: &bundle.Collateral{TDX: json.RawMessage(coll)}}
	if rep, _ := Verify(context.Background(), b, Options{Nonce: nonce}); rep.Trusted {
		t.Fatal("the expired collateral is accepted now")
	}
	rep, err := Verify(context.Background(), b, Options{Nonce: nonce, At: time.Date(2025, 7, 10, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Trusted && len(rep.Weakened) == 0 {
		t.Fatalf("judged at 2025-07-10 and the verdict is %s", rep.Verdict)
	}
}

// 12. Keylime runtime-policy members ccmr cannot evaluate are dropped
// without a word: "verification-keys" (ima-sig signatures Keylime
// verifies: a forged security.ima signature on an allowed file passes
// ccmr), "keyrings" and "ima-buf" (digests of keys and buffers Keylime
// judges), "ima": {"dm_policy": …} (device-mapper measurements). The policy
// then judges less than its author wrote. Also a policy with both "keylime"
// inline and a "runtime_policy" file silently uses the file. Members that
// cannot be evaluated are refused (exit 2), as docs/policy.md promises for
// unknown members.
func TestRedteam_KeylimeMembersIgnored(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/lax.json", []byte(keylimeFull(t, `{"digests": {}, "excludes": [".*"]}`)), 0o644); err != nil {
		t.Fatal(err)
	}
	// kl completes a Keylime policy (every member its schema requires), so
	// that a case is refused, if at all, for the member it is about.
	kl := func(partial string) string { return keylimeFull(t, partial) }
	for name, p := range map[string]string{
		"verification-keys": `{"ima": {"keylime": ` + kl(`{"digests": {"/bin/a": ["00"]}, "verification-keys": "[{\"kid\": \"1\"}]"}`) + `}}`,
		"keyrings":          `{"ima": {"keylime": ` + kl(`{"digests": {"/bin/a": ["00"]}, "keyrings": {".ima": ["abcd"]}}`) + `}}`,
		"ima-buf":           `{"ima": {"keylime": ` + kl(`{"digests": {"/bin/a": ["00"]}, "ima-buf": {"kexec-cmdline": ["abcd"]}}`) + `}}`,
		"dm_policy":         `{"ima": {"keylime": ` + kl(`{"digests": {"/bin/a": ["00"]}, "ima": {"dm_policy": {"match_on": "name"}}}`) + `}}`,
		"keylime and file":  `{"ima": {"keylime": ` + kl(`{"digests": {"/bin/a": ["00"]}}`) + `, "runtime_policy": "lax.json"}}`,
	} {
		pol, err := ParsePolicy([]byte(p), dir)
		if err != nil {
			continue // refused: safe
		}
		if name == "keylime and file" && pol.Runtime != nil && len(pol.Runtime.Digests) > 0 {
			continue
		}
		t.Errorf("%s: the policy is accepted and the member is not evaluated", name)
	}
}

// 13. The monitor slot is the hash of the evidence's PEM text, not of the
// key: the same AK (or sim key) re-encoded (a comment line before the PEM
// block, a trailing newline) is a new machine with an empty state. A guest
// whose newer bundle the monitor already verified re-sends an older one (or
// a rewritten history, or a new boot) under a re-encoded key, and the
// monitor's continuity check, which refuses it under the real encoding,
// never runs. Issue 15 item 10 is about machines sharing a slot (TDX, one
// VCEK); this is one machine getting as many slots as it likes.
func TestRedteam_MonitorSlotByPEMText(t *testing.T) {
	g := newGuest(t)
	g.imaUpTo(10)
	old := g.quote(false)
	g.imaUpTo(20)
	g.extend("mr_ctr.a", "x")
	cur := g.quote(false)
	state := &MonitorState{Format: StateFormat, Machines: map[string]*MachineState{}}
	o := g.opts()
	o.Monitor = state
	if rep := verifyT(t, cur, o); !rep.Trusted {
		t.Fatalf("current bundle with the state:\n%s", reportText(rep))
	}
	if rep := verifyT(t, old, o); rep.Trusted {
		t.Fatalf("the older bundle is accepted by the state as it is:\n%s", reportText(rep))
	}
	for _, pemText := range []string{
		"ccmr guest\n" + old.Evidence.PublicKey,
		old.Evidence.PublicKey + "\n",
	} {
		b := *old
		b.Evidence.PublicKey = pemText
		if rep := verifyT(t, &b, o); rep.Trusted {
			t.Errorf("the older bundle with its key re-encoded (%q...): %s, a new monitor slot %s", pemText[:12], rep.Verdict, MachineID(&b))
		}
	}
}

// 14. bundle.Evidence members the platform does not use are ignored, unread: a TPM
// bundle carrying a "TDX quote" in evidence.report (no HCL report), a
// signature, invented certificates, or TPM quotes in a TDX/sim bundle, is a
// plain TRUSTED, and whoever reads the bundle after ccmr vouched for it
// sees evidence nothing checked. Mixed-platform bundles are refused.
func TestRedteam_MixedPlatformMembers(t *testing.T) {
	for name, mod := range map[string]func(b *bundle.Bundle){
		"tpm+report":    func(b *bundle.Bundle) { b.Evidence.Report = []byte("a TDX quote, honest") },
		"tpm+signature": func(b *bundle.Bundle) { b.Evidence.Signature = []byte("sim signature") },
	} {
		b, o := e2eTrustedTPM(t)
		mod(b)
		t.Run(name, func(t *testing.T) { mustRefuse(t, b, o, name) })
	}
	g := newGuest(t)
	g.imaUpTo(5)
	b := g.quote(false)
	tb, _ := e2eTrustedTPM(t)
	b.Evidence.TPMQuotes = tb.Evidence.TPMQuotes
	t.Run("sim+tpm_quotes", func(t *testing.T) { mustRefuse(t, b, g.opts(), "a sim bundle carrying TPM quotes") })
}

// 15. The bundle's "time" is signed by nothing on TPM, TDX and SNP (only
// the sim statement carries one), yet the monitor state records it as the
// time of the machine's verified point: a guest writes "2099-01-01" (or a
// date before an incident) and the state says its history was verified
// then. The state keeps the verifier's clock (Options.At), or a time the
// evidence proves.
func TestRedteam_MonitorTimeFromBundle(t *testing.T) {
	b, o := e2eTrustedTPM(t)
	b.Time = time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	o.Monitor = &MonitorState{Format: StateFormat, Machines: map[string]*MachineState{}}
	rep := verifyT(t, b, o)
	if !rep.Trusted {
		return
	}
	if m := o.Monitor.Machines[MachineID(b)]; m != nil && m.Time.Year() == 2099 {
		t.Fatalf("the monitor state says the machine was verified at %v, the bundle's unsigned claim", m.Time)
	}
}
