package vmr

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/mr"
)

// view is what a Store knows of its log: how far it has replayed it, the
// register value that replay gives, and the virtual register values.
type view struct {
	backing    mr.Register
	off        int64
	records    int // extended records
	entries    int // entries, INIT included
	value      mr.Digest
	prev       mr.Digest // value before the last extended record
	lastDigest mr.Digest
	lastOff    int64 // where the last extended entry starts
	virt       map[string]mr.Digest
	count      map[string]int
	// snap holds the values the segment's snapshot record set.
	snap map[string]mr.Digest
}

func (v *view) reset(backing mr.Register) {
	*v = view{
		backing: backing,
		value:   mr.ResetValue(backing.Name, backing.Alg),
		virt:    map[string]mr.Digest{},
		count:   map[string]int{},
		snap:    map[string]mr.Digest{},
	}
}

// clone copies the parts a batch changes, for trying records before writing.
func (v *view) clone() *view {
	c := *v
	c.virt = make(map[string]mr.Digest, len(v.virt))
	for k, d := range v.virt {
		c.virt[k] = d
	}
	c.count = make(map[string]int, len(v.count))
	for k, n := range v.count {
		c.count[k] = n
	}
	return &c
}

// replay reads the entries in r, which start at byte v.off of the log, with
// the runtime log's own replay (aael.Replay), resumed where the view
// stands. On a truncated last entry the complete ones before it are kept, so
// that the caller can cut the partial one off.
func (v *view) replay(r io.Reader, file string) error {
	base, baseOff := v.entries, v.off
	opt := aael.ReplayOptions{File: file, Backing: v.backing.Name, Name: func(uint32) string { return v.backing.Name }}
	if v.entries > 0 {
		res := &aael.Resume{Backing: v.value, Counts: map[string]int{}}
		for n, d := range v.virt {
			res.Virtual = append(res.Virtual, mr.Value{Register: mr.Register{Name: n, Alg: d.Alg}, Digest: d})
			res.Counts[n] = v.count[n]
		}
		opt.Resume = res
	}
	extended := 0
	var last mr.Digest
	var lastOff int64
	opt.OnEntry = func(e *aael.Entry) error {
		bad := func(format string, a ...any) error {
			return &eventlog.Error{File: file, Record: e.Index, Offset: e.Offset, Err: fmt.Errorf("%w: "+format, append([]any{mr.ErrMalformed}, a...)...)}
		}
		if v.backing.Index >= 0 && e.MRIndex != uint32(v.backing.Index) {
			return bad("entry for MR index %d in the log of %s (index %d)", e.MRIndex, v.backing.Name, v.backing.Index)
		}
		if e.Digest.Alg != v.backing.Alg {
			return bad("%v entry in the log of %s (%v)", e.Digest.Alg, v.backing.Name, v.backing.Alg)
		}
		if e.Extended {
			extended++
			last = mr.Digest{Alg: e.Digest.Alg, Bytes: append([]byte(nil), e.Digest.Bytes...)}
			lastOff = baseOff + e.Offset
		}
		return nil
	}
	res, err := aael.Replay(aael.NewReader(r, aael.Options{File: file}), opt)
	if err != nil {
		// The reader counts from the start of r; name the place in the
		// whole file.
		var le *eventlog.Error
		var mm *eventlog.Mismatch
		if errors.As(err, &le) {
			le.Offset += baseOff
			le.Record += base
		} else if errors.As(err, &mm) {
			mm.Offset += baseOff
			mm.Record += base
		}
		if !errors.Is(err, aael.ErrTruncated) {
			return err
		}
	}
	if res != nil {
		if val, ok := res.Value(v.backing.Name); ok {
			v.value = val
		}
		if extended > 0 {
			v.prev, v.lastDigest, v.lastOff = res.Previous, last, lastOff
		}
		for _, x := range res.Virtual {
			v.virt[x.Register.Name] = x.Digest
		}
		for n, c := range res.Counts {
			v.count[n] = c
		}
		for _, sn := range res.Snapshot {
			v.snap[sn.Name] = sn.Value
		}
		v.records += extended
		v.entries += res.Events
		v.off += res.End
	}
	return err
}

// applyOwn folds in a record this Store just wrote (its digest computed by
// aael.AppendEntry, its entry size bytes), without reading it back.
func (v *view) applyOwn(rec aael.Record, d mr.Digest, size int64) error {
	v.applyVirtual(rec)
	next, err := mr.Extend(v.value, d.Bytes)
	if err != nil {
		return err
	}
	v.prev, v.value = v.value, next
	v.lastDigest, v.lastOff = d, v.off
	v.records++
	v.entries++
	v.off += size
	return nil
}

// checkAlg refuses a record whose algorithm differs from the earlier records
// of the same virtual register.
func (v *view) checkAlg(rec aael.Record) error {
	if !rec.IsVirtual() {
		return nil
	}
	name, d, err := rec.Virtual()
	if err != nil {
		return err
	}
	if cur, ok := v.virt[name]; ok && cur.Alg != d.Alg {
		return fmt.Errorf("%w: %s holds %v records; %v given", mr.ErrDigestSize, name, cur.Alg, d.Alg)
	}
	return nil
}

// applyVirtual folds a virtual record this Store writes into the virtual
// values and returns the register's new value (zero for other records).
// Records read back from the log go through aael.Replay instead.
func (v *view) applyVirtual(rec aael.Record) mr.Digest {
	if !rec.IsVirtual() {
		return mr.Digest{}
	}
	name, d, err := rec.Virtual()
	if err != nil {
		return mr.Digest{}
	}
	cur, ok := v.virt[name]
	if !ok {
		cur = mr.Zero(d.Alg)
	}
	next, err := mr.Extend(cur, d.Bytes)
	if err != nil {
		return mr.Digest{}
	}
	v.virt[name] = next
	v.count[name]++
	return next
}

// newRecord validates a virtual extend and builds its record.
func newRecord(name string, d mr.Digest) (aael.Record, error) {
	if !mr.IsVirtualName(name) {
		return aael.Record{}, fmt.Errorf("vmr: %w: virtual register name %q: want mr_ followed by 1 to 60 of [a-z0-9_.-]", mr.ErrUnknownRegister, name)
	}
	if _, err := mr.NewDigest(d.Alg, d.Bytes); err != nil {
		return aael.Record{}, fmt.Errorf("vmr: %s: %w", name, err)
	}
	return aael.ExtendRecord(name, d)
}

// encodeRecord appends rec's entry for the backing register and returns
// the digest to extend.
func encodeRecord(dst []byte, backing mr.Register, rec aael.Record) ([]byte, mr.Digest, error) {
	return aael.AppendEntry(dst, uint32(max(backing.Index, 0)), backing.Alg, rec)
}

// encodeInit is the INIT entry of a log that starts on a register already
// holding start.
func encodeInit(backing mr.Register, start mr.Digest) ([]byte, error) {
	return aael.AppendInit(nil, uint32(max(backing.Index, 0)), start)
}

// entriesSize is the byte length of the first n entries in buf.
func entriesSize(buf []byte, n int) (int64, error) {
	rd := aael.NewReader(bytes.NewReader(buf), aael.Options{})
	var size int64
	for i := 0; i < n; i++ {
		e, err := rd.Next()
		if err != nil {
			return 0, err
		}
		size += e.Size
	}
	return size, nil
}
