package verifier

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/internal/strictjson"
	"github.com/ccmr-dev/ccmr/mr"
)

// RuntimePolicy is Keylime's runtime-policy JSON, schema version 1
// (RUNTIME_POLICY_SCHEMA in keylime/ima/ima.py). Every member Keylime's
// schema names is read and judged as Keylime's verifier judges it
// (keylime_judge.go); a member that does not satisfy that schema is refused
// as Keylime refuses it when the policy is uploaded, and so is a policy
// lacking any member the schema requires. Unlike Keylime, ccmr also
// refuses members the schema does not name (a typo must not weaken a
// policy). It marshals as a complete Keylime policy (MarshalJSON).
type RuntimePolicy struct {
	Meta             *KeylimeMeta        `json:"meta,omitempty"`
	Release          *int64              `json:"release,omitempty"`
	Digests          map[string][]string `json:"digests,omitempty"`
	Excludes         []string            `json:"excludes,omitempty"`
	Keyrings         map[string][]string `json:"keyrings,omitempty"`
	IMA              *KeylimeIMA         `json:"ima,omitempty"`
	IMABuf           map[string][]string `json:"ima-buf,omitempty"`
	VerificationKeys string              `json:"verification-keys,omitempty"`
	Rules            string              `json:"rules,omitempty"`

	excludes *keylimeExcludes
	allowed  map[string]map[string]bool
	buf      map[string]map[string]bool
	keyrings map[string]map[string]bool
	// keys are the keys of verification-keys.
	keys []ima.Key
	// logHashAlg is ima.log_hash_alg (sha1 when not given).
	logHashAlg string
	// allowViolations passes violation entries (the verification
	// policy's ima.allow_violations, not a member of Keylime's schema).
	allowViolations bool
}

// KeylimeMeta is the "meta" member of a Keylime runtime policy. Version
// must be 1 (the only schema version ccmr reads; Keylime converts older
// ones with keylime_convert_runtime_policy), Generator one of Keylime's
// RUNTIME_POLICY_GENERATOR values 0 to 3.
type KeylimeMeta struct {
	Version   *int64  `json:"version"`
	Generator *int64  `json:"generator"`
	Timestamp *string `json:"timestamp,omitempty"`
}

// KeylimeIMA is the "ima" member of a Keylime runtime policy; Keylime's
// schema requires all three members.
type KeylimeIMA struct {
	// IgnoredKeyrings are keyrings whose key measurements (ima-buf
	// entries holding a key) Keylime does not judge; "*" names all.
	IgnoredKeyrings []string `json:"ignored_keyrings"`
	// LogHashAlg is the algorithm of the list's template hashes, which
	// Keylime checks for every entry.
	LogHashAlg string `json:"log_hash_alg"`
	// DMPolicy is Keylime's device-mapper policy, which ccmr does not
	// implement: it must be null.
	DMPolicy json.RawMessage `json:"dm_policy"`
}

// keylimeRaw holds the members before they are checked one by one, so that
// a null or a value of the wrong type is told apart from a missing member.
type keylimeRaw struct {
	Meta             json.RawMessage `json:"meta"`
	Release          json.RawMessage `json:"release"`
	Digests          json.RawMessage `json:"digests"`
	Excludes         json.RawMessage `json:"excludes"`
	Keyrings         json.RawMessage `json:"keyrings"`
	IMA              json.RawMessage `json:"ima"`
	IMABuf           json.RawMessage `json:"ima-buf"`
	VerificationKeys json.RawMessage `json:"verification-keys"`
	Rules            json.RawMessage `json:"rules"`
}

// checkRequired refuses a policy lacking a member RUNTIME_POLICY_SCHEMA
// requires ("required": meta, release, digests, excludes, keyrings, ima,
// ima-buf, verification-keys), naming the first one missing in that order:
// Keylime refuses such a policy at upload, so reading a missing member as
// empty would judge a policy Keylime never judges.
func (raw *keylimeRaw) checkRequired() error {
	for _, m := range []struct {
		name string
		raw  json.RawMessage
	}{
		{"meta", raw.Meta}, {"release", raw.Release}, {"digests", raw.Digests},
		{"excludes", raw.Excludes}, {"keyrings", raw.Keyrings}, {"ima", raw.IMA},
		{"ima-buf", raw.IMABuf}, {"verification-keys", raw.VerificationKeys},
	} {
		if m.raw == nil {
			return schemaErr("member %s is missing (Keylime requires meta, release, digests, excludes, keyrings, ima, ima-buf and verification-keys)", m.name)
		}
	}
	return nil
}

