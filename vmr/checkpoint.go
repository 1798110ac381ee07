package vmr

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/internal/safefs"
	"github.com/ccmr-dev/ccmr/internal/strictjson"
	"github.com/ccmr-dev/ccmr/mr"
)

// The checkpoint (DIR/REGISTER.ckpt, beside DIR/REGISTER.log) is where a
// Store's replay of the log stood: the log's size, the backing register's
// value after the log's last extended entry and before it, and every
// virtual register's value and record count. Open starts from it and
// replays only what was appended since, so that opening the store costs
// the same after a million records as on a fresh log.
//
// It is used only when it is bound to the log and the register as they are
// now: the log is at least as long; the SHA-256 of its first and of its
// last ckptWindow bytes up to the checkpoint's size are those recorded; the
// bytes from the recorded last-entry offset to the size are exactly one
// extended entry whose digest is H(event) and extends the recorded previous
// value to the recorded value; and after replaying what follows, the
// register holds the replay's value. The register value is a hash chain
// over every digest ever extended into it, and each digest is H(event) of
// a log entry, so when the log replays to the register (which a verifier
// checks against the quote), the entries up to the checkpoint are the ones
// whose fold the checkpoint recorded: a stale checkpoint, one of another
// log of the same size, one of a log truncated and regrown, or one taken
// before someone else extended the register, fails one of the checks and
// the log is replayed from its start (and the checkpoint rewritten).
//
// What a checkpoint cannot tell, in O(1), is an edit of the log's middle
// by whoever can write the log folder (root: the folder is checked to be
// the owner's alone). That is what a full replay against the quote finds;
// Verify and Cut replay the log from its start, and a Store whose view
// came from a checkpoint never lets it decide a write that a full replay
// would not make: it cuts no partial entry off the log, rolls forward no
// record it did not read from the log itself, and snapshots nothing (Cut
// replays first); on any disagreement it replays the log from its start.
//
// The checkpoint is written atomically (a temporary file renamed over it,
// never following a link) and without fsync, under the log's lock, only
// when the view was compared equal with the register: a torn or lost one
// costs one full replay, nothing else.

// ckptWindow is how many bytes at the log's start and before the
// checkpoint's end are hashed into it.
const ckptWindow = 4096

// ckptMaxSize bounds the checkpoint file a Store reads.
const ckptMaxSize = 16 << 20

// ckptEvery is how much a Store's log may grow before it writes the
// checkpoint again while running; ckptLag is how much on Open (after a
// replay) and on Close. Below ckptLag a replay costs less than a rename
// (about a millisecond), so a short-lived Store (one CLI extend) writes a
// checkpoint only every ckptLag bytes of log, and an Open replays at most
// ckptLag bytes plus what others appended since they last wrote one.
var (
	ckptEvery int64 = 256 << 10
	ckptLag   int64 = 32 << 10
)

// errCheckpoint marks a checkpoint that is not used (the log is replayed
// from its start instead).
var errCheckpoint = errors.New("checkpoint not used")

const ckptVersion = 1

// checkpoint is the file's JSON.
type checkpoint struct {
	Version    int            `json:"version"`
	Backing    string         `json:"backing"`
	Index      int            `json:"index"`
	Size       int64          `json:"size"`
	Entries    int            `json:"entries"`
	Records    int            `json:"records"`
	LastOffset int64          `json:"last_offset"`
	Value      string         `json:"value"`
	Previous   string         `json:"previous"`
	Head       string         `json:"head_sha256"`
	Tail       string         `json:"tail_sha256"`
	Virtual    []ckptRegister `json:"virtual"`
	Snapshot   []ckptRegister `json:"snapshot"`
}

type ckptRegister struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Count int    `json:"count,omitempty"`
}

func (s *Store) checkpointPath() string {
	return strings.TrimSuffix(s.path, ".log") + ".ckpt"
}

