package ima

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// Source yields entries: a *Reader, or anything else that streams them.
type Source interface {
	// Next returns the next entry, or io.EOF after the last one.
	Next() (*Entry, error)
}

// ReplayOptions tune Replay.
type ReplayOptions struct {
	// File names the list in errors.
	File string
	// Banks are the PCR banks to compute. Empty means sha1 and sha256, and
	// the list's own bank when src is a Reader of a per-bank list; the
	// banks of Expect are always added.
	Banks []mr.Alg
	// Expect holds expected register values (Register.Name "pcr10",
	// Register.Alg the bank). A register no entry extends is compared as
	// zero.
	Expect []mr.Value
	// SHA1Padded makes non-sha1 banks extend the SHA-1 template hash
	// zero-padded to the bank's size, as kernels before 5.8 did.
	SHA1Padded bool
}

// Replay folds every entry of src into the PCR it names, in every bank,
// from zero: the sha1 bank with the listed template hash, other banks with
// H(template data) (see TemplateHash).
//
// It returns the computed registers (ordered by PCR, then bank) and, as the
// error: a *eventlog.Error for bad input; else a *eventlog.Mismatch naming the first
// entry whose listed hash does not match its template data; else a
// *eventlog.Mismatch with Record -1 for the first expected register that differs
// (a PCR holds only the end of the chain, so no entry can be blamed). Both
// mismatches satisfy errors.Is(err, eventlog.ErrMismatch). The registers are
// returned with either mismatch.
//
// With more than one core (GOMAXPROCS) the work is spread over all of them
// (see parallel.go); the result and the error are the same. Replay reads src
// to its end (or to its first error).
func Replay(ctx context.Context, src Source, opts ReplayOptions) (*eventlog.Replay, error) {
	banks, err := replayBanks(opts, src)
	if err != nil {
		return nil, err
	}
	if runtime.GOMAXPROCS(0) > 1 {
		return replayParallel(ctx, src, opts, banks)
	}
	return replaySeq(ctx, src, opts, banks)
}

// replayBanks returns the banks a replay computes: opts.Banks (default sha1
// and sha256, and the bank of a per-bank list src) and those of
// opts.Expect, sorted.
func replayBanks(opts ReplayOptions, src Source) ([]mr.Alg, error) {
	banks := slices.Clone(opts.Banks)
	if len(banks) == 0 {
		banks = []mr.Alg{mr.SHA1, mr.SHA256}
		if r, ok := src.(*Reader); ok && !slices.Contains(banks, r.bank) {
			banks = append(banks, r.bank)
		}
	}
	for _, v := range opts.Expect {
		if _, err := parsePCRName(v.Register.Name); err != nil {
			return nil, err
		}
		if !slices.Contains(banks, v.Register.Alg) {
			banks = append(banks, v.Register.Alg)
		}
	}
	for _, a := range banks {
		if !a.Valid() {
			return nil, fmt.Errorf("%w: bank %v", mr.ErrUnsupported, a)
		}
	}
	slices.Sort(banks)
	return slices.Compact(banks), nil
}

// replaySeq is Replay on one core.
func replaySeq(ctx context.Context, src Source, opts ReplayOptions, banks []mr.Alg) (*eventlog.Replay, error) {
	type pcrState struct {
		ext []*mr.Extender // one per bank
	}
	pcrs := map[int]*pcrState{}
	hashers := make([]hasher, len(banks))
	for i, a := range banks {
		hashers[i] = a.New()
	}
	var lh listHasher
	var sum [64]byte
	var firstBad error
	lastPCR, last := -1, (*pcrState)(nil)
	n := 0
	for {
		if n&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		e, err := src.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		n++
		if firstBad == nil {
			firstBad = checkTemplateHash(opts.File, e, &lh, sum[:0])
		}
		st := last
		if e.PCR != lastPCR {
			st = pcrs[e.PCR]
			if st == nil {
				st = &pcrState{ext: make([]*mr.Extender, len(banks))}
				for i, a := range banks {
					st.ext[i] = mr.NewExtender(mr.Zero(a))
				}
				pcrs[e.PCR] = st
			}
			lastPCR, last = e.PCR, st
		}
		for i, a := range banks {
			d, err := appendTemplateHash(sum[:0], e, a, opts.SHA1Padded, hashers[i])
			if err != nil {
				return nil, &eventlog.Error{File: opts.File, Record: e.Index, Offset: e.Offset, Err: err}
			}
			if err := st.ext[i].Extend(d); err != nil {
				return nil, &eventlog.Error{File: opts.File, Record: e.Index, Offset: e.Offset, Err: err}
			}
		}
	}
	vals := map[int][]*mr.Extender{}
	for p, st := range pcrs {
		vals[p] = st.ext
	}
	return finishReplay(opts, banks, n, vals, firstBad)
}