// MarshalJSON writes rp as a complete Keylime runtime policy: a member
// that is nil is written with the value of Keylime's EMPTY_RUNTIME_POLICY
// (meta version 1, generator 1 "EmptyAllowList"; release 0; empty objects
// and lists; ima with no ignored keyring, sha1, dm_policy null), so that
// what ccmr writes is loadable by Keylime and by ParseRuntimePolicy.
func (rp RuntimePolicy) MarshalJSON() ([]byte, error) {
	one, gen, zero := int64(1), int64(1), int64(0)
	out := struct {
		Meta             *KeylimeMeta        `json:"meta"`
		Release          *int64              `json:"release"`
		Digests          map[string][]string `json:"digests"`
		Excludes         []string            `json:"excludes"`
		Keyrings         map[string][]string `json:"keyrings"`
		IMA              *KeylimeIMA         `json:"ima"`
		IMABuf           map[string][]string `json:"ima-buf"`
		VerificationKeys string              `json:"verification-keys"`
		Rules            string              `json:"rules,omitempty"`
	}{rp.Meta, rp.Release, rp.Digests, rp.Excludes, rp.Keyrings, rp.IMA, rp.IMABuf, rp.VerificationKeys, rp.Rules}
	if out.Meta == nil {
		out.Meta = &KeylimeMeta{Version: &one, Generator: &gen}
	}
	if out.Release == nil {
		out.Release = &zero
	}
	for _, m := range []*map[string][]string{&out.Digests, &out.Keyrings, &out.IMABuf} {
		if *m == nil {
			*m = map[string][]string{}
		}
	}
	if out.Excludes == nil {
		out.Excludes = []string{}
	}
	if out.IMA == nil {
		out.IMA = &KeylimeIMA{LogHashAlg: "sha1"}
	}
	ima := *out.IMA
	if ima.IgnoredKeyrings == nil {
		ima.IgnoredKeyrings = []string{}
	}
	if len(ima.DMPolicy) == 0 {
		ima.DMPolicy = json.RawMessage("null")
	}
	out.IMA = &ima
	return json.Marshal(out)
}

// keylimeDigestRE is the pattern of Keylime's digests-object items:
// lowercase hex, 40 to 128 digits, no algorithm prefix.
var keylimeDigestRE = regexp.MustCompile(`^[0-9a-f]{40,128}$`)

func schemaErr(format string, args ...any) error {
	return fmt.Errorf("%w: runtime policy: %s (Keylime's schema refuses it)", mr.ErrMalformed, fmt.Sprintf(format, args...))
}

// member decodes one present member strictly into v; JSON null is refused
// (Keylime's schema gives every member a type that null is not).
func member(raw json.RawMessage, name string, v any) (bool, error) {
	if raw == nil {
		return false, nil
	}
	if string(bytes.TrimSpace(raw)) == "null" {
		return false, schemaErr("%s is null", name)
	}
	if err := strictjson.Decode(raw, v); err != nil {
		return false, schemaErr("%s: %v", name, err)
	}
	return true, nil
}

// ParseRuntimePolicy reads Keylime's runtime-policy JSON: exactly one
// object with members of Keylime's schema only, each as that schema wants
// it. A DSSE envelope (as keylime-policy sign writes) is refused here: it is
// read by ParseSignedRuntimePolicy with the key that must have signed it.
func ParseRuntimePolicy(b []byte) (*RuntimePolicy, error) {
	if isDSSEEnvelope(b) {
		return nil, fmt.Errorf("%w: runtime policy is a signed DSSE envelope: give the key that signed it (verify --keylime-key, or the policy's ima.runtime_policy_key)", mr.ErrMalformed)
	}
	var raw keylimeRaw
	if err := strictJSONValue(b, &raw, "runtime policy"); err != nil {
		return nil, err
	}
	if err := raw.checkRequired(); err != nil {
		return nil, err
	}
	rp := &RuntimePolicy{logHashAlg: "sha1"}
	if ok, err := member(raw.Meta, "meta", &rp.Meta); err != nil {
		return nil, err
	} else if ok {
		m := rp.Meta
		if m.Version == nil || m.Generator == nil {
			return nil, schemaErr("meta needs version and generator")
		}
		if *m.Version != 1 {
			return nil, fmt.Errorf("%w: runtime policy meta.version %d: ccmr reads schema version 1 only (convert it with keylime_convert_runtime_policy)", mr.ErrUnsupported, *m.Version)
		}
		if *m.Generator < 0 || *m.Generator > 3 {
			return nil, schemaErr("meta.generator %d is not 0 to 3", *m.Generator)
		}
	}
	if ok, err := member(raw.Release, "release", &rp.Release); err != nil {
		return nil, err
	} else if ok && *rp.Release < 0 {
		return nil, schemaErr("release %d is negative", *rp.Release)
	}
	var err error
	for _, d := range []struct {
		name string
		raw  json.RawMessage
		dst  *map[string][]string
		set  *map[string]map[string]bool
	}{
		{"digests", raw.Digests, &rp.Digests, &rp.allowed},
		{"keyrings", raw.Keyrings, &rp.Keyrings, &rp.keyrings},
		{"ima-buf", raw.IMABuf, &rp.IMABuf, &rp.buf},
	} {
		if _, err := member(d.raw, d.name, d.dst); err != nil {
			return nil, err
		}
		if *d.set, err = digestSets(d.name, *d.dst); err != nil {
			return nil, err
		}
	}
	if _, err := member(raw.Excludes, "excludes", &rp.Excludes); err != nil {
		return nil, err
	}
	if rp.excludes, err = compileKeylimeExcludes(rp.Excludes); err != nil {
		return nil, err
	}
	if ok, err := member(raw.IMA, "ima", &rp.IMA); err != nil {
		return nil, err
	} else if ok {
		if err := rp.checkIMAMember(raw.IMA); err != nil {
			return nil, err
		}
	}
	if _, err := member(raw.VerificationKeys, "verification-keys", &rp.VerificationKeys); err != nil {
		return nil, err
	}
	if rp.keys, err = parseVerificationKeys(rp.VerificationKeys); err != nil {
		return nil, err
	}
	if _, err := member(raw.Rules, "rules", &rp.Rules); err != nil {
		return nil, err
	}
	if rp.Rules != "" {
		return nil, fmt.Errorf("%w: runtime policy member rules is not implemented by ccmr", mr.ErrUnsupported)
	}
	return rp, nil
}

