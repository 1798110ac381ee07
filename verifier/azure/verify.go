package azure

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/snpverify"
	"github.com/ccmr-dev/ccmr/verifier/tdxverify"
)

// ChainError is a break in the HCL chain of a report that parsed: Link
// names the link ("hardware report", "runtime data hash", "HCLAkPub", "TD
// report", "AK"), Err the cause (one of this package's errors, or a
// *snpverify.CheckError / *tdxverify.CheckError).
type ChainError struct {
	Link string
	Err  error
}

// Error names the broken link of the chain.
func (e *ChainError) Error() string { return "Azure HCL " + e.Link + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *ChainError) Unwrap() error { return e.Err }

// Options configure Verify.
type Options struct {
	// At is the time for certificates, CRLs and collateral; zero is now.
	At time.Time
	// Certificates hold the VCEK or VLEK (DER or PEM) for an SNP report.
	Certificates [][]byte
	// TDQuote is the TD quote that binds a TDX HCL report's TD report.
	TDQuote []byte
	// TDXCollateral is Intel's collateral for the TD quote
	// (QuoteCollateralV3 JSON); without it the TCB is not judged.
	TDXCollateral []byte
	// AllowedTCB are the TDX TCB statuses trusted (default UpToDate).
	AllowedTCB []string
	// SNP and TDX are passed to snpverify and tdxverify (e.g. other
	// roots); their At and AllowedTCB are set from the fields above.
	SNP snpverify.Options
	TDX tdxverify.Options
}

// Result is what the chain proves.
type Result struct {
	Report *Report
	// Platform is the hardware: snp or tdx.
	Platform mr.Platform
	// AK is HCLAkPub, trusted once Verify returns nil.
	AK crypto.PublicKey
	// Registers are the hardware report's trusted values (SNP measurement,
	// host_data, report_data; TDX mrtd, rtmr0..3, ...).
	Registers []mr.Value
	SNP       *snpverify.Result
	TDX       *tdxverify.Result
	// Checked and NotChecked say what was verified and what was not.
	Checked    []string
	NotChecked []string
}

func (res *Result) checked(format string, a ...any) {
	res.Checked = append(res.Checked, fmt.Sprintf(format, a...))
}

