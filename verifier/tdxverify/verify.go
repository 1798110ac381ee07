package tdxverify

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	_ "embed"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tdx-guest/pcs"

	"github.com/ccmr-dev/ccmr/mr"
)

// IntelSGXRootCAPEM is Intel's SGX Root CA certificate, the default trust
// anchor of PCK certificates and PCS collateral (copied from go-tdx-guest
// v0.3.1 verify/trusted_root.pem; see README.md).
//
//go:embed intel_sgx_root_ca.pem
var IntelSGXRootCAPEM []byte

// Check names, as CheckError.Check carries them.
const (
	CheckStructure    = "quote structure"
	CheckPCKChain     = "PCK certificate chain"
	CheckQEReportSig  = "QE report signature"
	CheckQEReportData = "QE report data"
	CheckQuoteSig     = "quote signature"
	CheckRootCRL      = "root CA CRL"
	CheckPCKCRL       = "PCK CRL"
	CheckTCBInfo      = "TCB info"
	CheckQEIdentity   = "QE identity"
	CheckTCBLevel     = "TCB level"
	CheckTCBStatus    = "TCB status"
	CheckDebug        = "TD attributes"
)

// Errors callers may tell apart (wrapped in a *CheckError).
var (
	// ErrSignature: a signature does not verify.
	ErrSignature = errors.New("signature does not verify")
	// ErrExpired: a certificate, CRL or collateral item is not valid at
	// Options.At.
	ErrExpired = errors.New("not valid at the verification time")
	// ErrRevoked: a certificate is on a CRL.
	ErrRevoked = errors.New("certificate revoked")
	// ErrTCBNotAllowed: the TCB status is not one of Options.AllowedTCB.
	ErrTCBNotAllowed = errors.New("TCB status not allowed")
	// ErrDebugTD: the TD is debuggable (TDATTRIBUTES.DEBUG), so its memory
	// is open to the host.
	ErrDebugTD = errors.New("debug TD")
	// ErrMismatch: the collateral does not belong to this platform or QE.
	ErrMismatch = errors.New("collateral does not match the quote")
)

// CheckError is a check that failed on a quote that parsed: the quote is
// not trusted. Check is one of the Check* names.
type CheckError struct {
	Check string
	Err   error
}

// Error names the check that failed.
func (e *CheckError) Error() string { return "tdx " + e.Check + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *CheckError) Unwrap() error { return e.Err }

func checkErr(check string, err error) error { return &CheckError{Check: check, Err: err} }

// Options configure Verify.
type Options struct {
	// At is the time at which certificates, CRLs and collateral must be
	// valid; zero means now.
	At time.Time
	// Roots are the trust anchors of the PCK chain and of the collateral's
	// issuer chains; nil means Intel's SGX Root CA (IntelSGXRootCAPEM).
	Roots *x509.CertPool
	// AllowedTCB lists TCB statuses trusted besides "UpToDate", which is
	// always trusted; a name that is not a TCB status is an error.
	AllowedTCB []string
	// AllowDebug accepts a debuggable TD (TDATTRIBUTES bit 0).
	AllowDebug bool
}

// Result is what a quote proves, and how far. On a *CheckError Verify
// still returns the Result filled as far as it got (registers are then
// claims, not proven values).
type Result struct {
	Version  int
	BodyType int
	// Registers: mrtd, rtmr0..rtmr3 (sha384) and mrconfigid, mrowner,
	// mrownerconfig, with the names and indexes backend/tdx uses.
	Registers  []mr.Value
	ReportData [64]byte
	// Body is the whole TD quote body (TEE TCB SVNs, MRSEAM, attributes,
	// and for a TD report 1.5 TEE_TCB_SVN2 and MRSERVICETD).
	Body TDReport
	// FMSPC of the platform (lower-case hex, from the PCK certificate).
	FMSPC string
	// TCBStatus is Intel's status for this platform ("" when no collateral
	// was given or no TCB level matched); Advisories its INTEL-SA IDs.
	TCBStatus  string
	Advisories []string
	// Checked and NotChecked say, for people, what was verified and what
	// could not be.
	Checked    []string
	NotChecked []string
}