// checkIMAMember checks the "ima" member: Keylime's schema requires
// ignored_keyrings (strings), log_hash_alg (sha1, sha256, sha384, sha512)
// and dm_policy, which must be null here (device-mapper validation is not
// implemented by ccmr).
func (rp *RuntimePolicy) checkIMAMember(raw json.RawMessage) error {
	var present map[string]json.RawMessage
	if err := json.Unmarshal(raw, &present); err != nil {
		return schemaErr("ima: %v", err)
	}
	for _, k := range []string{"ignored_keyrings", "log_hash_alg", "dm_policy"} {
		if _, ok := present[k]; !ok {
			return schemaErr("ima needs ignored_keyrings, log_hash_alg and dm_policy; %s is missing", k)
		}
	}
	if string(bytes.TrimSpace(present["ignored_keyrings"])) == "null" {
		return schemaErr("ima.ignored_keyrings is null")
	}
	if d := bytes.TrimSpace(rp.IMA.DMPolicy); string(d) != "null" {
		return fmt.Errorf("%w: runtime policy member ima.dm_policy (device-mapper validation) is not implemented by ccmr", mr.ErrUnsupported)
	}
	switch rp.IMA.LogHashAlg {
	case "sha1", "sha256", "sha384", "sha512":
		rp.logHashAlg = rp.IMA.LogHashAlg
	default:
		return schemaErr("ima.log_hash_alg %q is not one of sha1, sha256, sha384, sha512", rp.IMA.LogHashAlg)
	}
	return nil
}

// digestSets checks a Keylime digests object (name → a non-empty list of
// lowercase hex digests of 40 to 128 digits without an algorithm prefix)
// and indexes it.
func digestSets(member string, m map[string][]string) (map[string]map[string]bool, error) {
	out := map[string]map[string]bool{}
	for name, ds := range m {
		if len(ds) == 0 {
			return nil, schemaErr("%s[%q] lists no digest", member, name)
		}
		set := map[string]bool{}
		for _, d := range ds {
			if !keylimeDigestRE.MatchString(d) {
				return nil, schemaErr("%s[%q]: %q is not 40 to 128 lowercase hex digits", member, name, d)
			}
			set[d] = true
		}
		out[name] = set
	}
	return out, nil
}

// Excluded reports whether Keylime's excludes skip path (see
// compileKeylimeExcludes).
func (rp *RuntimePolicy) Excluded(path string) bool {
	return rp.excludes.match(path)
}

// Allowed reports whether digest (lowercase hex) is a reference digest of
// path in "digests".
func (rp *RuntimePolicy) Allowed(path, digestHex string) bool {
	return rp.allowed[path][digestHex]
}

// strictJSONValue decodes data as exactly one JSON object into v: no
// unknown members, nothing but white space after it, and not null or a
// value of another type.
func strictJSONValue(data []byte, v any, what string) error {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return fmt.Errorf("%w: %s: not a JSON object", mr.ErrMalformed, what)
	}
	if err := strictjson.Decode(data, v); err != nil {
		return fmt.Errorf("%w: %s: %v", mr.ErrMalformed, what, err)
	}
	return nil
}
