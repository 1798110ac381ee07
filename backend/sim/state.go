package sim

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/ccmr-dev/ccmr/internal/flock"
	"github.com/ccmr-dev/ccmr/internal/safefs"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/simverify"
)

// File names inside the state folder.
const (
	stateFile = "state.json"
	stateTemp = "state.json.tmp"
	lockFile  = "lock"
	keyFile   = "attest-key.pem"
	keyTemp   = "attest-key.pem.tmp"
)

// StateFormat is the "format" member of the state file.
const StateFormat = "ccmr-sim-state/v1"

// maxStateSize bounds what ParseState reads; a TPM-layout state is ~12 KiB.
const maxStateSize = 1 << 20

// State is the content of the state file: the layout, a counter of updates
// and every register value in the layout's order.
type State struct {
	// Layout is the layout the folder was created with.
	Layout Layout
	// Seq counts the updates (extends) since the folder was created.
	Seq uint64
	// Values holds one value per register of Layout, in Layout.Registers order.
	Values []mr.Value
}

type stateJSON struct {
	Format    string                `json:"format"`
	Layout    string                `json:"layout"`
	Seq       uint64                `json:"seq"`
	Registers []simverify.ValueJSON `json:"registers"`
}

// newState returns the initial state of layout l.
func newState(l Layout) *State {
	st := &State{Layout: l}
	for _, r := range l.Registers() {
		st.Values = append(st.Values, mr.Value{Register: r, Digest: mr.Digest{Alg: r.Alg, Bytes: initialValue(r)}})
	}
	return st
}

// Marshal encodes the state as the state file's bytes: compact JSON with a
// trailing newline, registers in layout order.
func (st *State) Marshal() []byte {
	j := stateJSON{Format: StateFormat, Layout: string(st.Layout), Seq: st.Seq,
		Registers: make([]simverify.ValueJSON, len(st.Values))}
	for i, v := range st.Values {
		j.Registers[i] = simverify.ValueJSON{Name: v.Register.Name, Alg: v.Register.Alg.String(), Value: hex.EncodeToString(v.Digest.Bytes)}
	}
	b, err := json.Marshal(j)
	if err != nil { // cannot happen: only strings and integers
		panic(err)
	}
	return append(b, '\n')
}

// ParseState decodes a state file. It is strict: the format must be
// ccmr-sim-state/v1, the layout known, and the registers exactly those of
// the layout, in order, each with a value of the register's size. Errors
// wrap mr.ErrMalformed.
func ParseState(b []byte) (*State, error) {
	if len(b) > maxStateSize {
		return nil, fmt.Errorf("%w: state is %d bytes, more than %d", mr.ErrMalformed, len(b), maxStateSize)
	}
	var j stateJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return nil, fmt.Errorf("%w: state: %v", mr.ErrMalformed, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: state: data after the JSON object at byte %d", mr.ErrMalformed, dec.InputOffset())
	}
	if j.Format != StateFormat {
		return nil, fmt.Errorf("%w: state: format %q, want %q", mr.ErrMalformed, j.Format, StateFormat)
	}
	l, err := ParseLayout(j.Layout)
	if err != nil {
		return nil, fmt.Errorf("%w: state: %v", mr.ErrMalformed, err)
	}
	vals, err := simverify.ParseValues(l.Registers(), j.Registers)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return &State{Layout: l, Seq: j.Seq, Values: vals}, nil
}

// openLock opens the lock file and takes a shared or exclusive lock on it
// (internal/flock), giving up when ctx ends. Closing the returned file
// releases the lock. Each call opens its own file description, so locks
// taken by one process for different operations also exclude each other.
func openLock(ctx context.Context, path string, how flock.Mode) (*os.File, error) {
	f, err := safefs.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil && how == flock.Shared && (errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS)) {
		f, err = safefs.Open(path) // reading a folder we may not write: a shared lock needs no write access
	}
	if err != nil {
		return nil, fmt.Errorf("sim: lock: %w", err)
	}
	if err := lockFD(ctx, f, how); err != nil {
		if ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
			f.Close() // flock.Lock closes f itself only when ctx ended
		}
		return nil, err
	}
	return f, nil
}

// lockFD takes a lock on the open lock file f, giving up when ctx ends
// (then f is closed, or will be: see flock.Lock).
func lockFD(ctx context.Context, f *os.File, how flock.Mode) error {
	if err := flock.Lock(ctx, f, how); err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return fmt.Errorf("sim: %w", err)
	}
	return nil
}

// readState reads and parses the state file in dir; the caller holds a lock.
// A missing file gives an error satisfying errors.Is(err, fs.ErrNotExist).
func readState(dir string) (*State, error) {
	p := filepath.Join(dir, stateFile)
	b, err := safefs.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	st, err := ParseState(b)
	if err != nil {
		return nil, fmt.Errorf("sim: %s: %w (the file was left unchanged; remove it to reset the device)", p, err)
	}
	return st, nil
}

// writeState replaces the state file by a temporary file renamed over it,
// so that a reader (who holds the lock after the writer) sees the old or the
// new state whole. The caller holds the exclusive lock. Device.writeState
// writes in place instead where that is safe; this is the general case (a
// new folder, the TPM layout's 12 KiB). Nothing is fsynced: see
// Device.writeState.
func writeState(dir string, st *State) ([]byte, error) {
	b := st.Marshal()
	if err := replaceFile(dir, stateTemp, stateFile, b, false); err != nil {
		return nil, fmt.Errorf("sim: write state: %w", err)
	}
	return b, nil
}

// replaceFile writes data to dir/tmp (mode 0600), fsyncs it when sync is
// set, and renames it over dir/name; on failure the temporary file is
// removed and dir/name is untouched.
func replaceFile(dir, tmp, name string, data []byte, sync bool) error {
	return safefs.WriteFile(filepath.Join(dir, name), filepath.Join(dir, tmp), 0o600, sync, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// clone returns a deep copy.
func (st *State) clone() *State {
	c := *st
	c.Values = make([]mr.Value, len(st.Values))
	for i, v := range st.Values {
		v.Digest.Bytes = append([]byte(nil), v.Digest.Bytes...)
		c.Values[i] = v
	}
	return &c
}
