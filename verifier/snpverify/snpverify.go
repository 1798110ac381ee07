// Package snpverify verifies AMD SEV-SNP attestation reports offline: the
// report signature (ECDSA P-384) by the VCEK or VLEK, and that
// certificate's chain to AMD's ARK through the ASK (VCEK) or ASVK (VLEK)
// of one product line, Milan, Genoa or Turin, with the roots
// go-sev-guest embeds. Certificate fetching from AMD's KDS is disabled;
// nothing goes over the network.
//
// The product line is chosen here rather than by go-sev-guest's
// verify.SnpAttestation, which takes it from the report's CPUID alone and
// knows one model per line: a Genoa-class part of model A0h gets no roots
// there ("Last error: <nil>"), and its kds package cannot read a Turin
// VCEK (8-byte HWID). The line comes from the VCEK/VLEK's product name,
// cross-checked with the report's CPUID family and model (productline.go);
// the Result's Checked lines name it and the chain used.
//
// go-sev-guest's embedded default roots carry only the VCEK chain (ASK); the
// VLEK chain (ASVK) is embedded too but not wired into its defaults, so
// Verify builds roots holding both. The checks go-sev-guest's verify package
// leaves to its validate package, reported TCB against the certificate's TCB
// and CHIP_ID against the VCEK's HWID, are done here directly (validate
// also judges guest policy, which belongs to ccmr's policy layer).
package snpverify

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	sevabi "github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	sevverify "github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"

	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/cvmreport"
)

// Check names, as CheckError.Check carries them.
const (
	CheckCertificates = "certificates"
	CheckSignature    = "report signature and chain"
	CheckTCB          = "reported TCB"
	CheckChipID       = "chip ID"
	CheckStructure    = "report structure"
	CheckRevocation   = "revocation"
	CheckProductLine  = "product line"
)

// Errors callers may tell apart (wrapped in a *CheckError).
var (
	// ErrNoEndorsementKey: no VCEK/VLEK certificate was given for the
	// report's signing key.
	ErrNoEndorsementKey = errors.New("no certificate for the report's signing key")
	// ErrTCBMismatch: the report's REPORTED_TCB is not the certificate's.
	ErrTCBMismatch = errors.New("reported TCB differs from the certificate's TCB")
	// ErrRevoked: a certificate of the chain is on AMD's CRL.
	ErrRevoked = errors.New("certificate revoked")
)

// CheckError is a check that failed on a report that parsed: the report
// is not trusted.
type CheckError struct {
	Check string
	Err   error
}

// Error names the check that failed.
func (e *CheckError) Error() string { return "snp " + e.Check + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *CheckError) Unwrap() error { return e.Err }

// Options configure Verify.
type Options struct {
	// At is the time at which the certificates must be valid; zero means
	// now.
	At time.Time
	// Roots replace the embedded AMD roots (product line → ARK with ASK
	// and/or ASVK); nil means the embedded Milan, Genoa and Turin roots.
	Roots map[string][]*trust.AMDRootCerts
	// CRL is AMD's CRL (DER or PEM) for the report's product line, as
	// AMD's KDS serves it (signed by the ARK). When given, it must be
	// signed by the ARK that verified the chain and be current at At, and
	// neither the ASK/ASVK nor the VCEK/VLEK may be on it. Without it
	// revocation is not checked (Result.RevocationChecked is false).
	CRL []byte
}

