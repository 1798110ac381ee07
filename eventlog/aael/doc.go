// Package aael reads, writes and replays the CC runtime log, the log on
// which ccmr's virtual registers ride (docs/design.md, "The CC runtime log";
// docs/formats/runtime-log.md).
//
// Records are AAEL events (the Confidential Containers attestation agent
// event log), `domain operation content`. On disk the log is what the
// attestation agent writes: a headerless sequence of TCG_PCR_EVENT2
// entries, each an EV_EVENT_TAG event holding a TCG_PCClientTaggedEvent
// with ID "AAEL" around the record text, and one digest, H(tagged event),
// which is extended into the backing register (RTMR3 on TDX, a PCR on a
// TPM). An optional first EV_NO_ACTION entry `INIT ALG/HEX` gives the
// register's value when the log began. The older aael-text form (an INIT
// line, then one record per line, every line extended as H(line)) is read
// and written too.
//
// Virtual registers are records `mr_NAME extend ALG/HEX`; each folds
// v = H(v || digest) from zeros (or from the value a leading
// `ccmr snapshot` record gives, after a cut).
//
// The codec is hand-written: go-eventlog parses TCG2 logs that start with a
// Spec ID header and knows nothing of AAEL, and this format is headerless,
// must be written byte for byte as the agent writes it, streamed without
// holding the log in memory, and checked field by field with errors that
// name the record and its byte offset.
package aael
