package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ccmr-dev/ccmr/internal/flock"
	"github.com/ccmr-dev/ccmr/internal/safefs"
	"github.com/ccmr-dev/ccmr/mr"
)

// Kind is what Device.Kind returns.
const Kind = "sim"

// Device is the file-backed software device. Its register values live in
// the state folder, not in the Device, so any number of Devices in any number
// of processes may use one folder at once; each operation locks the folder.
// A Device itself is safe for concurrent use.
type Device struct {
	dir    string
	layout Layout
	regs   []mr.Register
	now    func() time.Time

	// cache holds the last state file this Device read or wrote and its
	// parse: when the file still holds those bytes, the parse is reused
	// (the bytes are always read and compared, so other processes'
	// updates are never missed).
	cacheMu  sync.Mutex
	cacheRaw []byte
	cacheSt  *State
	stateF   *os.File
	heldSize int64 // the state file's size when last opened or written

	// lockMu serialises this Device's users; lockF is its lock file, kept
	// open (flock excludes other processes, lockMu other goroutines, which
	// share lockF's open file description and so its flock).
	lockMu sync.Mutex
	lockF  *os.File
}

// lock takes the state folder's lock for this Device; release drops it.
func (d *Device) lock(ctx context.Context, how flock.Mode) (release func(), err error) {
	d.lockMu.Lock()
	if d.lockF == nil {
		if d.lockF, err = openLock(ctx, filepath.Join(d.dir, lockFile), how); err != nil {
			d.lockF = nil
			d.lockMu.Unlock()
			return nil, err
		}
	} else if err := lockFD(ctx, d.lockF, how); err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			d.lockF = nil // flock.Lock closes it once the abandoned wait returns
		}
		d.lockMu.Unlock()
		return nil, err
	}
	return func() {
		flock.Unlock(d.lockF)
		d.lockMu.Unlock()
	}, nil
}

// stateFile returns an open descriptor of the state file, kept across calls
// (opening it is most of an update's cost); it is reopened when the file was
// replaced by a rename. The caller holds a lock and d.cacheMu.
func (d *Device) openState() (*os.File, error) {
	p := filepath.Join(d.dir, stateFile)
	pi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	d.heldSize = pi.Size()
	if d.stateF != nil {
		if fi, err := d.stateF.Stat(); err == nil && os.SameFile(fi, pi) {
			return d.stateF, nil
		}
		d.stateF.Close()
		d.stateF = nil
	}
	f, err := safefs.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		// A folder we may only read: reads still work.
		if f, err = safefs.Open(p); err != nil {
			return nil, fmt.Errorf("sim: %w", err)
		}
	}
	d.stateF = f
	return f, nil
}

// readState reads the state file, reusing the last parse when the bytes
// are unchanged. The caller holds a lock.
func (d *Device) readState() (*State, error) {
	p := filepath.Join(d.dir, stateFile)
	d.cacheMu.Lock()
	defer d.cacheMu.Unlock()
	f, err := d.openState()
	if err != nil {
		return nil, err
	}
	if d.heldSize > maxStateSize {
		return nil, fmt.Errorf("sim: %s: %w: state is %d bytes, more than %d", p, mr.ErrMalformed, d.heldSize, maxStateSize)
	}
	b := make([]byte, d.heldSize)
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("sim: %s: %w", p, err)
	}
	if d.cacheSt != nil && bytes.Equal(b, d.cacheRaw) {
		return d.cacheSt.clone(), nil
	}
	st, err := ParseState(b)
	if err != nil {
		return nil, fmt.Errorf("sim: %s: %w (the file was left unchanged; remove it to reset the device)", p, err)
	}
	d.cacheRaw, d.cacheSt = b, st.clone()
	return st, nil
}