// parseCheckpoint decodes and checks a checkpoint of backing, without the
// log: the view it gives, and the head and tail hashes to compare.
func parseCheckpoint(b []byte, backing mr.Register) (*view, checkpoint, error) {
	var c checkpoint
	if err := strictjson.Decode(b, &c); err != nil {
		return nil, c, err
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{mr.ErrMalformed}, a...)...)
	}
	if c.Version != ckptVersion {
		return nil, c, bad("version %d, want %d", c.Version, ckptVersion)
	}
	if c.Backing != backing.Name || c.Index != backing.Index {
		return nil, c, bad("of register %s (index %d), not %s (index %d)", c.Backing, c.Index, backing.Name, backing.Index)
	}
	if c.Records < 1 || c.Entries < c.Records || c.LastOffset < 0 || c.Size <= c.LastOffset {
		return nil, c, bad("size %d, %d entries, %d records, last entry at %d", c.Size, c.Entries, c.Records, c.LastOffset)
	}
	digest := func(what, s string, alg mr.Alg) (mr.Digest, error) {
		d, err := mr.ParseDigest(s)
		if err != nil {
			return d, bad("%s: %v", what, err)
		}
		if alg != 0 && d.Alg != alg {
			return d, bad("%s is %v, want %v", what, d.Alg, alg)
		}
		return d, nil
	}
	v := &view{}
	v.reset(backing)
	var err error
	if v.value, err = digest("value", c.Value, backing.Alg); err != nil {
		return nil, c, err
	}
	if v.prev, err = digest("previous", c.Previous, backing.Alg); err != nil {
		return nil, c, err
	}
	for _, h := range []string{c.Head, c.Tail} {
		if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size {
			return nil, c, bad("window hash %q", h)
		}
	}
	for _, r := range c.Virtual {
		if !mr.IsVirtualName(r.Name) || r.Count < 0 {
			return nil, c, bad("virtual register %q (count %d)", r.Name, r.Count)
		}
		if _, dup := v.virt[r.Name]; dup {
			return nil, c, bad("virtual register %s twice", r.Name)
		}
		if v.virt[r.Name], err = digest(r.Name, r.Value, 0); err != nil {
			return nil, c, err
		}
		if r.Count > 0 {
			v.count[r.Name] = r.Count
		}
	}
	for _, r := range c.Snapshot {
		if !mr.IsVirtualName(r.Name) || r.Count != 0 {
			return nil, c, bad("snapshot register %q", r.Name)
		}
		if _, dup := v.snap[r.Name]; dup {
			return nil, c, bad("snapshot register %s twice", r.Name)
		}
		if v.snap[r.Name], err = digest(r.Name, r.Value, 0); err != nil {
			return nil, c, err
		}
	}
	v.off, v.entries, v.records, v.lastOff = c.Size, c.Entries, c.Records, c.LastOffset
	return v, c, nil
}

