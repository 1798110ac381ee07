package aael

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/ccmr-dev/ccmr/mr"
)

// Domains and operations with a meaning to ccmr.
const (
	// OpExtend is the operation of a virtual-register record.
	OpExtend = "extend"
	// DomainCCMR is the domain of ccmr's own bookkeeping records.
	DomainCCMR = "ccmr"
	// OpSnapshot is the operation of a snapshot record (domain ccmr).
	OpSnapshot = "snapshot"
	// InitKeyword starts the INIT record `INIT ALG/HEX`.
	InitKeyword = "INIT"
	// MaxRecordSize bounds one record's text (and so one entry's event):
	// larger records are refused on write and on read.
	MaxRecordSize = 1 << 20
)

// ErrRecord marks a record that is not valid AAEL text, or that breaks
// ccmr's rules for virtual-register and snapshot records. It wraps
// mr.ErrMalformed, so errors.Is(err, mr.ErrMalformed) holds too.
var ErrRecord = fmt.Errorf("%w: bad runtime log record", mr.ErrMalformed)

// Record is one AAEL event: `domain SP operation SP content`. Domain and
// operation are non-empty printable ASCII without whitespace; content is
// non-empty printable ASCII (spaces allowed, no LF, no other control
// characters).
type Record struct {
	Domain    string
	Operation string
	Content   string
}

// String returns the record text `domain operation content`, without LF.
func (r Record) String() string { return r.Domain + " " + r.Operation + " " + r.Content }

// IsZero reports whether r is the zero Record (no record: an INIT entry or
// an entry foreign to the runtime log).
func (r Record) IsZero() bool { return r.Domain == "" && r.Operation == "" && r.Content == "" }

func recErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrRecord, fmt.Sprintf(format, a...))
}

