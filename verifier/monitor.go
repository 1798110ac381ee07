package verifier

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/internal/safefs"
	"github.com/ccmr-dev/ccmr/internal/strictjson"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
)

// StateFormat is the "format" member of a monitor state file. Version 2
// binds each machine's entry to the policy it was judged under, the boot it
// saw and the bytes it verified; a version 1 file does not, and is refused.
const StateFormat = "ccmr-monitor-state/v2"

// MonitorState is what `ccmr verify --state FILE` remembers between bundles,
// per machine: the last verified register values, how far each runtime log
// was verified (segment, byte offset, backing and virtual values, record
// counts) and how many IMA entries were proven with mr_ima's value there.
// The next bundle of the machine is verified from there, so the cost grows
// with what is new, not with the whole history. A bundle that does not
// continue the state (a shorter log, another segment start, an IMA list that
// no longer reaches the proven point, a prefix that differs from the bytes
// verified) fails; it never resets the state. An entry judged under another
// policy, or recorded in another boot, is not used: the bundle is verified
// in full and, when trusted, replaces it.
type MonitorState struct {
	Format   string                   `json:"format"`
	Machines map[string]*MachineState `json:"machines"`
	// MAC is "hmac-sha256:HEX" over the file's canonical content (this
	// struct without MAC, as Marshal writes it) when the operator keeps
	// the file under a key (--state-key).
	MAC string `json:"mac,omitempty"`
}

// MachineState is one machine's verified history.
type MachineState struct {
	// Time is the bundle's own time; Verified is when it was verified
	// (Options.At), the time the report names.
	Time     time.Time `json:"time"`
	Verified time.Time `json:"verified"`
	// Policy is the digest of the policy the entry was judged under
	// (Policy.Digest), "none" without one; AppLogs are the virtual
	// registers whose application logs were checked. A run that judges
	// differently does not use the entry.
	Policy  string   `json:"policy"`
	AppLogs []string `json:"app_logs,omitempty"`
	// Weakened are the weakenings of the verdicts that built the entry
	// (the per-bundle "no expected nonce" excepted): every verdict that
	// resumes from the entry repeats them.
	Weakened  []string          `json:"weakened,omitempty"`
	Registers []bundle.Register `json:"registers"`
	Runtime   []*RuntimeState   `json:"runtime,omitempty"`
	IMA       *IMAState         `json:"ima,omitempty"`
}

// RuntimeState is how far one runtime log was verified.
type RuntimeState struct {
	Register string `json:"register"`
	// SegmentInit is the INIT value of the segment verified last (zero
	// when the segment has none): a later bundle with the same segment
	// resumes at Offset; one with a new segment must start at Value.
	SegmentInit mr.Digest      `json:"segment_init"`
	Offset      int64          `json:"offset"`
	Value       mr.Digest      `json:"value"`
	Virtual     []VirtualState `json:"virtual,omitempty"`
	// Prefix is the SHA-256 (hex) of the segment's first Offset bytes,
	// the bytes verified: a later bundle's copy of them must be the same.
	// Records is how many entries they hold (for the report).
	Prefix  string `json:"prefix_sha256"`
	Records int    `json:"records"`
	// PrefixState is the SHA-256 state (base64 of its MarshalBinary)
	// after those Offset bytes: a tail of the segment (bundle.Log.Offset)
	// continues it over the new bytes, so that the state keeps the hash
	// of the whole segment without the old bytes being sent again.
	PrefixState string `json:"prefix_state,omitempty"`
	// Archived are the SHA-256 (hex) of the chain's segments before this
	// one, oldest first: the bytes of earlier segments a later bundle
	// carries must be those (a suffix of the list: a guest may delete
	// its oldest archives), as they are not replayed again.
	Archived []string `json:"archived_sha256,omitempty"`
	// Alg and MRIndex are the digest algorithm and the MR index of the
	// segment's entries: the entries after Offset are read by a reader
	// that starts with them, so that they must use the same, as in a
	// verification of the whole log. (The aael-text form carries no MR
	// index: the one its reader reports.)
	Alg     string  `json:"alg"`
	MRIndex *uint32 `json:"mr_index"`
	// Start is the value the chain's first segment started at in this
	// boot, proven when the state was first written (the register's reset
	// value, or a firmware or dstack log's replay of it). A later bundle's
	// firmware or dstack log must replay the register to it: the chain is
	// resumed, not replayed from its start, so nothing else would judge
	// that log's events on the register. Nil in a state written before it
	// was kept: such a state cannot judge them, and a bundle whose logs
	// have events there is refused.
	Start *mr.Digest `json:"start,omitempty"`
}

