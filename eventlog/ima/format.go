package ima

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// Per-bank lists. Since Linux 6.10 ("ima: add crypto agility support for
// template-hash algorithm"), securityfs holds binary_runtime_measurements_BANK
// and ascii_runtime_measurements_BANK for every allocated PCR bank (and
// sha1 always), BANK being the kernel's hash_algo_name: sha1, sha256,
// sha384, sha512, sm3. ima_measurements_show writes each entry as the SHA-1
// list does, with one difference: the template hash is the bank's digest of
// the template data, of the bank's size. binary_runtime_measurements and
// ascii_runtime_measurements are links to the _sha1 lists.
//
// ccmr names the formats of these lists ima-binary-BANK and ima-ascii-BANK;
// the SHA-1 lists keep the names ima-binary and ima-ascii.

// PerBank lists the banks that have a per-bank format of their own (sha1's
// per-bank list is ima-binary / ima-ascii).
var PerBank = []mr.Alg{mr.SHA256, mr.SHA384, mr.SHA512, mr.SM3256}

// kernelBankName is the kernel's name of a bank in the list file names
// (hash_algo_name): sm3, not sm3_256.
func kernelBankName(a mr.Alg) string {
	if a == mr.SM3256 {
		return "sm3"
	}
	return a.String()
}

// BankFormat returns the format of a list of bank's template hashes, in
// the ascii or the binary encoding: ima-binary / ima-ascii for sha1 (and
// zero), ima-binary-sha256, ima-ascii-sm3, ... for the others.
func BankFormat(ascii bool, bank mr.Alg) eventlog.Format {
	f := eventlog.FormatIMABinary
	if ascii {
		f = eventlog.FormatIMAASCII
	}
	if bank == 0 || bank == mr.SHA1 {
		return f
	}
	return f + eventlog.Format("-"+kernelBankName(bank))
}

// FormatBank tells what an IMA format holds: its encoding and the bank of
// its template hashes. ok is false for a format that is no IMA list.
func FormatBank(f eventlog.Format) (ascii bool, bank mr.Alg, ok bool) {
	for _, enc := range [...]bool{false, true} {
		if f == BankFormat(enc, mr.SHA1) {
			return enc, mr.SHA1, true
		}
		for _, a := range PerBank {
			if f == BankFormat(enc, a) {
				return enc, a, true
			}
		}
	}
	return false, 0, false
}

var fileNameBank = regexp.MustCompile(`(ascii|binary)_runtime_measurements_([a-z0-9]+)$`)

// FileNameFormat returns the format a list's file name says it holds:
// binary_runtime_measurements_sha384 is ima-binary-sha384. ok is false
// when the name says nothing (binary_runtime_measurements says "binary",
// not which kernel wrote it, so it too says nothing).
func FileNameFormat(path string) (eventlog.Format, bool) {
	m := fileNameBank.FindStringSubmatch(filepath.Base(path))
	if m == nil {
		return "", false
	}
	for _, a := range append([]mr.Alg{mr.SHA1}, PerBank...) {
		if m[2] == kernelBankName(a) {
			return BankFormat(m[1] == "ascii", a), true
		}
	}
	return "", false
}

var asciiLine = regexp.MustCompile(`^[0-9]{1,3} ([0-9a-fA-F]{40}|[0-9a-fA-F]{64}|[0-9a-fA-F]{96}|[0-9a-fA-F]{128}) [^ \n]+ `)

// banksOfSize are the banks whose template hash has a given size.
func banksOfSize(n int) []mr.Alg {
	var out []mr.Alg
	for _, a := range append([]mr.Alg{mr.SHA1}, PerBank...) {
		if a.Size() == n {
			out = append(out, a)
		}
	}
	return out
}

// Detect guesses the format of a list from its first bytes. An ascii list
// is one whose first line looks like "PCR HASH TEMPLATE ..." with a hash of
// 40, 64, 96 or 128 hex digits; a binary list is one whose length fields
// are consistent, for some digest size, up to the end of head. The digest
// size gives the bank (sha1 20, sha384 48, sha512 64); when more than one
// bank is possible (sha256 and sm3 share 32 bytes, or a crafted list whose
// lengths add up under two sizes), the bank is the one whose digest of an
// entry's template data is the listed hash, and a list where that does not
// single out one bank is not detected: ok is false (give --format).
func Detect(head []byte) (f eventlog.Format, ok bool) {
	c := detectCandidates(head)
	if len(c) != 1 {
		return "", false
	}
	return c[0], true
}