// registerNames are the names and CC MR indexes of backend/tdx.
var registerNames = []struct {
	name  string
	index int
}{{"mrtd", 0}, {"rtmr0", 1}, {"rtmr1", 2}, {"rtmr2", 3}, {"rtmr3", 4}, {"mrconfigid", -1}, {"mrowner", -1}, {"mrownerconfig", -1}}

func (b *TDReport) registers() []mr.Value {
	vals := [][48]byte{b.MRTD, b.RTMR[0], b.RTMR[1], b.RTMR[2], b.RTMR[3], b.MRConfigID, b.MROwner, b.MROwnerConfig}
	out := make([]mr.Value, len(vals))
	for i, r := range registerNames {
		out[i] = mr.Value{
			Register: mr.Register{Name: r.name, Alg: mr.SHA384, Size: 48, Flags: mr.Reported, Index: r.index},
			Digest:   mr.Digest{Alg: mr.SHA384, Bytes: slices.Clone(vals[i][:])},
		}
	}
	return out
}

// DefaultRoots returns a pool holding Intel's SGX Root CA; the pool is
// the caller's.
func DefaultRoots() (*x509.CertPool, error) {
	p, err := defaultRoots()
	if err != nil {
		return nil, err
	}
	return p.Clone(), nil
}

// defaultRoots parses the embedded root once per process, on first use;
// Verify only reads the pool, so every call shares it.
var defaultRoots = sync.OnceValues(func() (*x509.CertPool, error) {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(IntelSGXRootCAPEM) {
		return nil, errors.New("tdx: embedded Intel SGX Root CA does not parse")
	}
	return p, nil
})

// Verify checks a TDX quote (v4 or v5) and, when collateral (QuoteCollateralV3
// JSON) is given, Intel's collateral for it, all offline at opts.At. It
// returns mr.ErrMalformed (or mr.ErrUnsupported) for a quote or collateral
// that does not parse, a *CheckError for a check that fails, and nil when
// the quote is trusted: signatures and chains verify, and, with
// collateral, the TCB status is one of opts.AllowedTCB. Without collateral
// the TCB is not judged and Result.NotChecked says so.
func Verify(quote []byte, collateral []byte, opts Options) (*Result, error) {
	if opts.At.IsZero() {
		opts.At = time.Now()
	}
	if opts.Roots == nil {
		p, err := defaultRoots()
		if err != nil {
			return nil, err
		}
		opts.Roots = p
	}
	allowed, err := AllowedStatuses(opts.AllowedTCB)
	if err != nil {
		return nil, err
	}
	q, err := ParseQuote(quote)
	if err != nil {
		return nil, err
	}
	var pc *parsedCollateral
	if len(collateral) > 0 {
		c, err := ParseCollateral(collateral)
		if err != nil {
			return nil, err
		}
		if pc, err = c.parse(); err != nil {
			return nil, err
		}
	}
	res := &Result{Version: int(q.Version), BodyType: int(q.BodyType), Registers: q.Body.registers(),
		ReportData: q.Body.ReportData, Body: q.Body}
	v := &verifier{q: q, raw: quote, opts: opts, res: res}
	if err := v.quoteChecks(); err != nil {
		return res, err
	}
	if pc == nil {
		res.NotChecked = append(res.NotChecked,
			"TCB: not checked, no collateral",
			"QE identity: not checked, no collateral",
			"revocation (root CA CRL, PCK CRL): not checked, no collateral")
	} else if err := v.collateralChecks(pc, allowed); err != nil {
		return res, err
	}
	if q.Body.TDAttributes[0]&1 != 0 {
		if !opts.AllowDebug {
			return res, checkErr(CheckDebug, ErrDebugTD)
		}
		res.Checked = append(res.Checked, "TD is a debug TD (allowed by the options)")
	} else {
		res.Checked = append(res.Checked, "TD is not a debug TD")
	}
	// Bytes after the signature data are signed by nothing; a fixed-size
	// quote buffer leaves zeros there, anything else is refused.
	if tail := quote[q.End:]; len(tail) > 0 {
		if i := slices.IndexFunc(tail, func(b byte) bool { return b != 0 }); i >= 0 {
			return res, checkErr(CheckStructure, fmt.Errorf("%w: offset %d: non-zero byte after the signature data (unsigned trailing data, %d bytes)", mr.ErrMalformed, q.End+i, len(tail)))
		}
		res.Checked = append(res.Checked, fmt.Sprintf("%d bytes after the signature data are zero padding", len(tail)))
	}
	return res, nil
}