// finishReplay builds the result of a replay from each PCR's extenders (one
// per bank) and compares it with the expected values.
func finishReplay(opts ReplayOptions, banks []mr.Alg, n int, pcrs map[int][]*mr.Extender, firstBad error) (*eventlog.Replay, error) {
	res := &eventlog.Replay{Events: n}
	idx := make([]int, 0, len(pcrs))
	for p := range pcrs {
		idx = append(idx, p)
	}
	slices.Sort(idx)
	for _, p := range idx {
		for i, a := range banks {
			res.Registers = append(res.Registers, mr.Value{Register: pcrRegister(p, a), Digest: pcrs[p][i].Value()})
		}
	}
	if firstBad != nil {
		return res, firstBad
	}
	for _, want := range opts.Expect {
		p, _ := parsePCRName(want.Register.Name)
		got := mr.Zero(want.Register.Alg)
		if ext := pcrs[p]; ext != nil {
			got = ext[slices.Index(banks, want.Register.Alg)].Value()
		}
		if !got.Equal(want.Digest) {
			return res, &eventlog.Mismatch{
				File: opts.File, Register: want.Register.Name + " " + want.Register.Alg.String(), Record: -1,
				Expected: want.Digest, Computed: got,
				Reason: fmt.Sprintf("replay of %d IMA entries does not give the expected value", n),
			}
		}
	}
	return res, nil
}

func pcrRegister(p int, a mr.Alg) mr.Register {
	return mr.Register{Name: pcrName(p), Alg: a, Size: a.Size(), Index: p}
}

func parsePCRName(s string) (int, error) {
	if rest, ok := strings.CutPrefix(s, "pcr"); ok {
		if p, err := strconv.Atoi(rest); err == nil && p >= 0 && p <= MaxPCR && strconv.Itoa(p) == rest {
			return p, nil
		}
	}
	return 0, fmt.Errorf("%w: %q is not a PCR (want pcr0..pcr%d)", mr.ErrUnknownRegister, s, MaxPCR)
}

// VirtualName is the virtual register the IMA forwarder extends.
const VirtualName = "mr_ima"

// VirtualOptions tune ReplayVirtual.
type VirtualOptions struct {
	// File names the list in errors.
	File string
	// Name is the virtual register's name; empty means mr_ima.
	Name string
	// Records, when not nil, are the digests of the virtual register's
	// records in the runtime log, in order: entry i must give Records[i].
	// Only the first len(Records) entries are replayed (a longer list
	// proves only its prefix; see VirtualReplay.Unproven).
	Records []mr.Digest
	// Expect, when set, is the expected final value.
	Expect mr.Digest
	// Start, when set, is the register's value before the first entry of
	// src (a monitor resuming after the entries it verified before);
	// default 48 zero bytes.
	Start mr.Digest
}

// VirtualReplay is the outcome of ReplayVirtual.
type VirtualReplay struct {
	eventlog.Replay
	// Unproven counts the entries after the last record, which Records
	// does not cover (always 0 without Records).
	Unproven int
}

// ReplayVirtual folds sha384(template data) of each entry (VirtualDigest)
// into a virtual register that starts at 48 zero bytes: the value of mr_ima
// (docs/design.md, "The CC runtime log"). With opts.Records it checks entry i against record i and
// returns a *eventlog.Mismatch naming the first entry that differs ("IMA entry 17
// does not match mr_ima record 17"), or the first record with no entry.
// Entries whose listed hash does not match their data are reported as in
// Replay. The computed value is in Virtual.
func ReplayVirtual(ctx context.Context, src Source, opts VirtualOptions) (*VirtualReplay, error) {
	name := opts.Name
	if name == "" {
		name = VirtualName
	}
	if !mr.IsVirtualName(name) {
		return nil, fmt.Errorf("%w: %q is not a virtual register name", mr.ErrUnknownRegister, name)
	}
	for i, d := range opts.Records {
		if d.Alg != mr.SHA384 || len(d.Bytes) != mr.SHA384.Size() {
			return nil, fmt.Errorf("%w: %s record %d is %v, want a sha384 digest", mr.ErrDigestSize, name, i, d)
		}
	}
	start := mr.Zero(mr.SHA384)
	if !opts.Start.IsZero() {
		if opts.Start.Alg != mr.SHA384 || len(opts.Start.Bytes) != mr.SHA384.Size() {
			return nil, fmt.Errorf("%w: %s start value is %v, want a sha384 digest", mr.ErrDigestSize, name, opts.Start)
		}
		start = opts.Start
	}
	ext := mr.NewExtender(start)
	h := mr.SHA384.New()
	var lh listHasher
	var sum [48]byte
	var listSum [64]byte
	var firstBad error
	res := &VirtualReplay{}
	n := 0
	for {
		if n&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		e, err := src.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if opts.Records != nil && n >= len(opts.Records) {
			res.Unproven++
			continue
		}
		if e.TemplateData == nil {
			return nil, &eventlog.Error{File: opts.File, Record: e.Index, Offset: e.Offset,
				Err: fmt.Errorf("%w: template data of a %s entry is unknown", mr.ErrUnsupported, e.TemplateName)}
		}
		h.Reset()
		h.Write(e.TemplateData)
		d := h.Sum(sum[:0])
		if opts.Records != nil && firstBad == nil && !bytes.Equal(d, opts.Records[n].Bytes) {
			firstBad = &eventlog.Mismatch{
				File: opts.File, Register: name, Record: e.Index, Offset: e.Offset,
				Expected: opts.Records[n], Computed: mr.Digest{Alg: mr.SHA384, Bytes: append([]byte(nil), d...)},
				Reason: fmt.Sprintf("IMA entry %d (%q) does not match %s record %d", e.Index, e.FileName(), name, n),
			}
		}
		if firstBad == nil {
			firstBad = checkTemplateHash(opts.File, e, &lh, listSum[:0])
		}
		if err := ext.Extend(d); err != nil {
			return nil, err
		}
		n++
	}
	res.Events = n
	res.Virtual = []mr.Value{{Register: mr.Register{Name: name, Alg: mr.SHA384, Size: 48, Flags: mr.Virtual, Index: -1}, Digest: ext.Value()}}
	if firstBad == nil && opts.Records != nil && n < len(opts.Records) {
		firstBad = &eventlog.Mismatch{
			File: opts.File, Register: name, Record: n, Offset: -1, Expected: opts.Records[n],
			Reason: fmt.Sprintf("%s record %d has no IMA entry (the list has %d entries)", name, n, n),
		}
	}
	if firstBad != nil {
		return res, firstBad
	}
	if !opts.Expect.IsZero() && !res.Virtual[0].Digest.Equal(opts.Expect) {
		return res, &eventlog.Mismatch{File: opts.File, Register: name, Record: -1, Expected: opts.Expect,
			Computed: res.Virtual[0].Digest, Reason: fmt.Sprintf("replay of %d IMA entries does not give the expected value", n)}
	}
	return res, nil
}

