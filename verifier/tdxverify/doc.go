// Package tdxverify verifies Intel TDX quotes offline: the quote's
// signature chain (attestation key, QE report, PCK certificate to Intel's
// SGX Root CA) and, with Intel PCS collateral in the QuoteCollateralV3
// JSON layout, the collateral itself (TCB info, QE identity, root CA and
// PCK CRLs, their issuer chains and signatures) and the platform's TCB
// status with its advisory IDs, all at a chosen time and never over the
// network.
//
// Quote v4 and v5 take one path: every signature and certificate is
// checked once, here. go-tdx-guest's verify.TdxQuote used to run after
// these checks on v4 and repeat them (about half the time of a
// verification); the checks it made that ccmr did not (Intel's PCK
// certificate profile: X.509 v3, ECDSA-SHA256, P-256, the three subject
// names) are now made here for both versions, and a test keeps the two
// readings side by side on the corpus. Two parts are hand-written here
// because go-tdx-guest v0.3.1 cannot serve them:
//
//   - Quote v5 (TD report 1.5 with TEE_TCB_SVN2 and MRSERVICETD, body
//     descriptor before the body): abi.QuoteToProto rejects every version
//     but 4, so ParseQuote reads v4 and v5 by hand (Intel TDX DCAP Quoting
//     Library API, appendix A) and the signature chain is checked with
//     crypto/ecdsa and crypto/x509.
//   - Collateral: go-tdx-guest only takes collateral by fetching it from
//     Intel PCS, compares the FMSPC case-sensitively (Intel's collateral
//     writes it upper case, the PCK certificate's extension decodes lower
//     case, so real collateral is rejected), and answers only pass/fail
//     with "UpToDate" as the only pass; it reports neither the status nor
//     the advisories. Here the FMSPC and PCEID are compared
//     case-insensitively, the TCB level is found as Intel's QVL finds it
//     (every SGX and TDX component compared on its own, the TDX module
//     judged by its module identity, the QE by its identity, TD report 1.5
//     relaunch advice from TEE_TCB_SVN2), and the caller's list of allowed
//     statuses decides.
//
// The collateral's own JSON parsing, the PCK certificate's SGX extensions
// and the TCB info types come from go-tdx-guest's pcs package.
package tdxverify
