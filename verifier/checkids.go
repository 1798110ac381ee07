package verifier

import (
	"encoding/json"
	"regexp"
)

// A check ID names one kind of check of the report, stable across
// releases, so that a script can tell "the TPM quote's signature" from "the
// IMA list replays" without matching the wording, which may change. The
// lines of a report are prose built where each check runs; the ID is
// derived from the line by the table below, in one place, rather than
// threaded through every layer by hand. docs/cli.md ("Check IDs") lists
// every ID; TestCheckIDsDocumented keeps the two in step.
type checkID struct {
	id    string
	layer int
	// re matches the line (Checked, NotChecked or a Failure's Reason);
	// the first entry of the line's layer that matches names it.
	re *regexp.Regexp
}

func cid(layer int, id, re string) checkID {
	return checkID{id: id, layer: layer, re: regexp.MustCompile(re)}
}

// checkIDs is the table, in the order lines are matched: more specific
// patterns first.
var checkIDs = []checkID{
	// Layer 0: the hardware's evidence.
	cid(0, "layer0.weakened", `^weakened: `),
	cid(0, "layer0.platform-policy", `^policy (snp|tdx)\.|^(snp|tdx)\.\S+ .*reference value of the policy|the policy wants|the policy has an? (snp|tdx) section|policy's minimum|snp\.allow_debug`),
	cid(0, "layer0.sim.allowed", `sim evidence|--allow-sim`),
	cid(0, "layer0.sim.signature", `^sim statement|register values signed$|sim statement signature|--trust-sim-key|sim key`),
	cid(0, "layer0.tpm.one-boot", `one per bank, of one boot|resetCount|restartCount`),
	cid(0, "layer0.tpm.quote-signature", `TPM2_Quote|TPM quote|\bAK\b|--trust-ak|attestation key certificate|AK certificate`),
	cid(0, "layer0.nonce", `(?i)nonce`),
	cid(0, "layer0.claims", `^claimed (register )?value`),
	cid(0, "layer0.monitor", `^monitor state of`),
	cid(0, "layer0.azure.hcl", `HCL|TD report MAC|TD report in`),
	cid(0, "layer0.tdx.tcb-info", `TCB info`),
	cid(0, "layer0.revocation", `CRL|revocation|revoked`),
	cid(0, "layer0.tdx.pck-chain", `PCK certificate chain|PCK chain|PCK certificate`),
	cid(0, "layer0.tdx.qe", `QE report|QE identity|quoting enclave`),
	cid(0, "layer0.tdx.quote-signature", `quote v\d+ \(body type|quote signature|signed by the attestation key`),
	cid(0, "layer0.tcb-status", `TCB status|^(TD quote: )?TCB: |TCB level|UpToDate|OutOfDate|collateral`),
	cid(0, "layer0.snp.product", `product line`),
	cid(0, "layer0.snp.report-signature", `report v\d+ signed|report signature`),
	cid(0, "layer0.snp.reported-tcb", `reported TCB`),
	cid(0, "layer0.snp.chip-id", `CHIP_ID`),
	cid(0, "layer0.snp.chain", `ARK|ASK|VCEK|VLEK`),
	cid(0, "layer0.debug", `(?i)debug`),
	cid(0, "layer0.padding", `zero padding|padding`),
	cid(0, "layer0.validity", `valid at|not valid|expired|validity`),

	// Layer 1: the confidential-computing logs against the quoted registers.
	cid(1, "layer1.weakened", `^weakened: `),
	cid(1, "layer1.parse", `^malformed input`),
	cid(1, "layer1.logs-unique", `the bundle holds two`),
	cid(1, "layer1.history", `monitor state|not re-read|verified before|no entry yet|not used: |since the monitor state`),
	cid(1, "layer1.separator", `EV_SEPARATOR`),
	cid(1, "layer1.segments", `segments? of|snapshot|^segment \d+ |tail from byte`),
	cid(1, "layer1.runtime-start", `starts at|to the start of its runtime log|runtime log starts`),
	cid(1, "layer1.resettable", `resettable|guest can reset|PCR 16|PCR 23`),
	cid(1, "layer1.bank", `not in the evidence|banks the evidence holds`),
	cid(1, "layer1.backing", `the backing register of a runtime log`),
	cid(1, "layer1.coverage", `explained by no log|no firmware or runtime log|has no event for|does not cover|covered|no log`),
	cid(1, "layer1.nv", `NV index`),
	cid(1, "layer1.event-data", `EV_NO_ACTION|the data of \d+ events|content of \d+ records|by digest only|hashes to|its data|event data|payload`),
	cid(1, "layer1.record", ` record \d+: `),
	cid(1, "layer1.replay", `replay|final value|differs|quoted value|holds no record|digest`),

	// Layer 2: the virtual registers.
	cid(2, "layer2.claims", `^claimed virtual register`),
	cid(2, "layer2.none", `^no virtual registers`),
	cid(2, "layer2.value", ` = \S+ \(\d+ records?\)$|records?`),

	// Layer 3: the application logs (IMA, mr_* event logs).
	cid(3, "layer3.weakened", `^weakened: `),
	cid(3, "layer3.parse", `^malformed input`),
	cid(3, "layer3.ima.history", `monitor state|proven before|not re-read`),
	cid(3, "layer3.ima.boot-aggregate", `boot_aggregate`),
	cid(3, "layer3.ima.none", `no IMA list|holds no IMA list|IMA was not measuring`),
	cid(3, "layer3.ima.unproven", `not proven|after the last mr_ima record`),
	cid(3, "layer3.ima.pcr", `IMA entries (on PCR \d+ )?replay|quoted PCR|quoted %v PCRs|PCRs`),
	cid(3, "layer3.ima.mr-ima", `mr_ima|IMA`),
	cid(3, "layer3.app.events", `events match|event|records? of mr_|mr_`),

	// Layer 4: the policy.
	cid(4, "layer4.none", `^no policy given`),
	cid(4, "layer4.ima-violations", `IMA violation`),
	cid(4, "layer4.ima-aggregate", `IMA aggregate|the aggregate of`),
	cid(4, "layer4.ima-signatures", `IMA signatures|signature`),
	cid(4, "layer4.measured-boot", `measured_boot|not an event the policy allows`),
	cid(4, "layer4.runtime-policy", `runtime policy|(?i)keylime|exclude|excluded`),
	cid(4, "layer4.platform", `policy (snp|tdx)\.|snp\.|tdx\.`),
	cid(4, "layer4.files", `ima list|file|not allowed|allowed`),
	cid(4, "layer4.registers", `reference value|policy names|register`),
}