// VirtualState is a virtual register's value and record count.
type VirtualState struct {
	Name   string    `json:"name"`
	Digest mr.Digest `json:"digest"`
	Count  int       `json:"count"`
}

// IMAState is how much of the IMA list was proven against mr_ima.
type IMAState struct {
	Entries int       `json:"entries"`
	Offset  int64     `json:"offset"`
	Value   mr.Digest `json:"value"`
	// Prefix is the SHA-256 (hex) of the list's first Offset bytes;
	// PrefixState the SHA-256 state after them (RuntimeState.PrefixState).
	Prefix      string `json:"prefix_sha256"`
	PrefixState string `json:"prefix_state,omitempty"`
	// PCRs counts the first Entries entries by the PCR they name, so a
	// resumed run knows which PCRs the whole list extends from the new
	// entries alone (the prefix hash binds the bytes they were counted
	// in). Absent in states written before it was kept: then the list is
	// read from its start.
	PCRs map[int]int `json:"pcrs,omitempty"`
}

// imaPoint is where layer 3 starts.
type imaPoint struct {
	entries int
	offset  int64
	value   mr.Digest
	// pcrs counts the entries before the point by PCR (IMAState.PCRs);
	// nil when the state did not keep them.
	pcrs map[int]int
}

// ErrStateKey is returned for a state file whose authentication does not
// hold: a wrong MAC, no MAC when a key is given, a MAC but no key.
var ErrStateKey = errors.New("monitor state authentication failed")

// NewState returns an empty monitor state.
func NewState() *MonitorState {
	return &MonitorState{Format: StateFormat, Machines: map[string]*MachineState{}}
}

// LoadState reads a monitor state file; a missing file is an empty state.
// key, when not nil, is the operator's secret the file's MAC must verify
// under. Hold LockState around LoadState, Verify and Save.
func LoadState(path string, key []byte) (*MonitorState, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return NewState(), nil
	}
	if err != nil {
		return nil, err
	}
	m, err := ParseState(b, key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// ParseState decodes a monitor state strictly: exactly one JSON object of
// the current format, no unknown member, nothing after it, every entry
// complete; with a key, its MAC must verify.
func ParseState(b []byte, key []byte) (*MonitorState, error) {
	var m MonitorState
	if err := strictjson.Decode(b, &m); err != nil {
		return nil, fmt.Errorf("%w: monitor state: %v", mr.ErrMalformed, err)
	}
	if m.Format != StateFormat {
		return nil, fmt.Errorf("%w: monitor state: format %q, want %q (a v1 state binds no policy, boot or verified bytes: start a new file)", mr.ErrMalformed, m.Format, StateFormat)
	}
	switch {
	case key == nil && m.MAC != "":
		return nil, fmt.Errorf("%w: the state carries a MAC: give its key (--state-key)", ErrStateKey)
	case key != nil && m.MAC == "":
		return nil, fmt.Errorf("%w: a key is given but the state carries no MAC", ErrStateKey)
	case key != nil:
		want, err := m.mac(key)
		if err != nil {
			return nil, err
		}
		if !hmac.Equal([]byte(want), []byte(m.MAC)) {
			return nil, fmt.Errorf("%w: the MAC does not verify under the key (the file was changed, or another key)", ErrStateKey)
		}
	}
	// After the MAC: a changed file under a key is ErrStateKey, whatever
	// the change.
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("%w: monitor state: %v", mr.ErrMalformed, err)
	}
	return &m, nil
}

