package serve

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/ccmr-dev/ccmr/internal/strictjson"
	"github.com/ccmr-dev/ccmr/mr"
)

// PolicyFormat is the format string of an authorization policy file.
const PolicyFormat = "ccmr-serve-policy/v1"

// MaxPolicySize bounds a policy file: it is read whole at start-up.
const MaxPolicySize = 1 << 20

// ErrPolicy marks a policy file that cannot be used (the daemon refuses to
// start rather than guess what it meant).
var ErrPolicy = errors.New("invalid serve policy")

// Policy says which peers may extend which registers and who may read or
// quote (docs/serve.md). The zero Policy admits root alone: uid 0 may do
// everything except extend the backing register directly, whatever the
// policy says, because root can write the log and the registers anyway —
// root with CAP_SYS_ADMIN in the daemon's user namespace (Peer.Admin), that
// is: uid 0 in a container is judged by the rules like any other peer.
type Policy struct {
	Format string `json:"format"`
	Rules  []Rule `json:"rules"`
}

// Rule grants Extend, Read and Quote to the peers it matches: a peer
// matches when its uid is in UIDs (or UIDs is empty), its gid in GIDs (or
// GIDs is empty), and its cgroup path matches one of Cgroups (or Cgroups
// is empty). A rule must name at least one of them: a rule for everyone is
// spelled out as "everyone": true, never implied by an empty rule.
type Rule struct {
	UIDs []uint32 `json:"uids,omitempty"`
	GIDs []uint32 `json:"gids,omitempty"`
	// Cgroups are RE2 regular expressions matched against the whole
	// cgroup v2 path of the peer (/proc/PID/cgroup, the "0::" line).
	// Their groups can be used in Extend as $1..$9.
	Cgroups []string `json:"cgroups,omitempty"`
	// Everyone must be true for a rule with no uid, gid or cgroup.
	Everyone bool `json:"everyone,omitempty"`
	// Extend lists the registers the peer may extend: path.Match patterns
	// (mr_app.*), after $1..$9 are replaced with the groups of the cgroup
	// expression that matched (a group that is not a valid name part,
	// [a-z0-9_.-], grants nothing).
	Extend []string `json:"extend,omitempty"`
	// AA lists the domains of the records the peer may write through the
	// attestation agent's API (ccmr serve --aa-socket): path.Match
	// patterns, with $1..$9 as in Extend ('*' does not match '/', so
	// "github.com/confidential-containers" is named whole or as
	// "github.com/*"). A record of a virtual register (domain mr_*) needs
	// Extend of that register instead; domain ccmr is nobody's.
	AA []string `json:"aa,omitempty"`
	// Read admits list and read of every register.
	Read bool `json:"read,omitempty"`
	// Quote admits quote (evidence bundles with the caller's nonce).
	Quote bool `json:"quote,omitempty"`
	// Cut admits cut (archive the runtime log's segment and start a new
	// one): it changes no register value, but it decides where the log
	// a guest keeps is split, so it is granted, not implied.
	Cut bool `json:"cut,omitempty"`

	cgroups []*regexp.Regexp
}