// Result is what a report proves.
type Result struct {
	Version int
	// Signer is "VCEK" or "VLEK".
	Signer string
	// ProductLine is the product line whose roots verified the chain
	// (Milan, Genoa or Turin); Checked says how it was chosen.
	ProductLine string
	// Registers: measurement (sha384), host_data (sha256), report_data
	// (sha512-sized), as backend/snp names them.
	Registers   []mr.Value
	Measurement [48]byte
	HostData    [32]byte
	ReportData  [64]byte
	// ReportedTCB is REPORTED_TCB, ReportedTCBParts its SPLs (bootloader,
	// TEE, SNP and microcode read in the product line's layout; Turin
	// adds ReportedFMCSPL).
	ReportedTCB      uint64
	ReportedTCBParts kds.TCBParts
	ReportedFMCSPL   uint8
	// Policy is the guest policy; DebugAllowed its DEBUG bit (19).
	Policy       uint64
	DebugAllowed bool
	VMPL         uint32
	// FamilyID and ImageID are the guest's FAMILY_ID and IMAGE_ID (ID
	// block).
	FamilyID [16]byte
	ImageID  [16]byte
	// RevocationChecked: Options.CRL was given and verified.
	RevocationChecked bool
	Checked           []string
	NotChecked        []string
}

// DefaultRoots returns go-sev-guest's embedded AMD roots for Milan, Genoa
// and Turin with both intermediates: ASK (VCEK) and ASVK (VLEK). The map
// and its slices are the caller's; the *trust.AMDRootCerts they hold are
// shared by every call and must not be changed.
func DefaultRoots() (map[string][]*trust.AMDRootCerts, error) {
	roots, err := defaultRoots()
	if err != nil {
		return nil, err
	}
	out := make(map[string][]*trust.AMDRootCerts, len(roots))
	for line, r := range roots {
		out[line] = []*trust.AMDRootCerts{r}
	}
	return out, nil
}

// defaultRoots builds the default roots once per process, on first use:
// the ARK and ASK come from go-sev-guest's trust.DefaultRootCerts, which
// its package initialisation has already parsed from the same embedded
// bytes, so they are not parsed again; only the ASVK bundles, which
// go-sev-guest embeds but does not parse, are parsed here, and their ARK
// must be the one go-sev-guest parsed.
var defaultRoots = sync.OnceValues(func() (map[string]*trust.AMDRootCerts, error) {
	out := map[string]*trust.AMDRootCerts{}
	for _, p := range []struct {
		line string
		vlek []byte
	}{
		{"Milan", trust.AskArkMilanVlekBytes},
		{"Genoa", trust.AskArkGenoaVlekBytes},
		{"Turin", trust.AskArkTurinVlekBytes},
	} {
		def := trust.DefaultRootCerts[p.line]
		if def == nil || def.ProductCerts == nil || def.ProductCerts.Ark == nil || def.ProductCerts.Ask == nil {
			return nil, fmt.Errorf("snp: go-sev-guest has no embedded %s ASK/ARK", p.line)
		}
		vlek := &trust.ProductCerts{}
		if err := vlek.FromKDSCertBytes(append(bytes.TrimSpace(p.vlek), '\n')); err != nil {
			return nil, fmt.Errorf("snp: embedded %s ASVK/ARK: %w", p.line, err)
		}
		if vlek.Asvk == nil || !def.ProductCerts.Ark.Equal(vlek.Ark) {
			return nil, fmt.Errorf("snp: embedded %s VCEK and VLEK chains have different ARKs", p.line)
		}
		r := trust.AMDRootCertsProduct(p.line)
		r.ProductCerts = &trust.ProductCerts{Ark: def.ProductCerts.Ark, Ask: def.ProductCerts.Ask, Asvk: vlek.Asvk}
		out[p.line] = r
	}
	return out, nil
})

