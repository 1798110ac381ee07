package vmr

import (
	"context"
	"errors"
	"fmt"

	"github.com/ccmr-dev/ccmr/eventlog/aael"
)

// ErrReservedRecord is returned by AppendRecord for a record whose domain
// ccmr gives a meaning to: a virtual-register record (mr_*, which Extend
// writes) or a bookkeeping record (domain ccmr, which Cut writes).
var ErrReservedRecord = errors.New("record of a domain reserved to ccmr")

// AppendRecord logs rec, a runtime-log record of another writer (the CoCo
// attestation agent's `domain operation content`), and extends the backing
// register with the digest of its entry, exactly as the agent writes it:
// the same entry, the same protocol, queue and group commit as Extend (the
// record is fsynced before the extend; a crash between them is rolled
// forward by the next Open).
//
// rec must pass aael's rules (printable ASCII, no LF, at most
// aael.MaxRecordSize bytes). Records that would change what a virtual
// register or a snapshot says are refused with ErrReservedRecord and
// nothing is written: a domain starting with mr_ (write those with Extend,
// under the authorization of that register) and the domain ccmr (only Cut
// writes a snapshot: one in the middle of a segment would make the log
// unreplayable, and its values are trusted by replay).
func (s *Store) AppendRecord(ctx context.Context, rec aael.Record) error {
	if err := rec.Validate(); err != nil {
		return fmt.Errorf("vmr: %w", err)
	}
	switch {
	case rec.IsVirtual():
		return fmt.Errorf("vmr: domain %s: %w (a virtual-register record is written by Extend)", rec.Domain, ErrReservedRecord)
	case rec.Domain == aael.DomainCCMR:
		return fmt.Errorf("vmr: domain %s: %w", rec.Domain, ErrReservedRecord)
	}
	owner := new(byte)
	_, err := s.submit(ctx, owner, []*pending{{rec: rec, done: make(chan result, 1), owner: owner}})
	return err
}