// otherIDs name, per layer, a line no entry of checkIDs matches: never
// expected (a test keeps the lines the tests produce matched), but a
// report is never without an ID.
var otherIDs = [...]string{"layer0.other", "layer1.other", "layer2.other", "layer3.other", "layer4.other"}

// CheckID returns the stable ID of a line of layer (docs/cli.md, "Check
// IDs").
func CheckID(layer int, line string) string {
	for _, c := range checkIDs {
		if c.layer == layer && c.re.MatchString(line) {
			return c.id
		}
	}
	if layer >= 0 && layer < len(otherIDs) {
		return otherIDs[layer]
	}
	return "other"
}

// Check is one line of a layer in the JSON report, with its ID.
type Check struct {
	ID string `json:"id"`
	// Result is "ok" (checked), "not-checked" or "fail".
	Result string `json:"result"`
	Text   string `json:"text"`
}

// Checks lists the layer's lines with their IDs: checked, then not
// checked, then the failure.
func (l LayerResult) Checks() []Check {
	var out []Check
	for _, c := range l.Checked {
		out = append(out, Check{ID: CheckID(l.Layer, c), Result: "ok", Text: c})
	}
	for _, c := range l.NotChecked {
		out = append(out, Check{ID: CheckID(l.Layer, c), Result: "not-checked", Text: c})
	}
	if l.Failure != nil {
		out = append(out, Check{ID: CheckID(l.Layer, l.Failure.Reason), Result: "fail", Text: l.Failure.Reason})
	}
	return out
}

// MarshalJSON writes the layer with its lines' IDs ("checks") and the
// failure's ID, derived when written so that no line added after Verify
// goes without one.
func (l LayerResult) MarshalJSON() ([]byte, error) {
	type plain LayerResult // without this method
	v := struct {
		plain
		Failure *failureJSON `json:"failure,omitempty"`
		Checks  []Check      `json:"checks,omitempty"`
	}{plain: plain(l), Checks: l.Checks()}
	if l.Failure != nil {
		v.Failure = newFailureJSON(l.Layer, l.Failure)
	}
	return json.Marshal(v)
}

// UnmarshalJSON reads a layer written by MarshalJSON; the IDs, derived,
// are not kept.
func (l *LayerResult) UnmarshalJSON(b []byte) error {
	type plain LayerResult
	v := struct {
		*plain
		Failure *failureJSON `json:"failure,omitempty"`
	}{plain: (*plain)(l)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	l.Failure = nil
	if v.Failure != nil {
		l.Failure = v.Failure.failure()
	}
	return nil
}

// failureJSON is a Failure as JSON: its ID, and record and offset only
// where they apply (a failure outside a log, or of a whole log, has none;
// the text report says "no single record"). A script tests for the member,
// not for -1.
type failureJSON struct {
	ID       string `json:"id,omitempty"`
	Log      string `json:"log,omitempty"`
	Record   *int   `json:"record,omitempty"`
	Offset   *int64 `json:"offset,omitempty"`
	Register string `json:"register,omitempty"`
	Expected string `json:"expected,omitempty"`
	Computed string `json:"computed,omitempty"`
	Reason   string `json:"reason"`
}

func newFailureJSON(layer int, f *Failure) *failureJSON {
	j := &failureJSON{ID: CheckID(layer, f.Reason), Log: f.Log, Register: f.Register, Expected: f.Expected, Computed: f.Computed, Reason: f.Reason}
	if f.Record >= 0 {
		rec := f.Record
		j.Record = &rec
	}
	if f.Log != "" && (f.Record >= 0 || f.Offset > 0) {
		off := f.Offset
		j.Offset = &off
	}
	return j
}

func (j *failureJSON) failure() *Failure {
	f := &Failure{Log: j.Log, Record: -1, Register: j.Register, Expected: j.Expected, Computed: j.Computed, Reason: j.Reason}
	if j.Record != nil {
		f.Record = *j.Record
	}
	if j.Offset != nil {
		f.Offset = *j.Offset
	}
	return f
}

// MarshalJSON writes a Failure with record and offset only where they
// apply (failureJSON).
func (f Failure) MarshalJSON() ([]byte, error) {
	j := newFailureJSON(-1, &f)
	j.ID = ""
	return json.Marshal(j)
}

// UnmarshalJSON reads a Failure; an absent record is -1.
func (f *Failure) UnmarshalJSON(b []byte) error {
	var j failureJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*f = *j.failure()
	return nil
}
