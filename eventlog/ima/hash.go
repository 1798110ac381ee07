package ima

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"fmt"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// TemplateHash returns the digest entry e extends into the bank alg of its
// PCR: for the bank of the list (sha1 for binary_runtime_measurements, the
// list's bank for a per-bank list), the listed template hash; for any other
// bank, alg(template data), as kernels since 5.8 compute it (for the legacy
// ima template, over the same padded form the SHA-1 covers). A violation (a
// listed hash of zeros) extends all-ones of the bank's size. With
// sha1Padded, non-sha1 banks get the SHA-1 zero-padded to the bank's size
// instead, as kernels before 5.8 extended them (only the SHA-1 list can be
// of such a kernel: with a per-bank entry sha1Padded is an error).
//
// It fails with mr.ErrUnsupported when alg is unknown, or when the template
// data is not known (an unknown template read from an ascii list) and the
// bank is not the list's.
func TemplateHash(e *Entry, alg mr.Alg, sha1Padded bool) (mr.Digest, error) {
	b, err := appendTemplateHash(nil, e, alg, sha1Padded, nil)
	if err != nil {
		return mr.Digest{}, err
	}
	return mr.Digest{Alg: alg, Bytes: b}, nil
}

type hasher interface {
	Write([]byte) (int, error)
	Sum([]byte) []byte
	Reset()
}

// appendTemplateHash appends the bank-alg template hash to dst, using h (a
// hash of alg) when given.
func appendTemplateHash(dst []byte, e *Entry, alg mr.Alg, sha1Padded bool, h hasher) ([]byte, error) {
	size := alg.Size()
	if size == 0 {
		return nil, fmt.Errorf("%w: algorithm %v", mr.ErrUnsupported, alg)
	}
	if e.IsViolation() {
		for range size {
			dst = append(dst, 0xff)
		}
		return dst, nil
	}
	if alg == e.ListBank() {
		return append(dst, e.TemplateHash...), nil
	}
	if sha1Padded {
		if e.ListBank() != mr.SHA1 {
			return nil, fmt.Errorf("%w: SHA-1-padded banks (kernels before 5.8) from a %v list: only the SHA-1 list is of such a kernel", mr.ErrUnsupported, e.ListBank())
		}
		dst = append(dst, e.TemplateHash...)
		for range size - len(e.TemplateHash) {
			dst = append(dst, 0)
		}
		return dst, nil
	}
	if e.TemplateData == nil {
		return nil, fmt.Errorf("%w: %v template hash of a %s entry read from an ascii list (template data unknown)",
			mr.ErrUnsupported, alg, e.TemplateName)
	}
	if h == nil {
		h = alg.New()
	}
	h.Reset()
	h.Write(e.TemplateData)
	return h.Sum(dst), nil
}

// CheckTemplateHash checks that a non-violation entry's listed template
// hash equals the hash of its template data in the list's bank (sha1 for
// binary_runtime_measurements, sha256 for binary_runtime_measurements_sha256,
// ...). It returns nil for violations and for entries whose template data is
// unknown (nothing to check), and a *eventlog.Mismatch naming the entry
// otherwise (errors.Is(err, eventlog.ErrMismatch)).
func CheckTemplateHash(file string, e *Entry) error {
	var sum [64]byte
	return checkTemplateHash(file, e, &listHasher{}, sum[:0])
}

// listHasher keeps the hasher of the list's bank, made once: every entry of
// a list has the same bank, so checking one allocates nothing.
type listHasher struct {
	alg mr.Alg
	h   hasher
}

func (l *listHasher) get(a mr.Alg) hasher {
	if l.h == nil || l.alg != a {
		l.alg = a
		if a == mr.SHA1 {
			l.h = sha1.New()
		} else {
			l.h = a.New()
		}
	}
	return l.h
}

func checkTemplateHash(file string, e *Entry, lh *listHasher, buf []byte) error {
	if e.TemplateData == nil || e.IsViolation() {
		return nil
	}
	bank := e.ListBank()
	if !bank.Valid() {
		return &eventlog.Error{File: file, Record: e.Index, Offset: e.Offset, Err: fmt.Errorf("%w: bank %v", mr.ErrUnsupported, bank)}
	}
	h := lh.get(bank)
	h.Reset()
	h.Write(e.TemplateData)
	got := h.Sum(buf[:0])
	if bytes.Equal(got, e.TemplateHash) {
		return nil
	}
	return &eventlog.Mismatch{
		File:     file,
		Register: pcrName(e.PCR),
		Record:   e.Index,
		Offset:   e.Offset,
		Expected: mr.Digest{Alg: bank, Bytes: append([]byte(nil), e.TemplateHash...)},
		Computed: mr.Digest{Alg: bank, Bytes: append([]byte(nil), got...)},
		Reason:   fmt.Sprintf("IMA entry %d (%s %q): listed %v template hash does not match the template data", e.Index, e.TemplateName, e.FileName(), bank),
	}
}

// VirtualDigest returns sha384(template data): what the IMA forwarder
// extends into the mr_ima virtual register for entry e (docs/design.md,
// "The CC runtime log"), so that
// record i of mr_ima is IMA entry i. Violations are no exception: their
// template data is hashed like any other. It fails with mr.ErrUnsupported
// when the template data is unknown (an unknown template from an ascii
// list).
func VirtualDigest(e *Entry) (mr.Digest, error) {
	if e.TemplateData == nil {
		return mr.Digest{}, fmt.Errorf("%w: template data of a %s entry read from an ascii list is unknown", mr.ErrUnsupported, e.TemplateName)
	}
	return mr.SHA384.Sum(e.TemplateData), nil
}

// Event describes e as `ccmr log show` prints it, with the template hash of
// each bank in banks (the list's own bank when banks is empty). A listed hash that
// does not match the template data is reported in Problems.
func Event(file string, e *Entry, banks []mr.Alg) eventlog.Event {
	if len(banks) == 0 {
		banks = []mr.Alg{e.ListBank()}
	}
	ev := eventlog.Event{Index: e.Index, Offset: e.Offset, Register: pcrName(e.PCR), Type: e.TemplateName}
	for _, a := range banks {
		d, err := TemplateHash(e, a, false)
		if err != nil {
			ev.Problems = append(ev.Problems, err.Error())
			continue
		}
		ev.Digests = append(ev.Digests, d)
	}
	ev.Text = describe(e)
	if e.IsViolation() {
		ev.Problems = append(ev.Problems, "violation (listed template hash is zero; the PCR was extended with all-ones)")
	}
	if err := CheckTemplateHash(file, e); err != nil {
		ev.Problems = append(ev.Problems, "listed template hash does not match the template data")
	}
	return ev
}

func describe(e *Entry) string {
	alg, d, ok := e.FileDigest()
	if !ok {
		return e.TemplateName
	}
	s := alg + ":" + hex.EncodeToString(d) + " " + e.FileName()
	if sig := e.Signature(); len(sig) > 0 {
		s += " sig=" + hex.EncodeToString(sig)
	}
	if buf := e.Buf(); len(buf) > 0 {
		s += " buf=" + hex.EncodeToString(buf)
	}
	return s
}

func pcrName(i int) string { return fmt.Sprintf("pcr%d", i) }
