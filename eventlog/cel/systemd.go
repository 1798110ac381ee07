package cel

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/internal/strictjson"
	"github.com/ccmr-dev/ccmr/mr"
)

// systemd's userspace measurement log, /run/log/systemd/tpm2-measure.log
// (systemd 253 and later: systemd-pcrextend, systemd-pcrphase, cryptsetup,
// systemd-pcrlock reads it back). systemd's tpm2-util.c writes one record
// per extend, as a JSON text sequence (RFC 7464): RS (0x1E), a compact JSON
// object, LF:
//
//	{"pcr":11,"digests":[{"hashAlg":"sha256","digest":"HEX"},...],
//	 "content_type":"systemd",
//	 "content":{"string":"enter-initrd","bootId":"HEX","timestamp":N,"eventType":"phase"}}
//
// with one digest per bank extended. systemd 258 and later also log the
// extends of NV indexes used as PCRs ("NvPCRs") in the same file, with
// "nv_index" in place of "pcr". A writer holds flock(LOCK_EX) while it
// extends and appends, and sets the file's sticky bit for that time: a
// reader that gets the lock and still sees the bit knows a writer died
// between extending and logging (ReadSystemdLog).

// SystemdLogPath is where systemd keeps its userspace measurement log.
const SystemdLogPath = "/run/log/systemd/tpm2-measure.log"

// maxPCR is the highest PCR number (TPM2_PCRS_MAX - 1 in systemd).
const maxPCR = 23

// SystemdRecord is one record of systemd's userspace measurement log.
type SystemdRecord struct {
	// Index is the record number from 0; Offset its RS byte's offset.
	Index  int
	Offset int64
	// PCR is the PCR the record extends; NV is set instead (IsNV) for a
	// record of an NV index used as a PCR.
	PCR  uint32
	NV   uint32
	IsNV bool
	// Digests are the digests extended, one per bank, in the record's
	// order.
	Digests []mr.Digest
	// Content is systemd's content object.
	Content SystemdContent
}

// SystemdContent is the content of a "systemd" record. Fields systemd may
// add later are kept in Raw only.
type SystemdContent struct {
	// String is what was measured, as text: the phase word, machine-id:ID,
	// file-system:..., cryptsetup:NAME:UUID.
	String *string `json:"string"`
	// BootID is the boot's ID (hex).
	BootID string `json:"bootId"`
	// Timestamp is CLOCK_BOOTTIME in µs.
	Timestamp uint64 `json:"timestamp"`
	// EventType is phase, filesystem, volume-key, machine-id, product-id,
	// keyslot, nvpcr-init, nvpcr-separator, dm-verity, ... (or empty).
	EventType string `json:"eventType"`
}

// Register is the record's register name: pcrN, or nv:0xHANDLE.
func (r *SystemdRecord) Register() string {
	if r.IsNV {
		return fmt.Sprintf("nv:0x%08x", r.NV)
	}
	return "pcr" + strconv.Itoa(int(r.PCR))
}

// Digest returns the record's digest in bank a.
func (r *SystemdRecord) Digest(a mr.Alg) (mr.Digest, bool) {
	for _, d := range r.Digests {
		if d.Alg == a {
			return d, true
		}
	}
	return mr.Digest{}, false
}

// ContentMatches reports whether every digest of the record is the hash of
// its content string: true for what systemd-pcrextend and systemd-pcrphase
// measure (the word itself), false for an HMAC (cryptsetup's volume key)
// or a record without a string. Only a true result binds the record's
// text to its digests.
func (r *SystemdRecord) ContentMatches() bool {
	if r.Content.String == nil || len(r.Digests) == 0 {
		return false
	}
	for _, d := range r.Digests {
		h := d.Alg.New()
		h.Write([]byte(*r.Content.String))
		if !bytes.Equal(h.Sum(nil), d.Bytes) {
			return false
		}
	}
	return true
}

// systemdJSON is a record as it is in the file. Pointers tell a missing
// member from a zero one.
type systemdJSON struct {
	PCR         *uint32          `json:"pcr"`
	NVIndex     *uint32          `json:"nv_index"`
	Digests     []jsonDigest     `json:"digests"`
	ContentType *string          `json:"content_type"`
	Content     *json.RawMessage `json:"content"`
}

