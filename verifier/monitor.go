package verifier

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ccmr-dev/ccmr/log/runtime"
	"github.com/ccmr-dev/ccmr/mr"
)

// StateFormat is the "format" member of a monitor state file.
const StateFormat = "ccmr-monitor-state/v1"

// MonitorState is what `ccmr verify --state FILE` remembers between bundles,
// per machine: the last verified register values, how far each runtime log
// was verified (segment, byte offset, backing and virtual values, record
// counts) and how many IMA entries were proven with mr_ima's value there.
// The next bundle of the machine is verified from there, so the cost grows
// with what is new, not with the whole history. A bundle that does not
// continue the state (a shorter log, another segment start, an IMA list that
// no longer reaches the proven point) fails; it never resets the state.
type MonitorState struct {
	Format   string                   `json:"format"`
	Machines map[string]*MachineState `json:"machines"`
}

// MachineState is one machine's verified history.
type MachineState struct {
	Time      time.Time       `json:"time"`
	Registers []Register      `json:"registers"`
	Runtime   []*RuntimeState `json:"runtime,omitempty"`
	IMA       *IMAState       `json:"ima,omitempty"`
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
}

// imaPoint is where layer 3 starts.
type imaPoint struct {
	entries int
	offset  int64
	value   mr.Digest
}

// LoadState reads a monitor state file; a missing file is an empty state.
func LoadState(path string) (*MonitorState, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &MonitorState{Format: StateFormat, Machines: map[string]*MachineState{}}, nil
	}
	if err != nil {
		return nil, err
	}
	var m MonitorState
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", path, mr.ErrMalformed, err)
	}
	if m.Format != StateFormat {
		return nil, fmt.Errorf("%s: %w: format %q, want %q", path, mr.ErrMalformed, m.Format, StateFormat)
	}
	if m.Machines == nil {
		m.Machines = map[string]*MachineState{}
	}
	return &m, nil
}

// Save replaces the state file atomically.
func (m *MonitorState) Save(path string) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	f, err := os.Open(tmp)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// MachineID names the machine a bundle comes from in a monitor state: a
// hash of its signing key (TPM AK, sim key) or of its first certificate
// (PCK, VCEK), else its platform.
func MachineID(b *Bundle) string {
	var src []byte
	switch {
	case b.Evidence.PublicKey != "":
		src = []byte(b.Evidence.PublicKey)
	case len(b.Evidence.Certificates) > 0:
		src = b.Evidence.Certificates[0]
	default:
		return string(b.Platform)
	}
	h := sha256.Sum256(src)
	return string(b.Platform) + "-" + hex.EncodeToString(h[:8])
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

func (rs *RuntimeState) resume() *runtime.Resume {
	res := &runtime.Resume{Backing: rs.Value, Counts: map[string]int{}}
	for _, v := range rs.Virtual {
		res.Virtual = append(res.Virtual, mr.Value{Register: mr.Register{Name: v.Name, Alg: v.Digest.Alg}, Digest: v.Digest})
		res.Counts[v.Name] = v.Count
	}
	return res
}

func (ms *MachineState) setRuntime(reg string, init mr.Digest, off int64, value mr.Digest, virt []mr.Value, counts map[string]int) {
	if ms == nil {
		return
	}
	rs := &RuntimeState{Register: reg, SegmentInit: init, Offset: off, Value: value}
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
