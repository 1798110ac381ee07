package tcg

import (
	"bytes"
	"fmt"
	"hash"
	"sort"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// Number of registers: PCR 0..23 on a TPM, CC MR 0..4 (MRTD, RTMR0..3).
const (
	numPCRs  = 24
	numCCMRs = 5
)

var startupLocalitySig = []byte("StartupLocality\x00")

// startupLocality returns the locality of a StartupLocality EV_NO_ACTION
// record (PC Client PFP, TCG_EfiStartupLocalityEvent: the 16-byte signature
// "StartupLocality\0" then one byte).
func startupLocality(e *Event) (byte, bool) {
	if e.Type != EvNoAction || e.Index != 0 || len(e.Data) != len(startupLocalitySig)+1 ||
		!bytes.HasPrefix(e.Data, startupLocalitySig) {
		return 0, false
	}
	return e.Data[len(startupLocalitySig)], true
}

// RegisterName returns the name of the register that index denotes in a log
// of format f: pcrN for a TCG2 log, mrtd or rtmrN for a CCEL. ok is false
// for an index out of range.
func RegisterName(f eventlog.Format, index uint32) (name string, ok bool) {
	if f == eventlog.FormatCCEL {
		switch {
		case index == 0:
			return "mrtd", true
		case index < numCCMRs:
			return fmt.Sprintf("rtmr%d", index-1), true
		}
		return fmt.Sprintf("ccmr%d", index), false
	}
	if index < numPCRs {
		return fmt.Sprintf("pcr%d", index), true
	}
	return fmt.Sprintf("pcr%d", int32(index)), false
}

// registerIndex is RegisterName's inverse.
func registerIndex(f eventlog.Format, name string) (uint32, bool) {
	lim := uint32(numPCRs)
	if f == eventlog.FormatCCEL {
		lim = numCCMRs
	}
	for i := uint32(0); i < lim; i++ {
		if n, _ := RegisterName(f, i); n == name {
			return i, true
		}
	}
	return 0, false
}

// replayState is the outcome of folding the log: per bank, per index.
type replayState struct {
	banks []mr.Alg                     // replayable banks, log order
	vals  map[mr.Alg]map[uint32][]byte // touched registers only
	start map[mr.Alg][]byte            // PCR 0 start value (locality)
	last  map[uint32]int               // last extending record per index
	// missing maps a bank to the first record that lacks its digest; such
	// a bank has no replay.
	missing map[mr.Alg]int
	n       int
}

func (l *Log) fold() (*replayState, error) {
	st := &replayState{
		vals:    map[mr.Alg]map[uint32][]byte{},
		start:   map[mr.Alg][]byte{},
		last:    map[uint32]int{},
		missing: map[mr.Alg]int{},
	}
	for _, a := range l.Banks {
		if a.Valid() {
			st.banks = append(st.banks, a)
			st.vals[a] = map[uint32][]byte{}
		}
	}
	if len(st.banks) == 0 {
		return nil, &eventlog.Error{File: l.File, Record: 0, Offset: 0,
			Err: fmt.Errorf("%w: no bank of the log is a hash ccmr knows (%v)", mr.ErrUnsupported, l.Banks)}
	}
	hs := make(map[mr.Alg]hash.Hash, len(st.banks))
	for _, a := range st.banks {
		hs[a] = a.New()
	}
	locality := byte(0)
	pcr0Extended := false
	tpm := l.Format != eventlog.FormatCCEL
	for i := range l.Events {
		e := &l.Events[i]
		if e.Num == 0 && l.CryptoAgile {
			continue // the Spec ID header
		}
		if e.Type == EvNoAction {
			if loc, ok := startupLocality(e); ok && tpm && !pcr0Extended && loc <= 4 {
				locality = loc
			}
			continue
		}
		if _, ok := RegisterName(l.Format, e.Index); !ok {
			return nil, &eventlog.Error{File: l.File, Record: e.Num, Offset: e.Offset,
				Err: fmt.Errorf("%w: register index %d out of range", mr.ErrMalformed, e.Index)}
		}
		if e.Index == 0 && tpm {
			pcr0Extended = true
		}
		for _, a := range st.banks {
			if _, gone := st.missing[a]; gone {
				continue
			}
			d, ok := e.Digest(a)
			if !ok {
				// The bank cannot be replayed; the others still can.
				st.missing[a] = e.Num
				delete(st.vals, a)
				continue
			}
			if len(d.Bytes) != a.Size() {
				return nil, &eventlog.Error{File: l.File, Record: e.Num, Offset: e.Offset,
					Err: fmt.Errorf("%w: %v digest of %d bytes", mr.ErrDigestSize, a, len(d.Bytes))}
			}
			v, ok := st.vals[a][e.Index]
			if !ok {
				v = make([]byte, a.Size())
				if e.Index == 0 && tpm {
					v[len(v)-1] = locality
				}
			}
			st.vals[a][e.Index] = mr.ExtendInto(hs[a], v, d.Bytes)
		}
		st.last[e.Index] = e.Num
		st.n++
	}
	if tpm {
		for _, a := range st.banks {
			v := make([]byte, a.Size())
			v[len(v)-1] = locality
			st.start[a] = v
		}
	}
	return st, nil
}

// Replay computes the value of every register the log extends, in every
// bank the log lists and ccmr can hash. Registers appear bank by bank (the
// header's order), by index within a bank. Events counts the records
// extended (EV_NO_ACTION and the header record are not).
func (l *Log) Replay() (*eventlog.Replay, error) {
	st, err := l.fold()
	if err != nil {
		return nil, err
	}
	rep := &eventlog.Replay{Events: st.n}
	for _, a := range st.banks {
		if _, gone := st.missing[a]; gone {
			continue
		}
		idx := make([]uint32, 0, len(st.vals[a]))
		for i := range st.vals[a] {
			idx = append(idx, i)
		}
		sort.Slice(idx, func(x, y int) bool { return idx[x] < idx[y] })
		for _, i := range idx {
			rep.Registers = append(rep.Registers, mr.Value{
				Register: l.register(i, a),
				Digest:   mr.Digest{Alg: a, Bytes: st.vals[a][i]},
			})
		}
	}
	return rep, nil
}

func (l *Log) register(i uint32, a mr.Alg) mr.Register {
	name, _ := RegisterName(l.Format, i)
	return mr.Register{Name: name, Alg: a, Size: a.Size(), Flags: mr.Readable | mr.Extendable | mr.Reported, Index: int(i)}
}

// Check replays the log and compares the result with want, in want's order.
// Each want names a register (pcr7, rtmr1) and carries the expected digest;
// the digest's algorithm selects the bank. A register the log never extends
// is compared with its value after TPM2_Startup: zero, except PCR 0 (the
// startup locality) and the D-RTM PCRs 17..22 (all ones, PC Client TPM
// profile). A register the log extends replays from zero (PCR 0 from the
// startup locality).
// The first disagreement is returned as a *eventlog.Mismatch (errors.Is
// eventlog.ErrMismatch) with Record -1, since a register holds only the end of
// its chain; the Reason names the last record that extended it. A bank the
// log does not carry is a mismatch too. An unknown register name wraps
// mr.ErrUnknownRegister; bad input is a *eventlog.Error.
func (l *Log) Check(want []mr.Value) error {
	st, err := l.fold()
	if err != nil {
		return err
	}
	for _, w := range want {
		idx, ok := registerIndex(l.Format, w.Register.Name)
		if !ok {
			return fmt.Errorf("%w: %q is not a register of a %s log", mr.ErrUnknownRegister, w.Register.Name, l.Format)
		}
		a := w.Digest.Alg
		vals, ok := st.vals[a]
		if rec, gone := st.missing[a]; gone {
			return &eventlog.Mismatch{File: l.File, Register: w.Register.Name, Record: rec, Offset: l.Events[rec].Offset,
				Expected: w.Digest, Reason: fmt.Sprintf("the %v bank cannot be replayed: the record carries no %v digest", a, a)}
		}
		if !ok {
			return &eventlog.Mismatch{File: l.File, Register: w.Register.Name, Record: -1, Offset: -1,
				Expected: w.Digest, Reason: fmt.Sprintf("the log has no %v bank (banks %v)", a, l.Banks)}
		}
		got, touched := vals[idx]
		if !touched {
			got = make([]byte, a.Size())
			if s, ok := st.start[a]; ok && idx == 0 {
				got = s
			}
			if l.Format != eventlog.FormatCCEL && idx >= 17 && idx <= 22 {
				// PC Client TPM profile: the D-RTM PCRs 17..22 reset to all ones.
				got = mr.TPMResetValue(int(idx), a).Bytes
			}
		}
		if !bytes.Equal(got, w.Digest.Bytes) {
			reason := "replayed value differs"
			if touched {
				reason = fmt.Sprintf("replayed value differs (last extended by record %d)", st.last[idx])
			} else {
				reason = "the log never extends it"
			}
			return &eventlog.Mismatch{File: l.File, Register: w.Register.Name, Record: -1, Offset: -1,
				Expected: w.Digest, Computed: mr.Digest{Alg: a, Bytes: append([]byte(nil), got...)}, Reason: reason}
		}
	}
	return nil
}

// MissingDigest reports the first record that carries no digest for a bank
// the log declares and ccmr can hash: Replay leaves such a bank out, so a
// verifier that compares only what Replay returns must refuse the log, or
// one record would switch off every comparison of the bank. ok is false when
// every extending record carries every bank. Bad input is a *eventlog.Error.
func (l *Log) MissingDigest() (rec int, bank mr.Alg, ok bool, err error) {
	st, err := l.fold()
	if err != nil {
		return 0, 0, false, err
	}
	rec = -1
	for a, r := range st.missing {
		if rec < 0 || r < rec || r == rec && a < bank {
			rec, bank = r, a
		}
	}
	return rec, bank, rec >= 0, nil
}