// writeState writes st so that a reader (who holds the lock after the
// writer) sees the old or the new state whole, and a writer that dies at
// any point leaves one of them.
//
// A state of at most one page that is not shorter than the file is written
// in place, with one write at offset 0 through the kept descriptor: the
// kernel copies a write page by page and stops only between pages when the
// process is killed, so such a write lands whole or not at all, and a state
// never shrinks (its values are fixed-width hex, its counter only grows).
// Anything else goes through the package function writeState (temporary
// file and rename). Nothing is fsynced: the registers are meant to be as
// volatile as hardware registers. A process that dies leaves the old or the
// new state (the page cache survives it); only a power loss may lose recent
// extends, as it resets real registers. Leaving fsync and rename out keeps a
// virtual extend (which must fsync its log record) close to the cost of that
// one fsync.
//
// It is called right after readState under the same exclusive lock, so the
// descriptor and size readState saw are still those of the state file.
func (d *Device) writeState(st *State) ([]byte, error) {
	b := st.Marshal()
	d.cacheMu.Lock()
	if d.stateF != nil && len(b) <= os.Getpagesize() && d.heldSize <= int64(len(b)) {
		_, err := d.stateF.WriteAt(b, 0)
		d.heldSize = int64(len(b))
		d.cacheMu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("sim: write state: %w", err)
		}
		return b, nil
	}
	d.cacheMu.Unlock()
	return writeState(d.dir, st)
}

// remember caches the state just written.
func (d *Device) remember(raw []byte, st *State) {
	d.cacheMu.Lock()
	d.cacheRaw, d.cacheSt = raw, st.clone()
	d.cacheMu.Unlock()
}

var (
	_ mr.Device   = (*Device)(nil)
	_ mr.Attester = (*Device)(nil)
)

// Option configures Open.
type Option func(*options)

type options struct {
	layout Layout
	now    func() time.Time
}

// WithLayout asks for layout l. When the folder is new, it is created with l
// (the default is LayoutTDX); when it exists with another layout, Open fails
// with ErrLayout. Without WithLayout an existing folder opens with its own layout.
func WithLayout(l Layout) Option { return func(o *options) { o.layout = l } }

// WithClock sets the clock Attest uses for the statement's time (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// ErrLayout is returned by Open when the folder was created with another layout.
var ErrLayout = errors.New("sim: layout mismatch")

// Open opens the sim device whose state lives in dir, creating the folder
// (mode 0700) and the initial state (every register at its reset value) when
// they do not exist. Creation is race-free: when several processes open a new
// folder at once, exactly one creates the state.
func Open(ctx context.Context, dir string, opts ...Option) (*Device, error) {
	o := options{now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	if o.layout != "" {
		if _, err := ParseLayout(string(o.layout)); err != nil {
			return nil, err
		}
	}
	if dir == "" {
		return nil, fmt.Errorf("%w: sim: empty state folder", mr.ErrMalformed)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sim: state folder: %w", err)
	}
	// The state, its lock and the signing key are written where links in
	// this folder point: nobody else may write here.
	if err := safefs.CheckDir(dir); err != nil {
		return nil, fmt.Errorf("sim: state folder: %w", err)
	}
	st, err := loadOrCreate(ctx, dir, o.layout)
	if err != nil {
		return nil, err
	}
	if o.layout != "" && st.Layout != o.layout {
		return nil, fmt.Errorf("%w: %s was created with layout %s, asked for %s (use another folder, or remove this one to reset it)",
			ErrLayout, dir, st.Layout, o.layout)
	}
	return &Device{dir: dir, layout: st.Layout, regs: st.Layout.Registers(), now: o.now}, nil
}

// loadOrCreate reads the state under a shared lock, or creates it under the
// exclusive lock when it is missing.
func loadOrCreate(ctx context.Context, dir string, l Layout) (*State, error) {
	lockPath := filepath.Join(dir, lockFile)
	lk, err := openLock(ctx, lockPath, flock.Shared)
	if err != nil {
		return nil, err
	}
	st, err := readState(dir)
	lk.Close()
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return st, err
	}
	lk, err = openLock(ctx, lockPath, flock.Exclusive)
	if err != nil {
		return nil, err
	}
	defer lk.Close()
	st, err = readState(dir)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return st, err
	}
	if l == "" {
		l = LayoutTDX
	}
	st = newState(l)
	if _, err := writeState(dir, st); err != nil {
		return nil, err
	}
	return st, nil
}

