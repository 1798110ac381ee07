// Package vmr keeps virtual registers (mr_ima, mr_ctr.<id>, …) on top of one
// real backing register and its CC runtime log (docs/design.md, "The CC
// runtime log": the log format, segments, the writing protocol).
//
// Every virtual extend is a record "NAME extend ALG/HEX" appended to the
// runtime log and fsynced before the hash of the record is extended into the
// backing register, all under an exclusive lock on the log file, so that any
// number of processes can share one register. A Store batches the records of
// goroutines that wait at the same time into one write and one fsync (group
// commit); processes take turns through the file lock.
//
// Recovery on Open: the log is replayed against the backing register. Equal
// means clean. Equal to the replay without its last k records, 1 ≤ k ≤
// MaxBatch (the most records one append holds), means a writer died after
// logging a batch and before extending all of it: the logged-but-not-extended
// records of the last batch are rolled forward in order (extended now: none
// was reported as done, and extending them makes the log true). Those records
// are always read from the log itself, never taken on the checkpoint's word.
// Anything else is ErrInconsistent naming the register, the log and the last
// record that agrees, and nothing is written.
//
// Open is O(1) in the log's history: it starts from the checkpoint beside the
// log (REGISTER.ckpt: the log's size, the register's value, every virtual
// register's value and count), used only while it is bound to the log's
// first and last bytes, its last entry and the register's current value, and
// replays only what was appended after it; any disagreement means a replay
// from the log's start, as before (checkpoint.go says what is checked and
// why). Verify and Cut replay the whole log.
//
// The folder records its backing register in the file BackingFile, written
// before its first log, so that later Opens (other commands, other
// processes) use that register without being told and refuse another one
// (ErrBackingMismatch). On a TPM the default is PCR 14 (TPMDefaultBacking);
// registers the guest can reset (PCR 16, 23) need Options.AllowResettable.
// The folder, the backing file and the log must belong to the caller and be
// writable by nobody else. Replays start at the register's reset value
// (mr.ResetValue: all ones on PCRs 17-22).
//
// Locks are internal/flock locks, so a wait for the log's lock (or the
// forwarder's) ends with the caller's context.
package vmr