// validate refuses entries the verifier could not use safely: null
// entries, runtime states without a register or repeated, negative
// offsets, prefix hashes that are not SHA-256.
func (m *MonitorState) validate() error {
	if m.Machines == nil {
		return errors.New(`no "machines" object`)
	}
	for name, ms := range m.Machines {
		if ms == nil {
			return fmt.Errorf("machine %q: null entry", name)
		}
		if ms.Policy == "" {
			return fmt.Errorf("machine %q: no policy digest", name)
		}
		seen := map[string]bool{}
		for _, rs := range ms.Runtime {
			if rs == nil || rs.Register == "" || seen[rs.Register] {
				return fmt.Errorf("machine %q: a runtime entry is null, names no register, or repeats one", name)
			}
			seen[rs.Register] = true
			if rs.Offset < 0 || rs.Records < 0 || !isSHA256Hex(rs.Prefix) {
				return fmt.Errorf("machine %q: runtime %s: bad offset, record count or prefix hash", name, rs.Register)
			}
			if err := checkPrefixState(rs.PrefixState, rs.Offset, rs.Prefix); err != nil {
				return fmt.Errorf("machine %q: runtime %s: %v", name, rs.Register, err)
			}
			for _, a := range rs.Archived {
				if !isSHA256Hex(a) {
					return fmt.Errorf("machine %q: runtime %s: an archived segment's hash is no SHA-256", name, rs.Register)
				}
			}
			if rs.Start != nil && (!validDigest(*rs.Start) || rs.Start.Alg != rs.Value.Alg) {
				return fmt.Errorf("machine %q: runtime %s: the start is no digest of the value's algorithm", name, rs.Register)
			}
			if a, err := mr.ParseAlg(rs.Alg); err != nil || a.String() != rs.Alg || a != rs.Value.Alg || rs.MRIndex == nil {
				return fmt.Errorf("machine %q: runtime %s: no MR index, or no digest algorithm (that of its value) for its entries (a state written before they were kept: start a new file)", name, rs.Register)
			}
		}
		if ms.IMA != nil && (ms.IMA.Entries < 0 || ms.IMA.Offset < 0 || !isSHA256Hex(ms.IMA.Prefix)) {
			return fmt.Errorf("machine %q: ima: bad entries, offset or prefix hash", name)
		}
		if ms.IMA != nil {
			if err := checkPrefixState(ms.IMA.PrefixState, ms.IMA.Offset, ms.IMA.Prefix); err != nil {
				return fmt.Errorf("machine %q: ima: %v", name, err)
			}
		}
		if ms.IMA != nil {
			for p := range ms.IMA.PCRs {
				if p > ima.MaxPCR {
					return fmt.Errorf("machine %q: ima: pcrs must count entries by PCR index (0-%d)", name, ima.MaxPCR)
				}
			}
			if !validPCRCounts(ms.IMA.PCRs, ms.IMA.Entries) {
				return fmt.Errorf("machine %q: ima: pcrs must count each of the %d entries once, by PCR index", name, ms.IMA.Entries)
			}
		}
		if ms.IMA != nil && !validDigest(ms.IMA.Value) {
			return fmt.Errorf("machine %q: ima: the point's mr_ima value %q is no digest", name, ms.IMA.Value)
		}
	}
	return nil
}

// validDigest reports whether d is a digest of a known algorithm and size.
func validDigest(d mr.Digest) bool {
	_, err := mr.NewDigest(d.Alg, d.Bytes)
	return err == nil
}

func isSHA256Hex(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == sha256.Size && hex.EncodeToString(b) == s
}