// statuses are every TCB status name Intel's collateral and QVL use.
var statuses = []string{StatusUpToDate, StatusSWHardeningNeeded, StatusConfigurationNeeded, StatusConfigurationAndSWHardeningNeeded,
	StatusOutOfDate, StatusOutOfDateConfigurationNeeded, StatusRevoked, StatusTDRelaunchAdvised, StatusTDRelaunchAdvisedConfigurationNeeded}

// AllowedStatuses returns the TCB statuses trusted when extra are allowed
// besides UpToDate: UpToDate and extra. Allowing more statuses never
// refuses an UpToDate platform, and a name that is not a TCB status (a
// typo would otherwise allow nothing, or hide what was meant) is an error.
func AllowedStatuses(extra []string) ([]string, error) {
	out := []string{StatusUpToDate}
	for _, s := range extra {
		if !slices.Contains(statuses, s) {
			return nil, fmt.Errorf("%w: %q is not a TDX TCB status (one of %s)", mr.ErrMalformed, s, strings.Join(statuses, ", "))
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

type verifier struct {
	q    *Quote
	raw  []byte
	opts Options
	res  *Result

	pck, pckCA, root *x509.Certificate // the verified PCK chain
	exts             *pcs.PckExtensions
}

func (v *verifier) checked(s string, a ...any) {
	v.res.Checked = append(v.res.Checked, fmt.Sprintf(s, a...))
}

// verifyChain checks that chain[0] chains to the roots at At through the
// other certificates and returns the verified path, root last. A
// self-issued certificate of the chain (the root Intel's chains end with)
// is not offered as an intermediate: it can only be the anchor, which must
// come from the roots, and offered both ways crypto/x509 checks the
// signature of the same link twice.
func (v *verifier) verifyChain(chain []*x509.Certificate) ([]*x509.Certificate, error) {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		if !bytes.Equal(c.RawSubject, c.RawIssuer) {
			inter.AddCert(c)
		}
	}
	paths, err := chain[0].Verify(x509.VerifyOptions{Roots: v.opts.Roots, Intermediates: inter, CurrentTime: v.opts.At,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		var ie x509.CertificateInvalidError
		if errors.As(err, &ie) && ie.Reason == x509.Expired {
			return nil, fmt.Errorf("%w: %v", ErrExpired, err)
		}
		return nil, err
	}
	return paths[0], nil
}

// p256Verify checks an r||s ECDSA P-256 SHA-256 signature.
func p256Verify(pub *ecdsa.PublicKey, msg, sig []byte) bool {
	if len(sig) != 64 {
		return false
	}
	h := sha256.Sum256(msg)
	return ecdsa.Verify(pub, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
}

func certP256(c *x509.Certificate) (*ecdsa.PublicKey, error) {
	k, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("certificate %q: key is not ECDSA P-256", c.Subject.CommonName)
	}
	return k, nil
}

// quoteChecks verifies the quote on its own: PCK chain to the roots and
// to Intel's certificate profile, QE report signed by the PCK key and
// binding the attestation key, quote signed by the attestation key. Each
// signature is verified once; v4 and v5 take the same path.
func (v *verifier) quoteChecks() error {
	q := v.q
	ders, err := splitPEM(q.PCKChain, 0)
	if err != nil {
		return checkErr(CheckStructure, err)
	}
	if len(ders) != 3 {
		return checkErr(CheckPCKChain, fmt.Errorf("%d certificates, want 3 (PCK, PCK CA, root)", len(ders)))
	}
	var certs []*x509.Certificate
	for i, d := range ders {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return checkErr(CheckPCKChain, fmt.Errorf("certificate %d: %v", i, err))
		}
		certs = append(certs, c)
	}
	path, err := v.verifyChain(certs)
	if err != nil {
		return checkErr(CheckPCKChain, err)
	}
	if len(path) != 3 || !path[1].Equal(certs[1]) || !path[2].Equal(certs[2]) {
		return checkErr(CheckPCKChain, errors.New("the quote's CA and root certificates are not the ones the PCK certificate chains through"))
	}
	if err := pckProfile(certs); err != nil {
		return checkErr(CheckPCKChain, err)
	}
	v.pck, v.pckCA, v.root = certs[0], certs[1], path[2]
	if v.exts, err = pcs.PckCertificateExtensions(v.pck); err != nil {
		return checkErr(CheckPCKChain, fmt.Errorf("PCK certificate SGX extensions: %v", err))
	}
	v.res.FMSPC = strings.ToLower(v.exts.FMSPC)
	v.checked("PCK certificate chain (%s <- %s <- %s) valid at %s", v.pck.Subject.CommonName, v.pckCA.Subject.CommonName, v.root.Subject.CommonName, v.opts.At.UTC().Format(time.RFC3339))

	pckKey, err := certP256(v.pck)
	if err != nil {
		return checkErr(CheckPCKChain, err)
	}
	if !p256Verify(pckKey, q.QEReport, q.QEReportSig) {
		return checkErr(CheckQEReportSig, ErrSignature)
	}
	v.checked("QE report signed by the PCK key")
	qe := parseQEReport(q.QEReport)
	h := sha256.Sum256(append(slices.Clone(q.AttestKey), q.QEAuthData...))
	if !bytes.Equal(qe.reportData[:32], h[:]) || !bytes.Equal(qe.reportData[32:], make([]byte, 32)) {
		return checkErr(CheckQEReportData, errors.New("QE report data is not sha256(attestation key || QE auth data) padded with zeros"))
	}
	v.checked("QE report data binds the attestation key")
	ak := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(q.AttestKey[:32]), Y: new(big.Int).SetBytes(q.AttestKey[32:])}
	if !ak.Curve.IsOnCurve(ak.X, ak.Y) {
		return checkErr(CheckQuoteSig, errors.New("attestation key is not a P-256 point"))
	}
	if !p256Verify(ak, q.Signed, q.Signature) {
		return checkErr(CheckQuoteSig, ErrSignature)
	}
	v.checked("quote v%d (body type %d) signed by the attestation key (ECDSA P-256)", q.Version, q.BodyType)
	return nil
}

// The PCK chain's subjects, as Intel's PCK certificate profile names them
// (and go-tdx-guest's verify.TdxQuote requires).
const (
	cnRoot   = "Intel SGX Root CA"
	cnPCKCA  = "Intel SGX PCK Platform CA"
	cnPCKCrt = "Intel SGX PCK Certificate"
)

// pckProfile holds the PCK chain to Intel's certificate profile: every
// certificate X.509 v3, signed with ECDSA-SHA256, holding a P-256 key, and
// named for its place (PCK certificate, PCK Platform CA, SGX Root CA).
// These are the checks go-tdx-guest's verify.TdxQuote made on a v4 quote
// when ccmr ran it after its own; they are made here, for v4 and v5 alike,
// so that one path runs every check once. The signatures themselves are
// checked once, by x509.Certificate.Verify in quoteChecks.
func pckProfile(certs []*x509.Certificate) error {
	names := []string{cnPCKCrt, cnPCKCA, cnRoot}
	for i, c := range certs {
		if c.Version != 3 {
			return fmt.Errorf("certificate %d (%q): X.509 version %d, want 3", i, c.Subject.CommonName, c.Version)
		}
		if c.SignatureAlgorithm != x509.ECDSAWithSHA256 {
			return fmt.Errorf("certificate %d (%q): signature algorithm %v, want ECDSA-SHA256", i, c.Subject.CommonName, c.SignatureAlgorithm)
		}
		if _, err := certP256(c); err != nil {
			return fmt.Errorf("certificate %d: %w", i, err)
		}
		if cn := c.Subject.CommonName; cn != names[i] {
			return fmt.Errorf("certificate %d is %q, want %q", i, cn, names[i])
		}
	}
	return nil
}

// validCRL checks a CRL's signer, issuer and dates at At.
func (v *verifier) validCRL(crl *x509.RevocationList, issuer *x509.Certificate) error {
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("%w: not signed by %q: %v", ErrSignature, issuer.Subject.CommonName, err)
	}
	if !bytes.Equal(crl.RawIssuer, issuer.RawSubject) {
		return fmt.Errorf("issuer %q is not %q", crl.Issuer, issuer.Subject)
	}
	if v.opts.At.Before(crl.ThisUpdate) || (!crl.NextUpdate.IsZero() && v.opts.At.After(crl.NextUpdate)) {
		return fmt.Errorf("%w: CRL of %q valid %s to %s", ErrExpired, issuer.Subject.CommonName,
			crl.ThisUpdate.UTC().Format(time.RFC3339), crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	return nil
}

func revoked(crl *x509.RevocationList, c *x509.Certificate) error {
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(c.SerialNumber) == 0 {
			return fmt.Errorf("%w: %q (serial %x) revoked at %s", ErrRevoked, c.Subject.CommonName, c.SerialNumber, e.RevocationTime.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// signedJSON checks an issuer chain, the signature over the exact JSON
// text, and the document's validity window.
func (v *verifier) signedJSON(check string, chain []*x509.Certificate, body string, sig []byte, issue, next time.Time, rootCRL *x509.RevocationList) error {
	path, err := v.verifyChain(chain)
	if err != nil {
		return checkErr(check, fmt.Errorf("issuer chain: %w", err))
	}
	if cn := path[0].Subject.CommonName; cn != "Intel SGX TCB Signing" {
		return checkErr(check, fmt.Errorf("signed by %q, want \"Intel SGX TCB Signing\"", cn))
	}
	for _, c := range path[:len(path)-1] {
		if err := revoked(rootCRL, c); err != nil {
			return checkErr(check, err)
		}
	}
	k, err := certP256(path[0])
	if err != nil {
		return checkErr(check, err)
	}
	if !p256Verify(k, []byte(body), sig) {
		return checkErr(check, ErrSignature)
	}
	if v.opts.At.Before(issue) || v.opts.At.After(next) {
		return checkErr(check, fmt.Errorf("%w: valid %s to %s, verification time %s", ErrExpired,
			issue.UTC().Format(time.RFC3339), next.UTC().Format(time.RFC3339), v.opts.At.UTC().Format(time.RFC3339)))
	}
	return nil
}

func (v *verifier) collateralChecks(pc *parsedCollateral, allowed []string) error {
	at := v.opts.At.UTC().Format(time.RFC3339)
	// Root CA CRL: signed by the root, current; the PCK CA not revoked.
	if err := v.validCRL(pc.rootCRL, v.root); err != nil {
		return checkErr(CheckRootCRL, err)
	}
	if err := revoked(pc.rootCRL, v.pckCA); err != nil {
		return checkErr(CheckRootCRL, err)
	}
	v.checked("root CA CRL signed by the root and current at %s; PCK CA not revoked", at)

	// PCK CRL: its issuer chain verifies, it is the PCK CA's, current, and
	// the PCK certificate is not on it.
	path, err := v.verifyChain(pc.pckCRLChain)
	if err != nil {
		return checkErr(CheckPCKCRL, fmt.Errorf("issuer chain: %w", err))
	}
	if !path[0].Equal(v.pckCA) {
		return checkErr(CheckPCKCRL, fmt.Errorf("%w: CRL issuer chain starts with %q, the PCK certificate's CA is %q", ErrMismatch, path[0].Subject.CommonName, v.pckCA.Subject.CommonName))
	}
	if err := v.validCRL(pc.pckCRL, v.pckCA); err != nil {
		return checkErr(CheckPCKCRL, err)
	}
	if err := revoked(pc.pckCRL, v.pck); err != nil {
		return checkErr(CheckPCKCRL, err)
	}
	v.checked("PCK CRL signed by %q and current at %s; PCK certificate not revoked", v.pckCA.Subject.CommonName, at)

	// TCB info.
	ti := &pc.tcbInfo
	if err := v.signedJSON(CheckTCBInfo, pc.tcbChain, pc.raw.TCBInfo, pc.tcbSig, ti.IssueDate, ti.NextUpdate, pc.rootCRL); err != nil {
		return err
	}
	if ti.ID != "TDX" || ti.Version != 3 {
		return checkErr(CheckTCBInfo, fmt.Errorf("%w: id %q version %d, want TDX version 3", ErrMismatch, ti.ID, ti.Version))
	}
	if !strings.EqualFold(ti.Fmspc, v.exts.FMSPC) {
		return checkErr(CheckTCBInfo, fmt.Errorf("%w: FMSPC %s, the PCK certificate's is %s", ErrMismatch, ti.Fmspc, v.exts.FMSPC))
	}
	if !strings.EqualFold(ti.PceID, v.exts.PCEID) {
		return checkErr(CheckTCBInfo, fmt.Errorf("%w: PCEID %s, the PCK certificate's is %s", ErrMismatch, ti.PceID, v.exts.PCEID))
	}
	v.checked("TCB info (FMSPC %s, evaluation data number %d) signed by Intel SGX TCB Signing, valid %s to %s; FMSPC and PCEID match the PCK certificate (case-insensitive)",
		ti.Fmspc, ti.TcbEvaluationDataNumber, ti.IssueDate.UTC().Format(time.RFC3339), ti.NextUpdate.UTC().Format(time.RFC3339))

	// QE identity and the QE report.
	qi := &pc.qeID
	if err := v.signedJSON(CheckQEIdentity, pc.qeChain, pc.raw.QEIdentity, pc.qeSig, qi.IssueDate, qi.NextUpdate, pc.rootCRL); err != nil {
		return err
	}
	if qi.ID != "TD_QE" || qi.Version != 2 {
		return checkErr(CheckQEIdentity, fmt.Errorf("%w: id %q version %d, want TD_QE version 2", ErrMismatch, qi.ID, qi.Version))
	}
	qe := parseQEReport(v.q.QEReport)
	if err := maskedEqual(qe.miscSelect, qi.MiscselectMask.Bytes, qi.Miscselect.Bytes); err != nil {
		return checkErr(CheckQEIdentity, fmt.Errorf("%w: MISCSELECT: %v", ErrMismatch, err))
	}
	if err := maskedEqual(qe.attributes, qi.AttributesMask.Bytes, qi.Attributes.Bytes); err != nil {
		return checkErr(CheckQEIdentity, fmt.Errorf("%w: attributes: %v", ErrMismatch, err))
	}
	if !bytes.Equal(qe.mrSigner, qi.Mrsigner.Bytes) || qe.isvProdID != qi.IsvProdID {
		return checkErr(CheckQEIdentity, fmt.Errorf("%w: QE MRSIGNER %x ISVPRODID %d, identity wants %x %d", ErrMismatch, qe.mrSigner, qe.isvProdID, qi.Mrsigner.Bytes, qi.IsvProdID))
	}
	v.checked("QE identity signed by Intel SGX TCB Signing, valid %s to %s; the QE report matches it (MISCSELECT, attributes, MRSIGNER, ISVPRODID)",
		qi.IssueDate.UTC().Format(time.RFC3339), qi.NextUpdate.UTC().Format(time.RFC3339))

	// TCB level and status.
	ev, err := evaluateTCB(ti, qi, &v.q.Body, v.exts.TCB.CPUSvnComponents, v.exts.TCB.PCESvn, qe)
	if err != nil {
		return checkErr(CheckTCBLevel, err)
	}
	v.res.TCBStatus, v.res.Advisories = ev.status, ev.advisories
	for _, n := range ev.notes {
		v.checked("TCB: %s", n)
	}
	if !slices.Contains(allowed, ev.status) {
		adv := "" // no empty "(advisories )"
		if len(ev.advisories) > 0 {
			adv = " (advisories " + strings.Join(ev.advisories, ",") + ")"
		}
		return checkErr(CheckTCBStatus, fmt.Errorf("%w: %s%s, allowed: %s", ErrTCBNotAllowed, ev.status, adv, strings.Join(allowed, ",")))
	}
	v.checked("TCB status %s is allowed", ev.status)
	return nil
}