// Dir returns the state folder.
func (d *Device) Dir() string { return d.dir }

// Layout returns the device's layout.
func (d *Device) Layout() Layout { return d.layout }

// Kind returns "sim".
func (d *Device) Kind() string { return Kind }

// Close releases nothing (the device holds no open files between calls) and
// returns nil.
func (d *Device) Close() error {
	d.lockMu.Lock()
	if d.lockF != nil {
		d.lockF.Close()
		d.lockF = nil
	}
	d.lockMu.Unlock()
	d.cacheMu.Lock()
	defer d.cacheMu.Unlock()
	if d.stateF != nil {
		err := d.stateF.Close()
		d.stateF = nil
		return err
	}
	return nil
}

// Registers lists the registers of the device's layout.
func (d *Device) Registers(ctx context.Context) ([]mr.Register, error) {
	return append([]mr.Register(nil), d.regs...), nil
}

// State reads the whole state (layout, update counter, every value) under a
// shared lock.
func (d *Device) State(ctx context.Context) (*State, error) {
	release, err := d.lock(ctx, flock.Shared)
	if err != nil {
		return nil, err
	}
	defer release()
	st, err := d.readState()
	if err != nil {
		return nil, err
	}
	if st.Layout != d.layout {
		return nil, fmt.Errorf("%w: %s now holds layout %s, the device was opened as %s", ErrLayout, d.dir, st.Layout, d.layout)
	}
	return st, nil
}

// Read returns the values of the named registers, every bank of each name on
// the TPM layout (sha1, sha256, sha384), in the order asked; with no names it
// returns every register in layout order.
func (d *Device) Read(ctx context.Context, names ...string) ([]mr.Value, error) {
	for _, n := range names {
		if err := d.known(n); err != nil {
			return nil, err
		}
	}
	st, err := d.State(ctx)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return st.Values, nil
	}
	var out []mr.Value
	for _, n := range names {
		for _, v := range st.Values {
			if v.Register.Name == n {
				out = append(out, v)
			}
		}
	}
	return out, nil
}

// known fails with mr.ErrUnknownRegister unless the layout has a register name.
func (d *Device) known(name string) error {
	for _, r := range d.regs {
		if r.Name == name {
			return nil
		}
	}
	var hint string
	if d.layout == LayoutTDX {
		hint = "mrtd, rtmr0..rtmr3, mrconfigid, mrowner, mrownerconfig"
	} else {
		hint = "pcr0..pcr23"
	}
	return fmt.Errorf("%w: %q (the sim device's %s layout has %s)", mr.ErrUnknownRegister, name, d.layout, hint)
}

// target finds the register an extend of name with a digest of alg goes to,
// or the error saying why there is none.
func (d *Device) target(name string, alg mr.Alg) (int, error) {
	if err := d.known(name); err != nil {
		return -1, err
	}
	var banks []string
	for i, r := range d.regs {
		if r.Name != name {
			continue
		}
		if r.Flags&mr.Extendable == 0 {
			ext := strings.Join(extendableNames(d.regs), ", ")
			if d.layout == LayoutTPM {
				ext = "pcr0..pcr16, pcr23"
			}
			return -1, fmt.Errorf("%w: %s is read-only (extendable on the sim device's %s layout: %s)",
				mr.ErrNotExtendable, name, d.layout, ext)
		}
		if r.Alg == alg {
			return i, nil
		}
		banks = append(banks, r.Alg.String())
	}
	if len(banks) == 1 {
		r := d.regs[d.index(name)]
		return -1, fmt.Errorf("%w: %s takes a %v digest of %d bytes, got a %v digest", mr.ErrDigestSize, name, r.Alg, r.Size, alg)
	}
	return -1, fmt.Errorf("%w: %s has no %v bank (banks: %s)", mr.ErrUnknownRegister, name, alg, strings.Join(banks, ", "))
}

