package verifier

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/ccmr-dev/ccmr/internal/strictjson"
	"github.com/ccmr-dev/ccmr/mr"
)

// RuntimePolicy is Keylime's runtime-policy JSON (keylime/ima/types.py,
// RuntimePolicyType). ccmr judges "digests" (path → allowed hex file
// digests), "excludes" (Python regular expressions of paths not judged),
// "ima-buf" and "keyrings" (name → allowed digests of ima-buf entries) and
// "ima.ignored_keyrings". The other members of Keylime's schema are read;
// those that would let Keylime accept what ccmr cannot check
// (verification-keys, ima.dm_policy, rules) are refused when not empty, so
// that ccmr never judges a policy differently without saying so.
type RuntimePolicy struct {
	Meta             *KeylimeMeta        `json:"meta,omitempty"`
	Release          *int64              `json:"release,omitempty"`
	Digests          map[string][]string `json:"digests"`
	Excludes         []string            `json:"excludes"`
	Keyrings         map[string][]string `json:"keyrings,omitempty"`
	IMA              *KeylimeIMA         `json:"ima,omitempty"`
	IMABuf           map[string][]string `json:"ima-buf,omitempty"`
	VerificationKeys string              `json:"verification-keys,omitempty"`
	Rules            string              `json:"rules,omitempty"`

	excludes []keylimeExclude
	allowed  map[string]map[string]bool
	buf      map[string]map[string]bool
	keyrings map[string]map[string]bool
}

// KeylimeMeta is the "meta" member of a Keylime runtime policy. It is
// informational: no member changes a verdict. Generator is an integer in
// Keylime's schema; other tools (ccmr's e2e tool) write a string.
type KeylimeMeta struct {
	Version   int64           `json:"version"`
	Generator json.RawMessage `json:"generator,omitempty"`
	Timestamp string          `json:"timestamp,omitempty"`
}

// KeylimeIMA is the "ima" member of a Keylime runtime policy.
type KeylimeIMA struct {
	// IgnoredKeyrings are keyrings whose key measurements (ima-buf
	// entries holding a key) Keylime does not judge; "*" names all.
	IgnoredKeyrings []string `json:"ignored_keyrings"`
	// LogHashAlg is the template hash algorithm of the list; ccmr checks
	// the template hash of every bank it replays, so it only validates it.
	LogHashAlg string `json:"log_hash_alg"`
	// DMPolicy is Keylime's device-mapper policy, which ccmr does not
	// implement: it must be null.
	DMPolicy json.RawMessage `json:"dm_policy"`
}

// keylimeExclude is one compiled exclude. unicode marks patterns whose
// meaning differs between Python's re (Unicode classes and case folding on
// str) and Go's regexp for non-ASCII input.
type keylimeExclude struct {
	src     string
	re      *regexp.Regexp
	unicode bool
}

// ParseRuntimePolicy reads Keylime's runtime-policy JSON: exactly one
// object, members of Keylime's schema only.
func ParseRuntimePolicy(b []byte) (*RuntimePolicy, error) {
	var rp RuntimePolicy
	if err := strictJSONValue(b, &rp, "runtime policy"); err != nil {
		return nil, err
	}
	if rp.VerificationKeys != "" && rp.VerificationKeys != "[]" {
		return nil, fmt.Errorf("%w: runtime policy member verification-keys is not implemented by ccmr (Keylime would accept files signed by these keys): give the keys as the policy's ima.keys instead", mr.ErrUnsupported)
	}
	if rp.Release != nil && *rp.Release < 0 {
		return nil, fmt.Errorf("%w: runtime policy release %d is negative", mr.ErrMalformed, *rp.Release)
	}
	if rp.Rules != "" {
		return nil, fmt.Errorf("%w: runtime policy member rules is not implemented by ccmr", mr.ErrUnsupported)
	}
	if rp.IMA != nil {
		if d := bytes.TrimSpace(rp.IMA.DMPolicy); len(d) > 0 && string(d) != "null" {
			return nil, fmt.Errorf("%w: runtime policy member ima.dm_policy (device-mapper validation) is not implemented by ccmr", mr.ErrUnsupported)
		}
		switch rp.IMA.LogHashAlg {
		case "", "sha1", "sha256", "sha384", "sha512":
		default:
			return nil, fmt.Errorf("%w: runtime policy ima.log_hash_alg %q is not one of sha1, sha256, sha384, sha512", mr.ErrMalformed, rp.IMA.LogHashAlg)
		}
	}
	var err error
	if rp.allowed, err = digestSets("digests", rp.Digests); err != nil {
		return nil, err
	}
	if rp.buf, err = digestSets("ima-buf", rp.IMABuf); err != nil {
		return nil, err
	}
	if rp.keyrings, err = digestSets("keyrings", rp.Keyrings); err != nil {
		return nil, err
	}
	for _, e := range rp.Excludes {
		ex, err := compileKeylimeExclude(e)
		if err != nil {
			return nil, err
		}
		rp.excludes = append(rp.excludes, ex)
	}
	return &rp, nil
}

