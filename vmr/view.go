package vmr

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/ccmr-dev/ccmr/log"
	"github.com/ccmr-dev/ccmr/log/runtime"
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
	virt       map[string]mr.Digest
	count      map[string]int
	// snap holds the values the segment's snapshot record set.
	snap map[string]mr.Digest
	// onValue, when set, sees the register value after each entry.
	onValue func(records int, value mr.Digest)
}

func (v *view) reset(backing mr.Register) {
	*v = view{
		backing: backing,
		value:   mr.Zero(backing.Alg),
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

// replay reads the entries in r, which start at byte v.off of the log.
func (v *view) replay(r io.Reader, file string) error {
	rd := runtime.NewReader(r, runtime.Options{File: file})
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			var le *log.Error
			if errors.As(err, &le) {
				// The reader counts from the start of r; name the place
				// in the whole file.
				le.Offset += v.off
				le.Record += v.entries
			}
			return err
		}
		if err := v.apply(e, file); err != nil {
			return err
		}
	}
}

func (v *view) apply(e *runtime.Entry, file string) error {
	at := v.off
	bad := func(format string, a ...any) error {
		return &log.Error{File: file, Record: v.entries, Offset: at, Err: fmt.Errorf("%w: "+format, append([]any{mr.ErrMalformed}, a...)...)}
	}
	if e.MRIndex != uint32(v.backing.Index) && v.backing.Index >= 0 {
		return bad("entry for MR index %d in the log of %s (index %d)", e.MRIndex, v.backing.Name, v.backing.Index)
	}
	if e.Digest.Alg != v.backing.Alg {
		return bad("%v entry in the log of %s (%v)", e.Digest.Alg, v.backing.Name, v.backing.Alg)
	}
	switch {
	case !e.Init.IsZero():
		if v.entries != 0 {
			return bad("INIT entry after the first entry")
		}
		if e.Init.Alg != v.backing.Alg {
			return bad("INIT value is %v, the register is %v", e.Init.Alg, v.backing.Alg)
		}
		v.value = mr.Digest{Alg: e.Init.Alg, Bytes: append([]byte(nil), e.Init.Bytes...)}
	case e.Extended:
		want, err := runtime.EventDigest(v.backing.Alg, e.Record)
		if err != nil {
			return bad("%v", err)
		}
		if !want.Equal(e.Digest) {
			return &log.Mismatch{File: file, Register: v.backing.Name, Record: v.entries, Offset: at,
				Expected: want, Computed: e.Digest, Reason: "entry digest is not the hash of its event"}
		}
		if err := v.checkAlg(e.Record); err != nil {
			return bad("%v", err)
		}
		v.applyVirtual(e.Record)
		next, err := mr.Extend(v.value, e.Digest.Bytes)
		if err != nil {
			return bad("%v", err)
		}
		v.prev, v.value = v.value, next
		v.lastDigest = mr.Digest{Alg: e.Digest.Alg, Bytes: append([]byte(nil), e.Digest.Bytes...)}
		v.records++
		if v.onValue != nil {
			v.onValue(v.records, v.value)
		}
	default:
		return bad("unexpected entry type 0x%x", e.Type)
	}
	v.entries++
	v.off += e.Size
	return nil
}

// applyOwn folds in a record this Store just wrote (its digest computed by
// runtime.AppendEntry, its entry size bytes), without reading it back.
func (v *view) applyOwn(rec runtime.Record, d mr.Digest, size int64) error {
	v.applyVirtual(rec)
	next, err := mr.Extend(v.value, d.Bytes)
	if err != nil {
		return err
	}
	v.prev, v.value = v.value, next
	v.lastDigest = d
	v.records++
	v.entries++
	v.off += size
	return nil
}

// checkAlg refuses a record whose algorithm differs from the earlier records
// of the same virtual register.
func (v *view) checkAlg(rec runtime.Record) error {
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

// applyVirtual folds a virtual record (or a snapshot) into the virtual values
// and returns the register's new value (zero for other records).
func (v *view) applyVirtual(rec runtime.Record) mr.Digest {
	if rec.Domain == "ccmr" && rec.Operation == "snapshot" {
		vals, err := runtime.ParseSnapshot(rec.Content)
		if err == nil {
			for _, s := range vals {
				v.virt[s.Name] = s.Value
				v.snap[s.Name] = s.Value
			}
		}
		return mr.Digest{}
	}
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
func newRecord(name string, d mr.Digest) (runtime.Record, error) {
	if !mr.IsVirtualName(name) {
		return runtime.Record{}, fmt.Errorf("vmr: %w: virtual register name %q: want mr_ followed by 1 to 60 of [a-z0-9_.-]", mr.ErrUnknownRegister, name)
	}
	if _, err := mr.NewDigest(d.Alg, d.Bytes); err != nil {
		return runtime.Record{}, fmt.Errorf("vmr: %s: %w", name, err)
	}
	return runtime.ExtendRecord(name, d)
}

// encodeRecord appends rec's entry for the backing register and returns
// the digest to extend.
func encodeRecord(dst []byte, backing mr.Register, rec runtime.Record) ([]byte, mr.Digest, error) {
	return runtime.AppendEntry(dst, uint32(max(backing.Index, 0)), backing.Alg, rec)
}

// encodeInit is the INIT entry of a log that starts on a register already
// holding start.
func encodeInit(backing mr.Register, start mr.Digest) ([]byte, error) {
	return runtime.AppendInit(nil, uint32(max(backing.Index, 0)), start)
}

// entriesSize is the byte length of the first n entries in buf.
func entriesSize(buf []byte, n int) (int64, error) {
	rd := runtime.NewReader(bytes.NewReader(buf), runtime.Options{})
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