func (d *Device) index(name string) int {
	for i, r := range d.regs {
		if r.Name == name {
			return i
		}
	}
	return -1
}

// Extend extends register name with dg: new = H(old || dg). On the TPM
// layout dg.Alg selects the bank. Errors wrap mr.ErrUnknownRegister
// (no such register or bank), mr.ErrNotExtendable (mrtd, mrconfigid, ...,
// pcr17..22) or mr.ErrDigestSize; then the state is not touched.
func (d *Device) Extend(ctx context.Context, name string, dg mr.Digest) error {
	_, err := d.extend(ctx, name, dg)
	return err
}

// extend is Extend, returning the update counter of the state it wrote.
func (d *Device) extend(ctx context.Context, name string, dg mr.Digest) (uint64, error) {
	i, err := d.target(name, dg.Alg)
	if err != nil {
		return 0, err
	}
	if r := d.regs[i]; len(dg.Bytes) != r.Size {
		return 0, fmt.Errorf("%w: %s (%v) takes %d-byte digests, got %d bytes", mr.ErrDigestSize, name, r.Alg, r.Size, len(dg.Bytes))
	}
	return d.update(ctx, func(st *State) error {
		v, err := mr.Extend(st.Values[i].Digest, dg.Bytes)
		if err != nil {
			return fmt.Errorf("sim: %s: %w", name, err)
		}
		st.Values[i].Digest = v
		return nil
	})
}

// ExtendMany extends register name with each digest of ds in order, in one
// locked update (mr.MultiExtender): all or none are applied.
func (d *Device) ExtendMany(ctx context.Context, name string, ds []mr.Digest) error {
	idx := make([]int, len(ds))
	for k, dg := range ds {
		i, err := d.target(name, dg.Alg)
		if err != nil {
			return err
		}
		if r := d.regs[i]; len(dg.Bytes) != r.Size {
			return fmt.Errorf("%w: %s (%v) takes %d-byte digests, got %d bytes", mr.ErrDigestSize, name, r.Alg, r.Size, len(dg.Bytes))
		}
		idx[k] = i
	}
	_, err := d.update(ctx, func(st *State) error {
		for k, i := range idx {
			v, err := mr.Extend(st.Values[i].Digest, ds[k].Bytes)
			if err != nil {
				return fmt.Errorf("sim: %s: %w", name, err)
			}
			st.Values[i].Digest = v
		}
		return nil
	})
	return err
}

// ExtendData extends every bank of register name with that bank's hash of
// data, in one locked update.
func (d *Device) ExtendData(ctx context.Context, name string, data []byte) error {
	if err := d.known(name); err != nil {
		return err
	}
	var idx []int
	var ds [][]byte
	for i, r := range d.regs {
		if r.Name != name {
			continue
		}
		if _, err := d.target(name, r.Alg); err != nil {
			return err
		}
		idx = append(idx, i)
		ds = append(ds, r.Alg.Sum(data).Bytes)
	}
	_, err := d.update(ctx, func(st *State) error {
		for k, i := range idx {
			v, err := mr.Extend(st.Values[i].Digest, ds[k])
			if err != nil {
				return fmt.Errorf("sim: %s: %w", name, err)
			}
			st.Values[i].Digest = v
		}
		return nil
	})
	return err
}

// update applies fn to the state under the exclusive lock and writes the
// result atomically, returning the new update counter. When fn fails nothing
// is written.
func (d *Device) update(ctx context.Context, fn func(*State) error) (uint64, error) {
	release, err := d.lock(ctx, flock.Exclusive)
	if err != nil {
		return 0, err
	}
	defer release()
	st, err := d.readState()
	if err != nil {
		return 0, err
	}
	if st.Layout != d.layout {
		return 0, fmt.Errorf("%w: %s now holds layout %s, the device was opened as %s", ErrLayout, d.dir, st.Layout, d.layout)
	}
	if err := fn(st); err != nil {
		return 0, err
	}
	st.Seq++
	raw, err := d.writeState(st)
	if err != nil {
		return 0, err
	}
	d.remember(raw, st)
	return st.Seq, nil
}