// DetectNamed is Detect that also reads what the list's file name says
// (FileNameFormat): the name settles a choice Detect cannot make between
// banks the contents allow (sha256 or sm3), and a name that contradicts
// the contents (a sha256 list named binary_runtime_measurements_sha384) is
// an error wrapping mr.ErrMalformed.
func DetectNamed(head []byte, path string) (eventlog.Format, error) {
	c := detectCandidates(head)
	named, hasName := FileNameFormat(path)
	switch {
	case hasName && len(c) > 0:
		for _, f := range c {
			if f == named {
				return f, nil
			}
		}
		return "", fmt.Errorf("%w: the file name says %s, but the list reads as %s", mr.ErrMalformed, named, joinFormats(c))
	case len(c) == 1:
		return c[0], nil
	case len(c) > 1:
		return "", fmt.Errorf("%w: the list reads as %s alike: give --format", mr.ErrMalformed, joinFormats(c))
	}
	return "", fmt.Errorf("%w: not an IMA list (ascii or binary)", mr.ErrMalformed)
}

func joinFormats(fs []eventlog.Format) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = string(f)
	}
	return strings.Join(s, " and ")
}

// detectCandidates returns the formats head can be. One bank per digest
// size whose lengths are consistent; where that leaves more than one, only
// the banks whose hash of the first checkable entry is the listed one (and
// all of them when none is).
func detectCandidates(head []byte) []eventlog.Format {
	if m := asciiLine.FindSubmatch(head); m != nil {
		return confirm(head, true, banksOfSize(len(m[1])/2))
	}
	// Strong: every entry in head parses and at least one is whole. Weak:
	// the SHA-1 reader's old rule, the first entry parses or is cut.
	var strong, weak []mr.Alg
	for _, size := range [...]int{20, 32, 48, 64} {
		n, all, first := consistent(head, size)
		switch {
		case all && n > 0:
			strong = append(strong, banksOfSize(size)...)
		case first && size == 20:
			weak = append(weak, mr.SHA1)
		}
	}
	if len(strong) == 0 {
		strong = weak
	}
	return confirm(head, false, strong)
}

// consistent reads head as a binary list of template hashes of size bytes:
// how many whole entries it holds, whether every one parsed (a cut last
// entry is fine: head is the start of a file), and whether the first one
// did. Like the SHA-1 reader before it, a head of 28 bytes or more is
// required.
func consistent(head []byte, size int) (entries int, all, first bool) {
	if len(head) < 28 {
		return 0, false, false
	}
	r := NewBinaryReader(bytes.NewReader(head), Options{Bank: banksOfSize(size)[0]})
	for {
		_, err := r.Next()
		switch {
		case err == nil:
			entries++
			continue
		case err == io.EOF || errors.Is(err, ErrTruncated):
			return entries, true, true
		}
		return entries, false, entries > 0
	}
}

// confirm narrows banks, when more than one, to those whose digest of the
// first checkable entry's template data is the listed hash. Ambiguity left
// (none or several confirmed) keeps every bank: the caller refuses it.
func confirm(head []byte, ascii bool, banks []mr.Alg) []eventlog.Format {
	if len(banks) > 1 {
		var ok []mr.Alg
		for _, a := range banks {
			if firstChecks(head, ascii, a) {
				ok = append(ok, a)
			}
		}
		if len(ok) == 1 {
			banks = ok
		}
	}
	out := make([]eventlog.Format, len(banks))
	for i, a := range banks {
		out[i] = BankFormat(ascii, a)
	}
	return out
}

// firstChecks reports whether, read as a list of bank's hashes, head's
// first entry with known template data that is no violation has bank's
// digest of that data as its listed hash.
func firstChecks(head []byte, ascii bool, bank mr.Alg) bool {
	var r *Reader
	if ascii {
		r = NewASCIIReader(bytes.NewReader(head), Options{Bank: bank})
	} else {
		r = NewBinaryReader(bytes.NewReader(head), Options{Bank: bank})
	}
	for {
		e, err := r.Next()
		if err != nil {
			return false
		}
		if e.TemplateData == nil || e.IsViolation() {
			continue
		}
		return CheckTemplateHash("", e) == nil
	}
}

// ListFileName returns the kernel's name of bank's list under
// /sys/kernel/security/ima: binary_runtime_measurements_sha384,
// ascii_runtime_measurements_sm3, ...
func ListFileName(ascii bool, bank mr.Alg) string {
	kind := "binary"
	if ascii {
		kind = "ascii"
	}
	return kind + "_runtime_measurements_" + kernelBankName(bank)
}
