package ima

import (
	"bytes"
	"fmt"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// BootAggregateName is the file name of the boot_aggregate entry, IMA's
// first measurement, which binds the list to the firmware PCRs.
const BootAggregateName = "boot_aggregate"

// BootAggregateRule says which PCRs a boot_aggregate covers.
type BootAggregateRule int

// The two kernel rules.
const (
	// PCRs0to9: H(PCR0 || ... || PCR9), the rule of kernels since 5.8 for
	// banks other than sha1.
	PCRs0to9 BootAggregateRule = 9
	// PCRs0to7: H(PCR0 || ... || PCR7), older kernels, and every kernel's
	// sha1 boot_aggregate.
	PCRs0to7 BootAggregateRule = 7
)

// String names the rule, e.g. "PCR 0-9".
func (r BootAggregateRule) String() string { return fmt.Sprintf("PCR 0-%d", int(r)) }

// BootAggregate computes the boot_aggregate of bank alg's PCR values
// under rule. A missing PCR counts as zero.
func BootAggregate(alg mr.Alg, pcrs map[int]mr.Digest, rule BootAggregateRule) (mr.Digest, error) {
	if !alg.Valid() {
		return mr.Digest{}, fmt.Errorf("%w: algorithm %v", mr.ErrUnsupported, alg)
	}
	h := alg.New()
	for i := 0; i <= int(rule); i++ {
		v, ok := pcrs[i]
		if !ok {
			v = mr.Zero(alg)
		}
		if v.Alg != alg || len(v.Bytes) != alg.Size() {
			return mr.Digest{}, fmt.Errorf("%w: PCR %d is %v, want a %v value", mr.ErrDigestSize, i, v, alg)
		}
		h.Write(v.Bytes)
	}
	return mr.Digest{Alg: alg, Bytes: h.Sum(nil)}, nil
}

// CheckBootAggregate checks a boot_aggregate entry against PCR values, per
// bank (pcrs[alg][index]): the bank is the entry's digest algorithm, as the
// kernel reads the bank of its hash algorithm. It accepts either kernel
// rule and returns the one that matched (a sha1 boot_aggregate always
// covers PCR 0-7). A digest that matches neither rule, or an all-zero one
// (no TPM when IMA started), is a *eventlog.Mismatch naming the entry.
func CheckBootAggregate(file string, e *Entry, pcrs map[mr.Alg]map[int]mr.Digest) (BootAggregateRule, error) {
	if e.FileName() != BootAggregateName {
		return 0, fmt.Errorf("%w: entry %d is %q, not the boot_aggregate", mr.ErrMalformed, e.Index, e.FileName())
	}
	name, d, ok := e.FileDigest()
	if !ok {
		return 0, fmt.Errorf("%w: boot_aggregate entry has no digest", mr.ErrMalformed)
	}
	alg, err := mr.ParseAlg(name)
	if err != nil {
		return 0, err
	}
	got := mr.Digest{Alg: alg, Bytes: append([]byte(nil), d...)}
	mismatch := func(want mr.Digest, reason string) error {
		return &eventlog.Mismatch{File: file, Register: "boot_aggregate", Record: e.Index, Offset: e.Offset,
			Expected: want, Computed: got, Reason: reason}
	}
	if bytes.Equal(d, make([]byte, len(d))) {
		return 0, mismatch(mr.Digest{}, "boot_aggregate is zero: no TPM when IMA started")
	}
	bank, ok := pcrs[alg]
	if !ok {
		return 0, fmt.Errorf("%w: no %v PCR values to check the boot_aggregate against", mr.ErrUnsupported, alg)
	}
	rules := []BootAggregateRule{PCRs0to9, PCRs0to7}
	if alg == mr.SHA1 {
		rules = rules[1:]
	}
	var want mr.Digest
	for _, r := range rules {
		if want, err = BootAggregate(alg, bank, r); err != nil {
			return 0, err
		}
		if want.Equal(got) {
			return r, nil
		}
	}
	return 0, mismatch(want, "boot_aggregate matches the PCR values under neither rule (PCR 0-9, PCR 0-7)")
}