// parseCerts reads DER or PEM (one or several blocks) certificates.
func parseCerts(items [][]byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for i, b := range items {
		if bytes.Contains(b, []byte("-----BEGIN")) {
			rest := b
			n := 0
			for {
				var blk *pem.Block
				blk, rest = pem.Decode(rest)
				if blk == nil {
					break
				}
				c, err := x509.ParseCertificate(blk.Bytes)
				if err != nil {
					return nil, fmt.Errorf("snp: certificate %d block %d: %w: %v", i, n, mr.ErrMalformed, err)
				}
				out = append(out, c)
				n++
			}
			if n == 0 {
				return nil, fmt.Errorf("snp: certificate %d: %w: no PEM certificate", i, mr.ErrMalformed)
			}
			continue
		}
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, fmt.Errorf("snp: certificate %d: %w: %v", i, mr.ErrMalformed, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// Verify checks an SNP attestation report (v2 or v3; a longer buffer is
// accepted when the extra bytes are zero) against the VCEK or VLEK among
// certs (DER or PEM; ASK/ASVK/ARK may be given too but are not trusted:
// the chain must reach the embedded or given roots of the report's
// product line). It returns
// mr.ErrMalformed for input that does not parse, a *CheckError for a check
// that fails (with the Result filled as far as it got) and nil when the
// report is trusted.
func Verify(report []byte, certs [][]byte, opts Options) (*Result, error) {
	if opts.At.IsZero() {
		opts.At = time.Now()
	}
	rep, err := parseReport(report)
	if err != nil {
		return nil, err
	}
	cs, err := parseCerts(certs)
	if err != nil {
		return nil, err
	}
	regs, err := cvmreport.SNPReportRegisters(rep.raw)
	if err != nil {
		return nil, err
	}
	res := newResult(rep.pr, regs)
	ek, err := endorsementKey(res, rep.info.SigningKey, cs)
	if err != nil {
		return res, err
	}
	roots := opts.Roots
	if roots == nil {
		if roots, err = DefaultRoots(); err != nil {
			return nil, err
		}
	}
	exts, err := parseKDSExtensions(ek)
	if err != nil {
		return res, &CheckError{CheckCertificates, fmt.Errorf("%s: %w", res.Signer, err)}
	}
	v := &verification{rep: rep, res: res, ek: ek, exts: exts, roots: roots, at: opts.At}
	for _, step := range []func() error{v.chooseLine, v.checkSignature, v.checkTCB, v.checkChipID, v.checkTail} {
		if err := step(); err != nil {
			return res, err
		}
	}
	if err := v.checkRevocation(opts.CRL); err != nil {
		return res, err
	}
	v.notCheckedPolicy()
	return res, nil
}

// snpReport is an attestation report split and parsed: the report
// proper, the bytes after it, and its fields.
type snpReport struct {
	raw, tail []byte
	pr        *spb.Report
	info      sevabi.SignerInfo
}

// parseReport splits report into the report proper and what follows it,
// and parses the report and its signer info.
func parseReport(report []byte) (*snpReport, error) {
	if len(report) < sevabi.ReportSize {
		return nil, fmt.Errorf("snp report: %w: %d bytes, want %d", mr.ErrMalformed, len(report), sevabi.ReportSize)
	}
	raw, tail := report[:sevabi.ReportSize], report[sevabi.ReportSize:]
	pr, err := sevabi.ReportToProto(raw)
	if err != nil {
		return nil, fmt.Errorf("snp report: %w: %v", mr.ErrMalformed, err)
	}
	info, err := sevabi.ParseSignerInfo(pr.GetSignerInfo())
	if err != nil {
		return nil, fmt.Errorf("snp report: %w: signer info: %v", mr.ErrMalformed, err)
	}
	return &snpReport{raw: raw, tail: tail, pr: pr, info: info}, nil
}

// newResult fills a Result with the report's fields, before any check.
func newResult(pr *spb.Report, regs []mr.Value) *Result {
	res := &Result{Version: int(pr.GetVersion()), Registers: regs, ReportedTCB: pr.GetReportedTcb(),
		ReportedTCBParts: kds.DecomposeTCBVersion(kds.TCBVersion(pr.GetReportedTcb())),
		Policy:           pr.GetPolicy(), DebugAllowed: pr.GetPolicy()&(1<<19) != 0, VMPL: pr.GetVmpl()}
	copy(res.Measurement[:], pr.GetMeasurement())
	copy(res.HostData[:], pr.GetHostData())
	copy(res.ReportData[:], pr.GetReportData())
	copy(res.FamilyID[:], pr.GetFamilyId())
	copy(res.ImageID[:], pr.GetImageId())
	return res
}

// endorsementKey sets res.Signer from the report's signing key and
// returns the endorsement key among cs. The first VCEK (or VLEK) matching
// the report's signing key is the endorsement key; an ASK, ASVK or ARK
// given alongside is not used: the chain must reach the trusted roots of
// the report's line.
func endorsementKey(res *Result, key sevabi.ReportSigner, cs []*x509.Certificate) (*x509.Certificate, error) {
	want := map[sevabi.ReportSigner]string{sevabi.VcekReportSigner: "SEV-VCEK", sevabi.VlekReportSigner: "SEV-VLEK"}[key]
	var ek *x509.Certificate
	for _, c := range cs {
		if want != "" && c.Subject.CommonName == want {
			ek = c
			break
		}
	}
	switch key {
	case sevabi.VcekReportSigner:
		res.Signer = "VCEK"
	case sevabi.VlekReportSigner:
		res.Signer = "VLEK"
	default:
		return nil, &CheckError{CheckCertificates, fmt.Errorf("report signing key %v is neither VCEK nor VLEK", key)}
	}
	if ek == nil {
		return nil, &CheckError{CheckCertificates, fmt.Errorf("%w (%s)", ErrNoEndorsementKey, res.Signer)}
	}
	return ek, nil
}

// verification is the state of Verify's checks after the endorsement key
// is found: each step fills res and returns a *CheckError when it fails.
type verification struct {
	rep   *snpReport
	res   *Result
	ek    *x509.Certificate
	exts  *kdsExt
	roots map[string][]*trust.AMDRootCerts
	at    time.Time
	line  string // the product line, once chosen
}

// checked records a check that passed.
func (v *verification) checked(f string, a ...any) {
	v.res.Checked = append(v.res.Checked, fmt.Sprintf(f, a...))
}

// chooseLine sets the product line and checks the endorsement key's
// chain to that line's roots.
func (v *verification) chooseLine() error {
	res, key := v.res, v.rep.info.SigningKey
	line, how, err := productLine(v.rep.raw, res.Version, v.exts.ProductName, res.Signer)
	if err != nil {
		return &CheckError{CheckProductLine, err}
	}
	if line != "" {
		if _, err := verifyChain(v.ek, v.exts, key, line, v.roots[line], v.at); err != nil {
			return &CheckError{CheckSignature, err}
		}
	} else {
		// Neither the report nor the certificate names a line: each known
		// line is tried, and only a chain that verifies in full is taken.
		var errs []error
		for _, l := range ProductLines {
			if _, err := verifyChain(v.ek, v.exts, key, l, v.roots[l], v.at); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", l, err))
				continue
			}
			line = l
			break
		}
		if line == "" {
			return &CheckError{CheckSignature, fmt.Errorf("%w: neither the report nor the %s names a product line, and the %s chains to none of %s: %w",
				ErrProductLine, res.Signer, res.Signer, strings.Join(ProductLines, ", "), errors.Join(errs...))}
		}
		how = fmt.Sprintf("no line named by report or %s; the only one of %s whose chain verifies", res.Signer, strings.Join(ProductLines, ", "))
	}
	v.line = line
	res.ProductLine = line
	v.checked("product line %s (%s)", line, how)
	return nil
}

// checkSignature records the chain checked by chooseLine and checks the
// report's signature by the endorsement key.
func (v *verification) checkSignature() error {
	res, line := v.res, v.line
	chainTo := "ASK"
	if v.rep.info.SigningKey == sevabi.VlekReportSigner {
		chainTo = "ASVK"
	}
	v.checked("%s chain %s → AMD %s %s → AMD %s ARK valid at %s (AMD roots embedded in go-sev-guest or given, no network)",
		res.Signer, res.Signer, line, chainTo, line, v.at.UTC().Format(time.RFC3339))
	if err := sevverify.SnpReportSignature(v.rep.raw, v.ek); err != nil {
		return &CheckError{CheckSignature, err}
	}
	v.checked("report v%d signed (ECDSA P-384) by the %s", res.Version, res.Signer)
	return nil
}

// checkTCB checks that the reported TCB is the endorsement key's, read in
// the product line's layout.
func (v *verification) checkTCB() error {
	res, line, pr := v.res, v.line, v.rep.pr
	certTCB, err := v.exts.tcb(line)
	if err != nil {
		return &CheckError{CheckTCB, err}
	}
	if line == "Turin" {
		t := pr.GetReportedTcb()
		res.ReportedFMCSPL = uint8(t)
		res.ReportedTCBParts = kds.TCBParts{BlSpl: uint8(t >> 8), TeeSpl: uint8(t >> 16), SnpSpl: uint8(t >> 24), UcodeSpl: uint8(t >> 56)}
	}
	if certTCB != pr.GetReportedTcb() {
		return &CheckError{CheckTCB, fmt.Errorf("%w: report %016x, %s %016x (%s layout)", ErrTCBMismatch, pr.GetReportedTcb(), res.Signer, certTCB, line)}
	}
	p := res.ReportedTCBParts
	fmc := ""
	if line == "Turin" {
		fmc = fmt.Sprintf("FMC %d, ", res.ReportedFMCSPL)
	}
	v.checked("reported TCB %016x (%sbootloader %d, TEE %d, SNP %d, microcode %d) is the %s's TCB", res.ReportedTCB, fmc, p.BlSpl, p.TeeSpl, p.SnpSpl, p.UcodeSpl, res.Signer)
	return nil
}

// checkChipID checks a VCEK-signed report's CHIP_ID against the VCEK's
// HWID, unless the report masks it.
func (v *verification) checkChipID() error {
	if v.rep.info.SigningKey != sevabi.VcekReportSigner {
		return nil
	}
	if chip := v.rep.pr.GetChipId(); bytes.Equal(chip, make([]byte, len(chip))) {
		v.res.NotChecked = append(v.res.NotChecked, "CHIP_ID: masked (zero) in the report, not compared with the VCEK's HWID")
	} else if !hwidMatches(v.line, v.exts.HWID, chip) {
		return &CheckError{CheckChipID, fmt.Errorf("CHIP_ID %s is not the VCEK's HWID %s", hex.EncodeToString(chip), hex.EncodeToString(v.exts.HWID))}
	} else {
		v.checked("CHIP_ID is the VCEK's HWID")
	}
	return nil
}

// checkTail checks that any bytes after the report are zero.
func (v *verification) checkTail() error {
	tail := v.rep.tail
	if len(tail) > 0 {
		if !bytes.Equal(tail, make([]byte, len(tail))) {
			return &CheckError{CheckStructure, fmt.Errorf("%w: non-zero bytes after the %d-byte report", mr.ErrMalformed, sevabi.ReportSize)}
		}
		v.checked("%d bytes after the report are zero padding", len(tail))
	}
	return nil
}

// checkRevocation checks the endorsement key's chain against crl when
// one is given, and says it was not checked otherwise.
func (v *verification) checkRevocation(crl []byte) error {
	res, line := v.res, v.line
	if len(crl) > 0 {
		if err := checkCRL(crl, v.roots[line], v.ek, v.at); err != nil {
			return &CheckError{CheckRevocation, err}
		}
		res.RevocationChecked = true
		v.checked("AMD CRL signed by the %s ARK and current at %s; neither the intermediate nor the %s is revoked", line, v.at.UTC().Format(time.RFC3339), res.Signer)
	} else {
		res.NotChecked = append(res.NotChecked, "revocation: not checked, no AMD CRL given")
	}
	return nil
}

// notCheckedPolicy records what is left to policy: TCB currency and a
// guest policy that allows debugging.
func (v *verification) notCheckedPolicy() {
	res := v.res
	res.NotChecked = append(res.NotChecked,
		"TCB currency: not judged (AMD publishes no offline TCB status; compare the reported TCB by policy)")
	if res.DebugAllowed {
		res.NotChecked = append(res.NotChecked, "guest policy allows debugging (policy bit 19): judge it by policy")
	} else {
		v.checked("guest policy forbids debugging")
	}
}
