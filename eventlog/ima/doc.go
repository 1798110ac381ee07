// Package ima reads Linux IMA measurement lists and replays them.
//
// The kernel exports the list twice, under /sys/kernel/security/ima:
// binary_runtime_measurements and ascii_runtime_measurements. NewBinaryReader
// and NewASCIIReader stream either one entry at a time, in constant memory
// whatever the list's length, and both yield the same Entry: the PCR, the
// listed SHA-1 template hash, the template name, the template data exactly
// as the kernel hashed it, and its fields (file digest, file name, signature,
// buffer) for the templates ima, ima-ng, ima-sig, ima-buf and ima-modsig and,
// generically, for any other template whose data is a sequence of
// length-prefixed fields. Big-endian lists (a big-endian kernel without
// ima_canonical_fmt) are detected and read.
//
// TemplateHash gives the value an entry extends into a PCR bank: the listed
// SHA-1 for the sha1 bank, H(template data) for the others (kernels ≥ 5.8),
// and all-ones for a violation (a listed hash of zeros). Replay folds a list
// into PCR 10 (or whichever PCR each entry names) of any set of banks and
// compares with expected values; ReplayVirtual folds sha384(template data)
// per entry into the mr_ima virtual register (docs/design.md, "The CC
// runtime log") and can check
// entry i against mr_ima record i. VerifySignature checks ima-sig and
// ima-modsig signatures (digsig v2) against RSA, NIST P-curve and secp256k1
// keys (CheckSignatures checks a whole list, ReplaySigned does it while
// replaying; both on every core), and CheckBootAggregate checks the
// boot_aggregate entry under both kernel rules (PCR 0-9 and the older PCR
// 0-7).
//
// Why hand-written: go-eventlog, the maintained Go event-log library ccmr
// uses for TCG2 logs and the CCEL, has no IMA parser, and no maintained Go
// package was found that streams both encodings with the legacy ima template,
// big-endian lists and per-bank template hashes. So this package implements
// the kernel's format (security/integrity/ima/ima_fs.c, ima_template_lib.c,
// ima_crypto.c) directly, and the tests check it against evmctl
// (ima-evm-utils) and lists written by real kernels.
package ima
