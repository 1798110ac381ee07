// Package verifier judges an evidence bundle (package bundle) offline, layer
// by layer, and says TRUSTED, TRUSTED (weakened: why) or NOT TRUSTED with
// the check that failed:
//
//   - layer 0, evidence: the hardware evidence's signature chains to a
//     pinned key or the vendor's roots (TPM quote, TDX quote with its
//     collateral, SNP report, Azure HCL report, sim statement), and binds
//     the expected nonce;
//   - layer 1, logs: every firmware, runtime and other writer's log replays
//     to the register values layer 0 proved, from the reset value or a
//     proven start;
//   - layer 2, virtual registers: the runtime log's records give the
//     virtual registers' values, and the guest's claims match them;
//   - layer 3, application logs: the IMA list against mr_ima (and the
//     quoted PCR 10 on a TPM), an application's own log against its
//     virtual register;
//   - layer 4, policy: the values and events a policy requires.
//
// Verify returns an error only for input it cannot use at all (a malformed
// bundle, an unknown log format: exit 2 in the CLI); every failed check is
// a verdict. A check that cannot run fails. With a MonitorState, repeated
// bundles of one machine are verified from where the last trusted one
// stopped (monitor*.go). Logs are read only through bundle.Log's Size, Open
// and Bytes, so the large logs of a streamed bundle (the runtime log, the
// IMA list) are read from where they are, never copied into memory whole.
package verifier
