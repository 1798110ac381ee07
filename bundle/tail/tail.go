// Package tail cuts a bundle's logs to what a verifier has not yet seen.
// A monitor state (verifier.MonitorState) writes how far it verified one
// machine's logs as a since file (ccmr-since/v1); the guest reads it back
// (ParseSince) and sends only the logs' tails from there on (Logs). It sits
// beside the bundle types and imports only the log readers, so a guest that
// quotes with --since does not link the verifier.
package tail

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/internal/strictjson"
	"github.com/ccmr-dev/ccmr/mr"
)

// SinceFormat is the "format" member of a since file: how far a monitor
// state verified one machine's logs, what a guest needs to send only what
// is new (Logs).
const SinceFormat = "ccmr-since/v1"

// MaxSinceFile bounds a since file: it names a few registers and offsets.
const MaxSinceFile = 1 << 20

// Since is how far a monitor state verified one machine's logs. It holds no
// secret and proves nothing: a guest that lies in it sends tails the
// verifier refuses (or whole logs it verifies in full).
type Since struct {
	Format  string         `json:"format"`
	Machine string         `json:"machine"`
	Runtime []SinceRuntime `json:"runtime,omitempty"`
	IMA     *SinceIMA      `json:"ima,omitempty"`
}

// SinceRuntime is how far the runtime log of one backing register was
// verified: Offset bytes of the segment that starts at SegmentInit (zero:
// the log's first segment, which has no INIT), up to the register value
// Value (a segment cut at that point starts at it).
type SinceRuntime struct {
	Register    string    `json:"register"`
	SegmentInit mr.Digest `json:"segment_init"`
	Offset      int64     `json:"offset"`
	Value       mr.Digest `json:"value"`
}

// SinceIMA is how far the IMA list was verified.
type SinceIMA struct {
	Offset int64 `json:"offset"`
}

// Marshal encodes s as a since file (ParseSince reads it back).
func (s *Since) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParseSince decodes a since file strictly (one object of the format, no
// unknown member, no negative offset).
func ParseSince(b []byte) (*Since, error) {
	if len(b) > MaxSinceFile {
		return nil, fmt.Errorf("%w: since file: %d bytes, at most %d", mr.ErrMalformed, len(b), MaxSinceFile)
	}
	var s Since
	if err := strictjson.Decode(b, &s); err != nil {
		return nil, fmt.Errorf("%w: since file: %v", mr.ErrMalformed, err)
	}
	if s.Format != SinceFormat {
		return nil, fmt.Errorf("%w: since file: format %q, want %q", mr.ErrMalformed, s.Format, SinceFormat)
	}
	seen := map[string]bool{}
	for _, r := range s.Runtime {
		if r.Register == "" || seen[r.Register] || r.Offset < 0 {
			return nil, fmt.Errorf("%w: since file: a runtime entry names no register, repeats one, or has a negative offset", mr.ErrMalformed)
		}
		seen[r.Register] = true
	}
	if s.IMA != nil && s.IMA.Offset < 0 {
		return nil, fmt.Errorf("%w: since file: negative IMA offset", mr.ErrMalformed)
	}
	return &s, nil
}

// Logs returns the logs a bundle needs to carry for a verifier whose
// monitor state verified them as far as s says: for each runtime log named
// in s, the segments before the one s stopped in are left out, that one is
// cut to its tail from s's offset (bundle.Log.Offset), and the later ones
// are whole; when no segment starts as s's did, the chain starts at the
// first segment that starts (INIT) at s's value, else it is whole. The IMA
// list is cut to its tail from s's offset when it is that long. Every other
// log is kept whole. It reads nothing but the first entry of each runtime
// segment, and a tail of an attached log stays attached (no copy). A nil s
// returns logs as they are.
func Logs(logs []bundle.Log, s *Since) ([]bundle.Log, error) {
	if s == nil {
		return logs, nil
	}
	points := map[string]SinceRuntime{}
	for _, p := range s.Runtime {
		points[p.Register] = p
	}
	chains := map[string][]int{}
	for i := range logs {
		lg := &logs[i]
		if lg.Offset != 0 {
			return nil, fmt.Errorf("logs[%d] is already a tail (offset %d)", i, lg.Offset)
		}
		if IsRuntime(lg) {
			chains[lg.Register] = append(chains[lg.Register], i)
		}
	}
	// drop[i] leaves log i out; cut[i] is where its tail starts.
	drop, cut := map[int]bool{}, map[int]int64{}
	for reg, idx := range chains {
		p, ok := points[reg]
		if !ok {
			continue
		}
		k := -1
		for j, i := range idx {
			init := InitOf(&logs[i], reg)
			if (init.Equal(p.SegmentInit) || init.IsZero() && p.SegmentInit.IsZero()) && logs[i].Size() >= p.Offset {
				k = j
				cut[i] = p.Offset
				break
			}
		}
		if k < 0 {
			for j, i := range idx {
				if InitOf(&logs[i], reg).Equal(p.Value) {
					k = j
					break
				}
			}
		}
		for _, i := range idx[:max(k, 0)] {
			drop[i] = true
		}
	}
	for i := range logs {
		lg := &logs[i]
		if s.IMA != nil && (lg.Format == "ima-binary" || lg.Format == "ima-ascii") && lg.Size() >= s.IMA.Offset {
			cut[i] = s.IMA.Offset
		}
	}
	out := make([]bundle.Log, 0, len(logs))
	for i := range logs {
		if drop[i] {
			continue
		}
		off, ok := cut[i]
		if !ok || off == 0 {
			out = append(out, logs[i])
			continue
		}
		t, err := Of(&logs[i], off)
		if err != nil {
			return nil, fmt.Errorf("logs[%d]: %w", i, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// IsRuntime reports whether lg is a CC runtime log (binary or text).
func IsRuntime(lg *bundle.Log) bool {
	return lg.Format == string(eventlog.FormatRuntime) || lg.Format == string(eventlog.FormatAAELText)
}

// InitOf returns the INIT value a runtime log segment starts with (zero
// without one, or when its first entry does not read); name is the file
// name its reader's errors give.
func InitOf(lg *bundle.Log, name string) mr.Digest {
	var r aael.EntryReader
	if lg.Format == string(eventlog.FormatAAELText) {
		r = aael.NewTextReader(lg.Open(0), aael.Options{File: name})
	} else {
		r = aael.NewReader(lg.Open(0), aael.Options{File: name})
	}
	e, err := r.Next()
	if err != nil {
		return mr.Digest{}
	}
	return e.Init
}

// Of is lg from byte off on, as a tail (lg must not be one already).
func Of(lg *bundle.Log, off int64) (bundle.Log, error) {
	if off < 0 || off > lg.Size() {
		return bundle.Log{}, errors.New("the offset is outside the log")
	}
	t := bundle.Log{Format: lg.Format, Register: lg.Register, Alg: lg.Alg, Source: lg.Source, Offset: off}
	if lg.Data != nil || lg.Size() == 0 {
		t.Data = lg.Data[off:]
		return t, nil
	}
	t.Attach(readerAt{lg: lg, off: off}, lg.Size()-off)
	return t, nil
}

// readerAt reads an attached log from byte off on.
type readerAt struct {
	lg  *bundle.Log
	off int64
}

func (r readerAt) ReadAt(p []byte, at int64) (int, error) {
	if at < 0 {
		return 0, errors.New("negative offset")
	}
	if r.off+at >= r.lg.Size() {
		return 0, io.EOF
	}
	n, err := io.ReadFull(r.lg.Open(r.off+at), p)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	return n, err
}