// ParsePolicy decodes and checks a policy file (strict JSON: unknown or
// repeated members, trailing data and bad patterns are errors).
func ParsePolicy(data []byte) (*Policy, error) {
	var p Policy
	if err := strictjson.Decode(data, &p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	if p.Format != PolicyFormat {
		return nil, fmt.Errorf("%w: format %q: want %q", ErrPolicy, p.Format, PolicyFormat)
	}
	for i := range p.Rules {
		r := &p.Rules[i]
		if len(r.UIDs) == 0 && len(r.GIDs) == 0 && len(r.Cgroups) == 0 && !r.Everyone {
			return nil, fmt.Errorf("%w: rule %d names no uid, gid or cgroup (say \"everyone\": true if that is meant)", ErrPolicy, i)
		}
		if r.Everyone && (len(r.UIDs) > 0 || len(r.GIDs) > 0 || len(r.Cgroups) > 0) {
			return nil, fmt.Errorf("%w: rule %d: \"everyone\" with uids, gids or cgroups", ErrPolicy, i)
		}
		for _, c := range r.Cgroups {
			re, err := regexp.Compile("^(?:" + c + ")$")
			if err != nil {
				return nil, fmt.Errorf("%w: rule %d: cgroup %q: %w", ErrPolicy, i, c, err)
			}
			r.cgroups = append(r.cgroups, re)
		}
		for _, e := range r.Extend {
			if _, err := path.Match(e, ""); err != nil || e == "" {
				return nil, fmt.Errorf("%w: rule %d: extend pattern %q is malformed", ErrPolicy, i, e)
			}
		}
		for _, e := range r.AA {
			if _, err := path.Match(e, ""); err != nil || e == "" {
				return nil, fmt.Errorf("%w: rule %d: aa pattern %q is malformed", ErrPolicy, i, e)
			}
		}
	}
	return &p, nil
}

// Op is what a peer asks to do.
type Op int

// The operations a policy grants.
const (
	OpExtend Op = iota
	OpRead
	OpQuote
	OpCut
	// OpAA is writing a record of a domain (the name Allows is given)
	// through the attestation agent's API.
	OpAA
)

func (o Op) String() string {
	switch o {
	case OpExtend:
		return "extend"
	case OpRead:
		return "read"
	case OpQuote:
		return "quote"
	case OpCut:
		return "cut"
	case OpAA:
		return "aa-record"
	}
	return "op" + strconv.Itoa(int(o))
}

// Allows reports whether peer may do op (on register reg for OpExtend, on
// the record domain reg for OpAA).
// A nil Policy is the default: root only.
func (p *Policy) Allows(peer Peer, op Op, reg string) bool {
	if peer.UID == 0 && peer.Admin {
		return true
	}
	if p == nil {
		return false
	}
	for i := range p.Rules {
		r := &p.Rules[i]
		groups, ok := r.match(peer)
		if !ok {
			continue
		}
		switch op {
		case OpRead:
			if r.Read {
				return true
			}
		case OpQuote:
			if r.Quote {
				return true
			}
		case OpCut:
			if r.Cut {
				return true
			}
		case OpExtend:
			if matchAny(r.Extend, groups, reg) {
				return true
			}
		case OpAA:
			if matchAny(r.AA, groups, reg) {
				return true
			}
		}
	}
	return false
}

// matchAny reports whether one of pats, expanded with groups, matches name.
func matchAny(pats, groups []string, name string) bool {
	for _, pat := range pats {
		pat, ok := expand(pat, groups)
		if !ok {
			continue
		}
		if m, err := path.Match(pat, name); err == nil && m {
			return true
		}
	}
	return false
}

// match reports whether r applies to peer, with the groups of the cgroup
// expression that matched.
func (r *Rule) match(peer Peer) ([]string, bool) {
	if len(r.UIDs) > 0 && !slices.Contains(r.UIDs, peer.UID) {
		return nil, false
	}
	if len(r.GIDs) > 0 && !slices.Contains(r.GIDs, peer.GID) {
		return nil, false
	}
	if len(r.cgroups) == 0 {
		return nil, true
	}
	if !peer.CgroupKnown {
		return nil, false
	}
	for _, re := range r.cgroups {
		if m := re.FindStringSubmatch(peer.Cgroup); m != nil {
			return m, true
		}
	}
	return nil, false
}

// expand replaces $1..$9 in pat with groups; a group that is absent,
// empty or holds anything but [a-z0-9_.-] (which could widen the pattern)
// makes the pattern grant nothing.
func expand(pat string, groups []string) (string, bool) {
	if !strings.Contains(pat, "$") {
		return pat, true
	}
	var b strings.Builder
	for i := 0; i < len(pat); i++ {
		c := pat[i]
		if c != '$' {
			b.WriteByte(c)
			continue
		}
		if i+1 >= len(pat) || pat[i+1] < '1' || pat[i+1] > '9' {
			return "", false
		}
		n := int(pat[i+1] - '0')
		i++
		if n >= len(groups) || groups[n] == "" || !mr.IsVirtualName("mr_"+groups[n]) {
			return "", false
		}
		b.WriteString(groups[n])
	}
	return b.String(), true
}

// CheckPolicyFile refuses a policy file that someone other than root or
// the daemon's user could change (whoever can write it grants himself
// every register): it must be a regular file owned by one of them and
// writable by its owner only.
func CheckPolicyFile(fi fs.FileInfo, self int) error {
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%w: mode %v: want a regular file writable by its owner only", ErrPolicy, fi.Mode())
	}
	if uid, ok := fileOwner(fi); ok && uid != 0 && uid != self {
		return fmt.Errorf("%w: belongs to uid %d, not to root or the daemon's user (%d)", ErrPolicy, uid, self)
	}
	return nil
}