// windowHash is the SHA-256 of the log's bytes [from, to).
func (s *Store) windowHash(from, to int64) (string, error) {
	h := sha256.New()
	n, err := io.Copy(h, io.NewSectionReader(s.f, from, to-from))
	if err != nil {
		return "", err
	}
	if n != to-from {
		return "", io.ErrUnexpectedEOF
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func windows(size int64) (head, tail [2]int64) {
	return [2]int64{0, min(size, ckptWindow)}, [2]int64{max(0, size-ckptWindow), size}
}

// loadCheckpoint seeds the view from the checkpoint when it is bound to the
// log as the file comment says; the register is compared by sync. Called
// with the lock held, on a view at the log's start.
func (s *Store) loadCheckpoint() error {
	f, err := safefs.Open(s.checkpointPath())
	if err != nil {
		return fmt.Errorf("%w: %w", errCheckpoint, err)
	}
	b, err := io.ReadAll(io.LimitReader(f, ckptMaxSize+1))
	f.Close()
	if err != nil {
		return fmt.Errorf("%w: %w", errCheckpoint, err)
	}
	if len(b) > ckptMaxSize {
		return fmt.Errorf("%w: larger than %d bytes", errCheckpoint, ckptMaxSize)
	}
	v, c, err := parseCheckpoint(b, s.backing)
	if err != nil {
		return fmt.Errorf("%w: %w", errCheckpoint, err)
	}
	if c.Size > s.lockedSize {
		return fmt.Errorf("%w: for %d bytes, the log has %d", errCheckpoint, c.Size, s.lockedSize)
	}
	head, tail := windows(c.Size)
	for _, w := range []struct {
		r    [2]int64
		want string
	}{{head, c.Head}, {tail, c.Tail}} {
		got, err := s.windowHash(w.r[0], w.r[1])
		if err != nil || got != w.want {
			return fmt.Errorf("%w: bytes %d to %d of the log differ", errCheckpoint, w.r[0], w.r[1])
		}
	}
	// The last entry is read and hashed here: it binds the recorded
	// values to the log (value = H(previous || H(event))).
	rd := aael.NewReader(io.NewSectionReader(s.f, c.LastOffset, c.Size-c.LastOffset),
		aael.Options{File: s.path, Continue: true, Alg: s.backing.Alg, MRIndex: uint32(max(s.backing.Index, 0))})
	e, err := rd.Next()
	if err != nil || !e.Extended || e.Foreign || e.Size != c.Size-c.LastOffset {
		return fmt.Errorf("%w: no single entry at byte %d (%v)", errCheckpoint, c.LastOffset, err)
	}
	h := s.backing.Alg.New()
	h.Write(e.Event)
	if !bytes.Equal(h.Sum(nil), e.Digest.Bytes) {
		return fmt.Errorf("%w: the entry at byte %d has a digest that is not H(event)", errCheckpoint, c.LastOffset)
	}
	if next, err := mr.Extend(v.prev, e.Digest.Bytes); err != nil || !next.Equal(v.value) {
		return fmt.Errorf("%w: the entry at byte %d does not extend %v to %v", errCheckpoint, c.LastOffset, v.prev, v.value)
	}
	v.lastDigest = mr.Digest{Alg: e.Digest.Alg, Bytes: append([]byte(nil), e.Digest.Bytes...)}
	s.view = *v
	s.seeded, s.seedRecords = true, v.records
	s.ckptOff = c.Size
	return nil
}

// saveCheckpoint writes the checkpoint of the view when the register was
// last seen holding (or extended by this Store to) the view's value and
// the log grew by at least lag (and by something) since the last one.
// Called with the lock held. A failure is not reported: without the
// checkpoint, the next Open replays the whole log, which is slower and as
// sound.
func (s *Store) saveCheckpoint(lag int64) {
	v := &s.view
	if !s.agreed || v.records == 0 || v.off <= s.ckptOff || v.off-s.ckptOff < lag {
		return
	}
	c := checkpoint{Version: ckptVersion, Backing: s.backing.Name, Index: s.backing.Index,
		Size: v.off, Entries: v.entries, Records: v.records, LastOffset: v.lastOff,
		Value: v.value.String(), Previous: v.prev.String(),
		Virtual: []ckptRegister{}, Snapshot: []ckptRegister{}}
	head, tail := windows(v.off)
	var err error
	if c.Head, err = s.windowHash(head[0], head[1]); err != nil {
		return
	}
	if c.Tail, err = s.windowHash(tail[0], tail[1]); err != nil {
		return
	}
	for _, n := range sortedKeys(v.virt) {
		c.Virtual = append(c.Virtual, ckptRegister{Name: n, Value: v.virt[n].String(), Count: v.count[n]})
	}
	for _, n := range sortedKeys(v.snap) {
		c.Snapshot = append(c.Snapshot, ckptRegister{Name: n, Value: v.snap[n].String()})
	}
	b, err := json.Marshal(c)
	if err != nil {
		return
	}
	p := s.checkpointPath()
	if err := safefs.WriteFile(p, p+".tmp", 0o600, false, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	}); err != nil {
		return
	}
	s.ckptOff = v.off
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Verify replays the whole log from its start, compares the replay with the
// backing register, and checks that the values this Store held (which may
// have come from the checkpoint) are the replay's. A checkpoint that
// disagrees is an error wrapping ErrInconsistent (someone wrote the log
// folder); the Store then holds the replay's values and the checkpoint is
// rewritten from them.
func (s *Store) Verify(ctx context.Context) error {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	return s.locked(ctx, func() error {
		if err := s.syncLog(ctx); err != nil {
			return err
		}
		held := s.view.clone()
		if err := s.replayAll(ctx); err != nil {
			return err
		}
		if diff := viewDiff(held, &s.view); diff != "" {
			s.ckptOff = 0
			s.saveCheckpoint(0)
			return fmt.Errorf("vmr: the checkpoint of %s disagrees with a replay of the log from its start: %s: %w", s.path, diff, ErrInconsistent)
		}
		return nil
	})
}

// viewDiff names the first difference between two views of one log.
func viewDiff(a, b *view) string {
	switch {
	case a.off != b.off || a.entries != b.entries || a.records != b.records:
		return fmt.Sprintf("%d bytes, %d entries, %d records, replay %d, %d, %d", a.off, a.entries, a.records, b.off, b.entries, b.records)
	case !a.value.Equal(b.value):
		return fmt.Sprintf("%s = %v, replay %v", a.backing.Name, a.value, b.value)
	case len(a.virt) != len(b.virt) || len(a.snap) != len(b.snap):
		return fmt.Sprintf("%d virtual registers (%d snapshot), replay %d (%d)", len(a.virt), len(a.snap), len(b.virt), len(b.snap))
	}
	for _, n := range sortedKeys(b.virt) {
		if !a.virt[n].Equal(b.virt[n]) || a.count[n] != b.count[n] {
			return fmt.Sprintf("%s = %v after %d records, replay %v after %d", n, a.virt[n], a.count[n], b.virt[n], b.count[n])
		}
	}
	for _, n := range sortedKeys(b.snap) {
		if !a.snap[n].Equal(b.snap[n]) {
			return fmt.Sprintf("snapshot of %s = %v, replay %v", n, a.snap[n], b.snap[n])
		}
	}
	return ""
}