// Verify checks an HCL report and that ak (the TPM quote's AK; nil to skip
// that link) is its HCLAkPub: the hardware report verifies (SNP with
// snpverify and opts.Certificates; TDX through opts.TDQuote with
// tdxverify, whose body must equal the TD report), its report data starts
// with hash(runtime data), and the runtime data's HCLAkPub is ak. It
// returns mr.ErrMalformed for input that does not parse, a *ChainError
// for a link that breaks (with the Result filled as far as it got), and
// nil when the chain holds.
func Verify(hcl []byte, ak crypto.PublicKey, opts Options) (*Result, error) {
	rep, err := Parse(hcl)
	if err != nil {
		return nil, err
	}
	res := &Result{Report: rep, Platform: rep.Platform()}
	res.checked("HCL report v%d parsed: %s hardware report, runtime data %d bytes hashed with %s", rep.Version, rep.Platform(), len(rep.RuntimeData), rep.HashName())
	var reportData []byte
	switch rep.ReportType {
	case ReportTypeSNP:
		so := opts.SNP
		so.At = opts.At
		sr, err := snpverify.Verify(rep.HWReport, opts.Certificates, so)
		res.SNP = sr
		if sr != nil {
			res.Checked = append(res.Checked, prefix("SNP report in the HCL report: ", sr.Checked)...)
			res.NotChecked = append(res.NotChecked, prefix("SNP report in the HCL report: ", sr.NotChecked)...)
		}
		if err != nil {
			return res, &ChainError{"hardware report", err}
		}
		res.Registers = sr.Registers
		reportData = sr.ReportData[:]
	case ReportTypeTDX:
		if len(opts.TDQuote) == 0 {
			return res, &ChainError{"hardware report", ErrNoTDQuote}
		}
		to := opts.TDX
		to.At, to.AllowedTCB = opts.At, opts.AllowedTCB
		tr, err := tdxverify.Verify(opts.TDQuote, opts.TDXCollateral, to)
		res.TDX = tr
		if tr != nil {
			res.Checked = append(res.Checked, prefix("TD quote: ", tr.Checked)...)
			res.NotChecked = append(res.NotChecked, prefix("TD quote: ", tr.NotChecked)...)
			if tr.TCBStatus != "" {
				if len(tr.Advisories) > 0 { // no empty "[]"
					res.checked("TD quote: TCB status %s with advisories %s", tr.TCBStatus, strings.Join(tr.Advisories, ", "))
				}
			}
		}
		if err != nil {
			if errors.Is(err, mr.ErrMalformed) || errors.Is(err, mr.ErrUnsupported) {
				return res, &ChainError{"hardware report", fmt.Errorf("TD quote: %w", err)}
			}
			return res, &ChainError{"hardware report", err}
		}
		if err := sameTD(rep.HWReport, &tr.Body); err != nil {
			return res, &ChainError{"TD report", err}
		}
		res.checked("the TD report in the HCL report equals the TD quote's body (TCB SVN, MRSEAM, attributes, XFAM, MRTD, MRCONFIGID, MROWNER*, RTMRs, REPORTDATA)")
		res.NotChecked = append(res.NotChecked, "TD report MAC: not checked (only the TDX module on the same platform can check it; the TD quote binds the values instead)")
		res.Registers = tr.Registers
		reportData = tr.ReportData[:]
	}
	h := rep.RuntimeDataHash()
	if !bytes.Equal(reportData[:len(h)], h) {
		return res, &ChainError{"runtime data hash", fmt.Errorf("%w: %s(runtime data) = %s, report_data[0:%d] = %s",
			ErrRuntimeDataHash, rep.HashName(), hex.EncodeToString(h), len(h), hex.EncodeToString(reportData[:len(h)]))}
	}
	res.checked("report_data[0:%d] = %s(HCL runtime data)", len(h), rep.HashName())
	key, err := rep.AKPub()
	if err != nil {
		return res, &ChainError{"HCLAkPub", err}
	}
	res.AK = key
	res.checked("HCLAkPub (RSA JWK) read from the hashed runtime data")
	if ak != nil {
		type equaler interface{ Equal(x crypto.PublicKey) bool }
		e, ok := ak.(equaler)
		if !ok || !e.Equal(key) {
			return res, &ChainError{"AK", ErrAKMismatch}
		}
		res.checked("the TPM quote's AK is HCLAkPub")
	}
	return res, nil
}

func prefix(p string, ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = p + s
	}
	return out
}

// sameTD compares a TD report (TDREPORT_STRUCT, 1024 bytes) with a TD
// quote's body, field by field.
func sameTD(td []byte, q *tdxverify.TDReport) error {
	if len(td) < TDReportSize {
		return fmt.Errorf("%w: %w: TD report has %d bytes", ErrTDReportMismatch, mr.ErrMalformed, len(td))
	}
	fields := []struct {
		name string
		td   []byte
		q    []byte
	}{
		{"REPORTDATA", td[128:192], q.ReportData[:]},
		{"TEE_TCB_SVN", td[264:280], q.TeeTCBSVN[:]},
		{"MRSEAM", td[280:328], q.MRSeam[:]},
		{"MRSIGNERSEAM", td[328:376], q.MRSignerSeam[:]},
		{"SEAMATTRIBUTES", td[376:384], q.SeamAttributes[:]},
		{"TDATTRIBUTES", td[512:520], q.TDAttributes[:]},
		{"XFAM", td[520:528], q.XFAM[:]},
		{"MRTD", td[528:576], q.MRTD[:]},
		{"MRCONFIGID", td[576:624], q.MRConfigID[:]},
		{"MROWNER", td[624:672], q.MROwner[:]},
		{"MROWNERCONFIG", td[672:720], q.MROwnerConfig[:]},
		{"RTMR0", td[720:768], q.RTMR[0][:]},
		{"RTMR1", td[768:816], q.RTMR[1][:]},
		{"RTMR2", td[816:864], q.RTMR[2][:]},
		{"RTMR3", td[864:912], q.RTMR[3][:]},
	}
	for _, f := range fields {
		if !bytes.Equal(f.td, f.q) {
			return fmt.Errorf("%w: %s is %s in the TD report, %s in the quote", ErrTDReportMismatch, f.name, hex.EncodeToString(f.td), hex.EncodeToString(f.q))
		}
	}
	return nil
}