// token checks a domain or operation: printable ASCII, no space, non-empty.
func token(what, s string) error {
	if s == "" {
		return recErr("empty %s", what)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c >= 0x7f {
			return recErr("%s %q: byte 0x%02x at %d is not printable ASCII without whitespace", what, clip(s), c, i)
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// NewRecord builds a record and validates it (Validate).
func NewRecord(domain, operation, content string) (Record, error) {
	r := Record{Domain: domain, Operation: operation, Content: content}
	if err := r.Validate(); err != nil {
		return Record{}, err
	}
	return r, nil
}

// Validate checks the AAEL syntax and ccmr's rules:
//   - a domain of the form mr_* must be a valid virtual register name
//     (mr.IsVirtualName), its operation must be `extend` and its content
//     a canonical `ALG/HEX` digest (lowercase, no spaces);
//   - domain `ccmr` is reserved: only `snapshot` with a valid snapshot list;
//   - domain INIT is reserved for the INIT entry.
func (r Record) Validate() error {
	if err := token("domain", r.Domain); err != nil {
		return err
	}
	if err := token("operation", r.Operation); err != nil {
		return err
	}
	if r.Content == "" {
		return recErr("empty content")
	}
	for i := 0; i < len(r.Content); i++ {
		if c := r.Content[i]; c < 0x20 || c >= 0x7f {
			return recErr("content: byte 0x%02x at %d is not printable ASCII", c, i)
		}
	}
	if n := len(r.Domain) + len(r.Operation) + len(r.Content) + 2; n > MaxRecordSize {
		return recErr("record of %d bytes exceeds %d", n, MaxRecordSize)
	}
	switch {
	case r.Domain == InitKeyword:
		return recErr("domain INIT is reserved for the INIT entry")
	case strings.HasPrefix(r.Domain, "mr_"):
		_, _, err := r.virtual()
		return err
	case r.Domain == DomainCCMR:
		if r.Operation != OpSnapshot {
			return recErr("domain ccmr: unknown operation %q (want snapshot)", clip(r.Operation))
		}
		_, err := ParseSnapshot(r.Content)
		return err
	}
	return nil
}

// ParseRecord parses and validates record text `domain operation content`
// (without LF): the split is at the first two spaces, so content may hold
// spaces.
func ParseRecord(s string) (Record, error) {
	d, rest, ok := strings.Cut(s, " ")
	if !ok {
		return Record{}, recErr("%q is not `domain operation content`", clip(s))
	}
	op, content, ok := strings.Cut(rest, " ")
	if !ok {
		return Record{}, recErr("%q is not `domain operation content`", clip(s))
	}
	return NewRecord(d, op, content)
}

// ExtendRecord returns the record that extends virtual register name with
// d: `name extend ALG/HEX`.
func ExtendRecord(name string, d mr.Digest) (Record, error) {
	if !mr.IsVirtualName(name) {
		return Record{}, recErr("%q is not a virtual register name (mr_ followed by 1 to 60 of [a-z0-9_.-])", clip(name))
	}
	if _, err := mr.NewDigest(d.Alg, d.Bytes); err != nil {
		return Record{}, fmt.Errorf("%w: virtual register %s: %w", ErrRecord, name, err)
	}
	return Record{Domain: name, Operation: OpExtend, Content: d.LogString()}, nil
}

// IsVirtual reports whether r is a virtual-register record (its domain
// starts with mr_). Validate has checked the rest.
func (r Record) IsVirtual() bool { return strings.HasPrefix(r.Domain, "mr_") }

// Virtual returns the register name and digest of a virtual-register record.
func (r Record) Virtual() (name string, d mr.Digest, err error) { return r.virtual() }

func (r Record) virtual() (string, mr.Digest, error) {
	if !mr.IsVirtualName(r.Domain) {
		return "", mr.Digest{}, recErr("domain %q starts with mr_ but is not a virtual register name (mr_ followed by 1 to 60 of [a-z0-9_.-])", clip(r.Domain))
	}
	if r.Operation != OpExtend {
		return "", mr.Digest{}, recErr("virtual register %s: operation %q (want extend)", r.Domain, clip(r.Operation))
	}
	d, err := parseLogDigest(r.Content)
	if err != nil {
		return "", mr.Digest{}, fmt.Errorf("%w: virtual register %s: %w", ErrRecord, r.Domain, err)
	}
	return r.Domain, d, nil
}

// parseLogDigest parses ALG/HEX and requires the canonical form (the form
// LogString writes: lowercase names and hex, '/').
func parseLogDigest(s string) (mr.Digest, error) {
	if !strings.Contains(s, "/") {
		return mr.Digest{}, fmt.Errorf("%w: %q is not ALG/HEX", mr.ErrMalformed, clip(s))
	}
	d, err := mr.ParseDigest(s)
	if err != nil {
		return mr.Digest{}, err
	}
	// Canonical: the algorithm's own name, '/', lowercase hex.
	name, h, _ := strings.Cut(s, "/")
	canon := name == d.Alg.String()
	for i := 0; canon && i < len(h); i++ {
		canon = h[i] < 'A' || h[i] > 'F'
	}
	if !canon {
		return mr.Digest{}, fmt.Errorf("%w: %q is not canonical ALG/HEX (want %s)", mr.ErrMalformed, clip(s), clip(d.LogString()))
	}
	return d, nil
}

// Snapshot is one register's value in a snapshot record.
type Snapshot struct {
	Name  string
	Value mr.Digest
}

// SnapshotRecord returns `ccmr snapshot mr_x=ALG/HEX,mr_y=ALG/HEX` for the
// given values, sorted by name. It needs at least one value; names must be
// valid and distinct.
func SnapshotRecord(vals []Snapshot) (Record, error) {
	if len(vals) == 0 {
		return Record{}, recErr("snapshot of no virtual registers")
	}
	s := append([]Snapshot(nil), vals...)
	sort.Slice(s, func(i, j int) bool { return s[i].Name < s[j].Name })
	var b strings.Builder
	for i, v := range s {
		if !mr.IsVirtualName(v.Name) {
			return Record{}, recErr("snapshot: %q is not a virtual register name", clip(v.Name))
		}
		if i > 0 && s[i-1].Name == v.Name {
			return Record{}, recErr("snapshot: %s listed twice", v.Name)
		}
		if _, err := mr.NewDigest(v.Value.Alg, v.Value.Bytes); err != nil {
			return Record{}, fmt.Errorf("%w: snapshot %s: %w", ErrRecord, v.Name, err)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(v.Name)
		b.WriteByte('=')
		b.WriteString(v.Value.LogString())
	}
	return Record{Domain: DomainCCMR, Operation: OpSnapshot, Content: b.String()}, nil
}

// ParseSnapshot parses the content of a snapshot record: comma-separated
// name=ALG/HEX, names strictly ascending (so each appears once).
func ParseSnapshot(content string) ([]Snapshot, error) {
	if content == "" {
		return nil, recErr("empty snapshot")
	}
	var out []Snapshot
	for part := range strings.SplitSeq(content, ",") {
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			return nil, recErr("snapshot item %q is not name=ALG/HEX", clip(part))
		}
		if !mr.IsVirtualName(name) {
			return nil, recErr("snapshot: %q is not a virtual register name", clip(name))
		}
		if n := len(out); n > 0 && out[n-1].Name >= name {
			return nil, recErr("snapshot: %s after %s (names must be strictly ascending)", name, out[n-1].Name)
		}
		d, err := parseLogDigest(val)
		if err != nil {
			return nil, fmt.Errorf("%w: snapshot %s: %w", ErrRecord, name, err)
		}
		out = append(out, Snapshot{Name: name, Value: d})
	}
	return out, nil
}

// InitString returns the INIT record text `INIT ALG/HEX` for start value d.
func InitString(d mr.Digest) string { return InitKeyword + " " + d.LogString() }

// ParseInit parses `INIT ALG/HEX` and returns the start value. The digest
// must have its algorithm's size (mr.ErrDigestSize otherwise).
func ParseInit(s string) (mr.Digest, error) {
	kw, v, ok := strings.Cut(s, " ")
	if !ok || kw != InitKeyword {
		return mr.Digest{}, recErr("%q is not `INIT ALG/HEX`", clip(s))
	}
	d, err := parseLogDigest(v)
	if err != nil {
		if errors.Is(err, mr.ErrDigestSize) {
			return mr.Digest{}, fmt.Errorf("INIT: %w", err)
		}
		return mr.Digest{}, fmt.Errorf("%w: INIT: %w", ErrRecord, err)
	}
	return d, nil
}
