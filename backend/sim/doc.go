// Package sim is ccmr's file-backed software device: measurement registers
// kept in a state folder, with the same semantics as hardware registers
// (extend only, new = H(old || digest)), for development, tests and
// machines without confidential-computing hardware. Its evidence is signed by
// a locally generated key and marked platform "sim": never trust it for
// anything but testing.
//
// # Layouts
//
// LayoutTDX (default) emulates a TDX guest: mrtd (CC MR index 0, read-only),
// rtmr0..rtmr3 (index 1..4, sha384, extendable) and the read-only 48-byte
// fields mrconfigid, mrowner, mrownerconfig (index -1), all starting at
// zeros. LayoutTPM emulates a PC Client TPM seen from locality 0, with
// pcr0..pcr23 in the sha1, sha256 and sha384 banks: PCRs 0..16 and 23
// start at zeros and are extendable; PCRs 17..22 (DRTM, localities 2..4)
// start at all 0xFF, as after a TPM power-on, and are read-only. PCR 16 and
// 23 are resettable on a real TPM (TPMResettable); the sim device has no
// reset, but a backing register for virtual registers must still avoid them.
// The layout is written into the state when the folder is created; opening
// the folder later with another layout fails with ErrLayout.
//
// # State folder
//
// The folder (mode 0700) holds:
//
//	state.json       {"format":"ccmr-sim-state/v1","layout":..,"seq":N,"registers":[{"name","alg","value"}..]}
//	lock             internal/flock target; shared for reads, exclusive for read-modify-write
//	attest-key.pem   ECDSA P-384 private key, PKCS#8 PEM, mode 0600, made on first Attest
//
// Every update takes the exclusive lock, reads the state, changes it, writes
// state.json.tmp and renames it over state.json, then drops the lock:
// concurrent processes never lose an update and readers never see a torn
// file. Nothing is fsynced: the registers are meant to be as volatile as
// hardware ones. They survive any process crash; a power loss may bring back
// an earlier state, as it resets real registers. A state file that does not
// parse is reported with its path and never overwritten.
//
// # Why hand-written
//
// No maintained library offers a multi-process, file-backed register store
// with these semantics; the pieces (flock, rename, crypto/ecdsa) are in the
// standard library and internal/flock (flock(2) on Unix, LockFileEx on
// Windows), so the package builds on every system ccmr supports.
package sim