// OpenFile opens an IMA list. format is an IMA format (ima-binary,
// ima-ascii, or a per-bank one such as ima-binary-sha256), or
// eventlog.FormatAuto (or "") to detect it from the contents and the file
// name (DetectNamed). The caller closes the returned file.
func OpenFile(path string, format eventlog.Format, opts Options) (*Reader, io.Closer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	if opts.File == "" {
		opts.File = path
	}
	if format == "" || format == eventlog.FormatAuto {
		head := make([]byte, 4096)
		n, err := io.ReadFull(f, head)
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			f.Close()
			return nil, nil, err
		}
		if format, err = DetectNamed(head[:n], path); err != nil {
			f.Close()
			return nil, nil, &eventlog.Error{File: path, Record: -1, Err: err}
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	rd, err := NewFormatReader(format, f, opts)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return rd, f, nil
}

// NewFormatReader reads a list of IMA format f: ima-binary, ima-ascii or a
// per-bank format (BankFormat), whose bank it sets in opts. A format that
// is no IMA list, or an opts.Bank other than the format's, is an error
// wrapping mr.ErrUnsupported.
func NewFormatReader(f eventlog.Format, r io.Reader, opts Options) (*Reader, error) {
	ascii, bank, ok := FormatBank(f)
	if !ok {
		return nil, fmt.Errorf("%w: format %q is not an IMA list format", mr.ErrUnsupported, f)
	}
	if opts.Bank != 0 && opts.Bank != bank {
		return nil, fmt.Errorf("%w: format %s holds %v template hashes, not %v", mr.ErrUnsupported, f, bank, opts.Bank)
	}
	opts.Bank = bank
	if ascii {
		return NewASCIIReader(r, opts), nil
	}
	return NewBinaryReader(r, opts), nil
}

// ParsePCRFile reads PCR values in the sysfs/evmctl form, one "PCR-NN: HEX"
// line per PCR, as values of bank alg. It also accepts "BANK INDEX HEX"
// lines (then alg must match BANK; other banks are skipped).
func ParsePCRFile(r io.Reader, alg mr.Alg) (map[int]mr.Digest, error) {
	out := map[int]mr.Digest{}
	sc := bufio.NewScanner(r)
	ln := 0
	for sc.Scan() {
		ln++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		var idx, hx string
		if rest, ok := strings.CutPrefix(s, "PCR-"); ok {
			i, h, ok := strings.Cut(rest, ":")
			if !ok {
				return nil, fmt.Errorf("%w: line %d: %q", mr.ErrMalformed, ln, s)
			}
			idx, hx = i, strings.TrimSpace(h)
		} else {
			f := strings.Fields(s)
			if len(f) != 3 {
				return nil, fmt.Errorf("%w: line %d: %q is neither \"PCR-NN: HEX\" nor \"BANK INDEX HEX\"", mr.ErrMalformed, ln, s)
			}
			b, err := mr.ParseAlg(f[0])
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", ln, err)
			}
			if b != alg {
				continue
			}
			idx, hx = f[1], f[2]
		}
		i, err := strconv.Atoi(idx)
		if err != nil || i < 0 || i > MaxPCR {
			return nil, fmt.Errorf("%w: line %d: PCR index %q", mr.ErrMalformed, ln, idx)
		}
		d, err := mr.ParseHex(alg, strings.ToLower(hx))
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", ln, err)
		}
		out[i] = d
	}
	return out, sc.Err()
}
