// Package tcg reads TCG firmware event logs: the TCG2 crypto-agile log a
// UEFI firmware hands to the OS (/sys/kernel/security/tpm0/binary_bios_measurements),
// the older SHA1-format log (TCG_PCR_EVENT entries, TPM 1.2 and early TPM 2.0
// firmware), and the confidential-computing event log (CCEL) of TDX and Hygon
// CSV guests, which uses the same crypto-agile encoding with CC measurement
// register indexes (0 = MRTD, 1..4 = RTMR0..3).
//
// Use:
//
//	l, err := tcg.Parse(name, data, log.FormatTCG2) // or log.FormatCCEL, log.FormatAuto
//	rep, err := l.Replay()                          // *log.Replay: pcrN per bank, or mrtd/rtmrN
//	err = l.Check([]mr.Value{...})                  // *log.Mismatch on the first disagreement
//	for ev := range l.Show() { ... }                // log.Event values for `ccmr log show`
//
// Parse keeps every record: record 0 is the header (Spec ID) entry of a
// crypto-agile log. Bad input yields a *log.Error naming the file, the record
// number and the byte offset; no input makes the package panic.
//
// Replay folds each record's digest into its register, bank by bank, from
// zero, except that EV_NO_ACTION records are never extended and a
// "StartupLocality" EV_NO_ACTION record on PCR 0 sets PCR 0's start value to
// its locality (…03 for locality 3, …04 for the H-CRTM locality 4). An
// EV_EFI_HCRTM_EVENT record is extended like any other: its digest is the
// H-CRTM measurement the TPM folded in at _TPM_Hash_End; the start value
// comes only from the StartupLocality record (an H-CRTM record without one
// is flagged by Show). SP800-155 Event3 records and the Spec ID record are
// EV_NO_ACTION and so not extended.
//
// Show reports, per record, problems that leave the log readable: event data
// that does not hash to the recorded digest (for the event types whose
// digest the specification defines as the hash of the event data) and a
// second EV_SEPARATOR on the same register. The replay still uses the
// recorded digests.
//
// A CCEL is usually read from a buffer of the ACPI table's log area length:
// after the last record the rest is 0xFF (or zero) fill; padding ends the
// log cleanly (Log.End says where). ParseACPITable reads the ACPI "CCEL"
// table and ReadCCEL reads both from /sys/firmware/acpi/tables.
//
// # Why the parser is written by hand
//
// github.com/google/go-eventlog (v0.0.2) parses the same encodings, and this
// package uses its event-type names (tcg.EventType.TCGString) and its UEFI
// structure parsers (tcg.ParseUEFIVariableData, tcg.ParseEFIImageLoad) for
// the Text of `log show`; the tests cross-check our records against its
// parser. Its log parser does not serve as the core because it:
// keeps no byte offsets or record numbers in its errors; rejects logs with
// banks other than sha1/sha256/sha384 (the SM3_256 bank of Hygon CSV
// CCELs and H-CRTM logs, the sha512 bank of SeaBIOS logs); exposes only one
// bank's digest per event (Events(hash)) and hides the raw records; replays
// only against given register values (it has no "compute the values" mode)
// and silently applies workarounds that inject events; panics on event types
// it does not know (Event.UntrustedType); and accepts a CCEL's 0xFF padding
// only by an option while treating zero fill as records.
package tcg