// Marshal encodes the state; with a key it sets the MAC first.
func (m *MonitorState) Marshal(key []byte) ([]byte, error) {
	c := *m
	c.MAC = ""
	if key != nil {
		mac, err := c.mac(key)
		if err != nil {
			return nil, err
		}
		c.MAC = mac
	}
	b, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// mac is HMAC-SHA256 under key of the canonical content: the state without
// its MAC in Go's JSON encoding (sorted map keys, fixed member order).
func (m *MonitorState) mac(key []byte) (string, error) {
	c := *m
	c.MAC = ""
	b, err := json.Marshal(&c)
	if err != nil {
		return "", err
	}
	h := hmac.New(sha256.New, key)
	h.Write(b)
	return "hmac-sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// Save replaces the state file atomically: a unique temporary file in the
// same folder, written, synced and renamed over it, so that a crash or a
// concurrent writer never leaves a torn file. key, when not nil, MACs it.
func (m *MonitorState) Save(path string, key []byte) error {
	b, err := m.Marshal(key)
	if err != nil {
		return err
	}
	err = safefs.WriteFile(path, "", 0o600, true, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
	if err != nil {
		return fmt.Errorf("monitor state: %w", err)
	}
	return nil
}

// MachineID names the machine a bundle comes from in a monitor state: a
// hash of its signing key (TPM AK, sim key), which belongs to one machine.
// It is "" when the evidence carries no per-machine identity: a TDX quote
// is signed by the platform's PCK and an SNP report by the host's VCEK or
// VLEK, shared by every guest of the host (Options.Machine must name it).
func MachineID(b *bundle.Bundle) string {
	switch b.Platform {
	case mr.PlatformTPM, mr.PlatformSim:
		if b.Evidence.PublicKey == "" {
			return ""
		}
		h := sha256.Sum256(canonicalKey(b.Evidence.PublicKey))
		return string(b.Platform) + "-" + hex.EncodeToString(h[:8])
	}
	return ""
}

// canonicalKey is the DER SubjectPublicKeyInfo of a PEM (or TPMT_PUBLIC)
// key: the same key written with another comment, line breaks or PEM
// headers names the same machine. A key that does not parse is taken as
// written (its evidence fails layer 0 anyway).
func canonicalKey(key string) []byte {
	pk, err := tpmverify.ParseAKPublic([]byte(key))
	if err != nil {
		return []byte(key)
	}
	der, err := x509.MarshalPKIXPublicKey(pk)
	if err != nil {
		return []byte(key)
	}
	return der
}

func (ms *MachineState) runtimeFor(reg string) *RuntimeState {
	if ms == nil {
		return nil
	}
	for _, r := range ms.Runtime {
		if r.Register == reg {
			return r
		}
	}
	return nil
}

func (rs *RuntimeState) resume() *aael.Resume {
	res := &aael.Resume{Backing: rs.Value, Counts: map[string]int{}}
	for _, v := range rs.Virtual {
		res.Virtual = append(res.Virtual, mr.Value{Register: mr.Register{Name: v.Name, Alg: v.Digest.Alg}, Digest: v.Digest})
		res.Counts[v.Name] = v.Count
	}
	return res
}

// entryAlg is the digest algorithm of the entries (validated on load).
func (rs *RuntimeState) entryAlg() mr.Alg {
	a, _ := mr.ParseAlg(rs.Alg)
	return a
}

func (ms *MachineState) setRuntime(reg string, init mr.Digest, off int64, value mr.Digest, virt []mr.Value, counts map[string]int, alg mr.Alg, mri uint32, start *mr.Digest) {
	if ms == nil {
		return
	}
	rs := &RuntimeState{Register: reg, SegmentInit: init, Offset: off, Value: value, Alg: alg.String(), MRIndex: &mri, Start: start}
	for _, v := range virt {
		rs.Virtual = append(rs.Virtual, VirtualState{Name: v.Register.Name, Digest: v.Digest, Count: counts[v.Register.Name]})
	}
	for i, r := range ms.Runtime {
		if r.Register == reg {
			ms.Runtime[i] = rs
			return
		}
	}
	ms.Runtime = append(ms.Runtime, rs)
}