// SystemdReader reads systemd's userspace measurement log record by
// record. It is strict where systemd's own reader (systemd-pcrlock) is
// lenient, because a verifier must read one meaning from the file: every
// record is RS, one JSON object, LF; members appear once; a record names a
// PCR (0-23) or an NV index, not both; every digest is of a known bank, of
// its bank's size, and no bank appears twice; content_type is "systemd".
type SystemdReader struct {
	file string
	br   *bufio.Reader
	off  int64
	n    int
	err  error
}

// NewSystemdReader returns a SystemdReader of r; file names it in errors.
func NewSystemdReader(r io.Reader, file string) *SystemdReader {
	return &SystemdReader{file: file, br: bufio.NewReaderSize(r, 64<<10)}
}

func (sr *SystemdReader) fail(off int64, format string, a ...any) error {
	sr.err = &eventlog.Error{File: sr.file, Record: sr.n, Offset: off,
		Err: fmt.Errorf("%w: %s", mr.ErrMalformed, fmt.Sprintf(format, a...))}
	return sr.err
}

// Next returns the next record; io.EOF after the last.
func (sr *SystemdReader) Next() (*SystemdRecord, error) {
	if sr.err != nil {
		return nil, sr.err
	}
	start := sr.off
	b, err := sr.br.ReadByte()
	if err == io.EOF {
		sr.err = io.EOF
		return nil, io.EOF
	}
	if err != nil {
		return nil, sr.fail(start, "%v", err)
	}
	if b != 0x1e {
		return nil, sr.fail(start, "byte 0x%02x where a record separator (RS 0x1E) belongs: systemd's log is a JSON text sequence", b)
	}
	sr.off++
	var buf []byte
	for {
		frag, err := sr.br.ReadSlice(0x1e)
		buf = append(buf, frag...)
		if len(buf) > MaxJSONRecord {
			return nil, sr.fail(start, "record longer than %d bytes", MaxJSONRecord)
		}
		if err == nil {
			buf = buf[:len(buf)-1]
			sr.br.UnreadByte()
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF {
			break
		}
		return nil, sr.fail(start, "%v", err)
	}
	sr.off += int64(len(buf))
	// systemd ends every record with LF; one without it was cut while
	// being written (RFC 7464 §2.4: a possibly truncated text).
	if len(buf) == 0 || buf[len(buf)-1] != '\n' {
		return nil, sr.fail(start, "record not ended by LF: the log was cut while a record was written (incomplete)")
	}
	rec, err := sr.decode(buf[:len(buf)-1], start)
	if err != nil {
		return nil, err
	}
	sr.n++
	return rec, nil
}

func (sr *SystemdReader) decode(b []byte, off int64) (*SystemdRecord, error) {
	var j systemdJSON
	if err := strictjson.Decode(b, &j); err != nil {
		return nil, sr.fail(off, "%v", err)
	}
	rec := &SystemdRecord{Index: sr.n, Offset: off}
	switch {
	case j.PCR != nil && j.NVIndex != nil:
		return nil, sr.fail(off, "record names both a PCR and an NV index")
	case j.PCR != nil:
		if *j.PCR > maxPCR {
			return nil, sr.fail(off, "pcr %d out of range (0-%d)", *j.PCR, maxPCR)
		}
		rec.PCR = *j.PCR
	case j.NVIndex != nil:
		rec.NV, rec.IsNV = *j.NVIndex, true
	default:
		return nil, sr.fail(off, "record names neither a pcr nor an nv_index")
	}
	if j.ContentType == nil || *j.ContentType != ContentSystemd {
		ct := "none"
		if j.ContentType != nil {
			ct = strconv.Quote(*j.ContentType)
		}
		return nil, sr.fail(off, "content_type %s (systemd's log has %q)", ct, ContentSystemd)
	}
	if len(j.Digests) == 0 {
		return nil, sr.fail(off, "record without digests")
	}
	for i, jd := range j.Digests {
		a, err := mr.ParseAlg(jd.HashAlg)
		if err != nil {
			return nil, sr.fail(off, "digests[%d]: %v", i, err)
		}
		if _, dup := rec.Digest(a); dup {
			return nil, sr.fail(off, "digests[%d]: a second %v digest", i, a)
		}
		d, err := mr.ParseHex(a, jd.Digest)
		if err != nil {
			return nil, sr.fail(off, "digests[%d]: %v", i, err)
		}
		rec.Digests = append(rec.Digests, d)
	}
	if j.Content == nil {
		return nil, sr.fail(off, "record without content")
	}
	// Content members systemd adds later are allowed; the known ones are
	// matched by their exact names (encoding/json would fill String from
	// "STRING", which systemd-pcrlock does not read) and must have their
	// types. strictjson already refused duplicate members in it.
	var members map[string]json.RawMessage
	if err := json.Unmarshal(*j.Content, &members); err != nil || members == nil {
		return nil, sr.fail(off, "content is not an object")
	}
	for name, dst := range map[string]any{"string": &rec.Content.String, "bootId": &rec.Content.BootID,
		"timestamp": &rec.Content.Timestamp, "eventType": &rec.Content.EventType} {
		if v, ok := members[name]; ok {
			if err := json.Unmarshal(v, dst); err != nil {
				return nil, sr.fail(off, "content.%s: %v", name, err)
			}
		}
	}
	return rec, nil
}

// SystemdReplayOptions configure ReplaySystemd.
type SystemdReplayOptions struct {
	// File names the log in errors.
	File string
	// Banks are the banks to replay; empty means those of the first PCR
	// record. Every PCR record must carry a digest of each.
	Banks []mr.Alg
	// Start are the values registers start from (the end of the firmware
	// log's replay); a register not named starts at its reset value.
	Start []mr.Value
	// OnRecord, when set, is called for every record in order.
	OnRecord func(*SystemdRecord) error
}

// SystemdReplay is the result of ReplaySystemd.
type SystemdReplay struct {
	eventlog.Replay
	// Banks are the banks replayed.
	Banks []mr.Alg
	// Counts are the records per register (pcrN, nv:0x...).
	Counts map[string]int
	// NV are the records of NV indexes, which a PCR replay does not
	// judge.
	NV int
}

// ReplaySystemd replays systemd's log in every bank of opts.Banks: each PCR
// record extends its PCR from opts.Start (or the reset value) in order.
// Records of NV indexes are counted, not replayed. A PCR record without a
// digest of a replayed bank is an error: that bank's value could not be
// computed.
func ReplaySystemd(r *SystemdReader, opts SystemdReplayOptions) (*SystemdReplay, error) {
	res := &SystemdReplay{Counts: map[string]int{}, Banks: append([]mr.Alg(nil), opts.Banks...)}
	vals := map[string]map[mr.Alg]mr.Digest{}
	var order []string
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if opts.OnRecord != nil {
			if err := opts.OnRecord(rec); err != nil {
				return nil, err
			}
		}
		res.Events++
		reg := rec.Register()
		res.Counts[reg]++
		if rec.IsNV {
			res.NV++
			continue
		}
		if len(res.Banks) == 0 {
			for _, d := range rec.Digests {
				res.Banks = append(res.Banks, d.Alg)
			}
		}
		if vals[reg] == nil {
			vals[reg] = map[mr.Alg]mr.Digest{}
			order = append(order, reg)
		}
		for _, a := range res.Banks {
			d, ok := rec.Digest(a)
			if !ok {
				return nil, &eventlog.Error{File: opts.File, Record: rec.Index, Offset: rec.Offset,
					Err: fmt.Errorf("%w: record carries no %v digest, a bank the log is replayed in: %s %v cannot be computed", mr.ErrMalformed, a, reg, a)}
			}
			v, ok := vals[reg][a]
			if !ok {
				v = startValue(opts.Start, reg, rec.PCR, a)
			}
			nv, err := mr.Extend(v, d.Bytes)
			if err != nil {
				return nil, &eventlog.Error{File: opts.File, Record: rec.Index, Offset: rec.Offset, Err: err}
			}
			vals[reg][a] = nv
		}
	}
	sort.SliceStable(order, func(i, j int) bool { return pcrNum(order[i]) < pcrNum(order[j]) })
	for _, reg := range order {
		for _, a := range res.Banks {
			if d, ok := vals[reg][a]; ok {
				res.Registers = append(res.Registers, mr.Value{Register: mr.Register{Name: reg, Alg: a, Size: a.Size()}, Digest: d})
			}
		}
	}
	return res, nil
}

func startValue(start []mr.Value, reg string, pcr uint32, a mr.Alg) mr.Digest {
	for _, v := range start {
		if v.Register.Name == reg && v.Digest.Alg == a {
			return v.Digest
		}
	}
	return mr.TPMResetValue(int(pcr), a)
}

func pcrNum(reg string) int {
	n, _ := strconv.Atoi(reg[len("pcr"):])
	return n
}