// digestSets checks a Keylime digests object (hex digests of 40 to 128
// digits, at least one per name, as Keylime's schema wants) and indexes it.
func digestSets(member string, m map[string][]string) (map[string]map[string]bool, error) {
	out := map[string]map[string]bool{}
	for name, ds := range m {
		if len(ds) == 0 {
			return nil, fmt.Errorf("%w: runtime policy %s[%q] lists no digest", mr.ErrMalformed, member, name)
		}
		set := map[string]bool{}
		for _, d := range ds {
			if _, err := hex.DecodeString(d); err != nil || len(d) < 40 || len(d) > 128 {
				return nil, fmt.Errorf("%w: runtime policy %s[%q]: %q is not a hex digest of 40 to 128 digits", mr.ErrMalformed, member, name, d)
			}
			set[strings.ToLower(d)] = true
		}
		out[name] = set
	}
	return out, nil
}

// Excluded reports whether Keylime's excludes skip path. Keylime joins the
// excludes into one Python pattern "(e1)|(e2)|…" and calls re.match: the
// match is anchored at the start of the path, not at its end. Each exclude
// is compiled as "^(?:e)" here, which is the same as long as every exclude
// is a pattern of its own (compileKeylimeExclude makes sure).
//
// Where Python and Go could disagree, the path is judged (not excluded): a
// path holding a byte that cannot reach Keylime as such (not UTF-8, a
// control character such as the newline that ends Keylime's ascii lines)
// is never excluded, and a non-ASCII path is not excluded by a pattern
// whose classes or case folding are Unicode-aware in Python.
func (rp *RuntimePolicy) Excluded(path string) bool {
	if !utf8.ValidString(path) {
		return false
	}
	ascii := true
	for _, c := range path {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return false
		}
		if c >= 0x80 {
			ascii = false
		}
	}
	for _, ex := range rp.excludes {
		if ex.unicode && !ascii {
			continue
		}
		if ex.re.MatchString(path) {
			return true
		}
	}
	return false
}

// Allowed reports whether digest (hex) is a reference digest of path.
func (rp *RuntimePolicy) Allowed(path, digestHex string) bool {
	return rp.allowed[path][strings.ToLower(digestHex)]
}

// errExclude marks an exclude ccmr refuses because Go would read it
// differently from Python.
var errExclude = errors.New("runtime policy exclude")

// compileKeylimeExclude compiles one Keylime exclude with Python re.match
// semantics, refusing what Go cannot compile (lookaround, backreferences,
// conditionals, possessive quantifiers…) and what both compile but read
// differently.
func compileKeylimeExclude(e string) (keylimeExclude, error) {
	bad := func(why string) (keylimeExclude, error) {
		return keylimeExclude{}, fmt.Errorf("%w: %w %q: %s", mr.ErrMalformed, errExclude, e, why)
	}
	if _, err := regexp.Compile(e); err != nil {
		return bad(fmt.Sprintf("not a regular expression Go can evaluate as Python does (%v)", err))
	}
	ex := keylimeExclude{src: e}
	inClass := false
	for i := 0; i < len(e); i++ {
		c := e[i]
		switch {
		case c == '\\':
			if i+1 >= len(e) {
				return bad("ends in a backslash")
			}
			i++
			switch n := e[i]; {
			case n == 'p' || n == 'P':
				return bad(`\p, \P: Unicode classes are Go-only`)
			case n == 'Q' || n == 'E':
				return bad(`\Q…\E quoting is Go-only`)
			case n == 'z' || n == 'C':
				return bad(`\` + string(n) + ` is Go-only`)
			case n >= '0' && n <= '9':
				return bad(`\` + string(n) + `: octal escape in Go, backreference or octal in Python; write \xHH`)
			case n == 'x' && i+1 < len(e) && e[i+1] == '{':
				return bad(`\x{…} is Go-only; write \xHH`)
			case strings.IndexByte("dDwWsSbB", n) >= 0:
				ex.unicode = true
			}
		case inClass:
			if c == '[' && i+1 < len(e) && e[i+1] == ':' {
				return bad("[:class:] is a POSIX class in Go, a plain set in Python")
			}
			if c == ']' {
				inClass = false
			}
		case c == '[':
			inClass = true
			// A ']' right after '[' or '[^' is a literal in both.
			if i+1 < len(e) && e[i+1] == '^' {
				i++
			}
			if i+1 < len(e) && e[i+1] == ']' {
				i++
			}
			if i+1 < len(e) && e[i+1] == '[' && i+2 < len(e) && e[i+2] == ':' {
				return bad("[:class:] is a POSIX class in Go, a plain set in Python")
			}
		case c == '{' && i+1 < len(e) && e[i+1] == ',':
			return bad("{,n} is a quantifier in Python, literal text in Go")
		case c == '(' && i+1 < len(e) && e[i+1] == '?':
			// Flags: (?flags) applies to the whole joined pattern in
			// Python (an error since 3.11); (?flags:…) is scoped in both.
			j := i + 2
			for j < len(e) && strings.IndexByte("imsU-", e[j]) >= 0 {
				j++
			}
			if j < len(e) && j > i+2 {
				if e[j] == ')' {
					return bad("a global inline flag group applies to every exclude in Keylime; use (?flags:…)")
				}
				flags := e[i+2 : j]
				if strings.Contains(flags, "U") {
					return bad("flag U is Go-only")
				}
				if strings.Contains(flags, "i") {
					ex.unicode = true // case folding differs outside ASCII
				}
			}
			if j < len(e) && e[j] == '<' && j == i+2 {
				return bad("(?<name>…) is Go-only; write (?P<name>…)")
			}
		}
	}
	re, err := regexp.Compile(`^(?:` + e + `)`)
	if err != nil {
		return bad(err.Error())
	}
	ex.re = re
	return ex, nil
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
