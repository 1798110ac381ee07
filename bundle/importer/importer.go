// Package importer builds a ccmr-evidence/v1 bundle from evidence other
// tools made: tpm2_quote's files (TPMS_ATTEST; TPMT_SIGNATURE or -f plain;
// the "serialized" PCR file or -F values), an AK in PEM, TPM2B_PUBLIC or TPMT_PUBLIC form,
// AK certificates, a TDX quote with Intel PCS collateral, an SEV-SNP report
// with its VCEK or VLEK, the HCL report of an Azure confidential VM, and
// measurement logs. It checks that every part parses and that the parts
// agree (platform, nonce, banks); it verifies nothing: `ccmr verify` does.
//
// Every error is a *PartError that names the part (by its `ccmr evidence
// import` flag) and the file: unusable input, never a verdict.
package importer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"sort"

	sevabi "github.com/google/go-sev-guest/abi"
	"github.com/google/go-tpm/tpm2"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/logfile"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/azure"
	"github.com/ccmr-dev/ccmr/verifier/cvmreport"
	"github.com/ccmr-dev/ccmr/verifier/tdxverify"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
)

// Part names, as `ccmr evidence import` spells its flags.
const (
	PartTPMQuote   = "--tpm-quote"
	PartTPMSig     = "--tpm-sig"
	PartTPMPCRs    = "--tpm-pcrs"
	PartAK         = "--ak"
	PartAKCert     = "--ak-cert"
	PartTDXQuote   = "--tdx-quote"
	PartCollateral = "--collateral"
	PartSNPReport  = "--snp-report"
	PartVCEK       = "--vcek"
	PartVLEK       = "--vlek"
	PartHCL        = "--azure-hcl-report"
	PartLog        = "--log"
	PartNonce      = "--nonce"
)

// ErrMissing: a part that the others need was not given.
var ErrMissing = errors.New("missing part")

// File is one input: its name (for messages) and its bytes.
type File struct {
	Name string
	Data []byte
}

// TPMQuote is one tpm2_quote output set.
type TPMQuote struct {
	Attest    File  // TPMS_ATTEST (tpm2_quote -m), bare or TPM2B-wrapped
	Signature File  // TPMT_SIGNATURE (tpm2_quote -s)
	PCRs      *File // serialized PCR file (tpm2_quote -o)
}

// Log is one measurement eventlog.
type Log struct {
	// Format is a --format name ("auto" sniffs it).
	Format string
	// Register is the backing register of a runtime log (rtmr3, pcr14).
	Register string
	File     File
}

// Parts are the loose parts of a bundle. Nil and empty members are absent.
type Parts struct {
	TPMQuotes      []TPMQuote
	AK             *File
	AKCerts        []File
	TDXQuote       *File
	Collateral     *File
	SNPReport      *File
	VCEK           *File
	VLEK           *File
	AzureHCLReport *File
	Logs           []Log
	// Nonce is the nonce the evidence binds; nil takes it from the
	// evidence (a TPM quote's qualifying data, or the whole 64-byte report
	// data of a TDX quote or SNP report). When given it must agree.
	Nonce []byte
}

// PartError names the part and file that made Build fail.
type PartError struct {
	Part string
	File string
	Err  error
}

// Error names the part, its file and the reason.
func (e *PartError) Error() string {
	if e.File == "" {
		return e.Part + ": " + e.Err.Error()
	}
	return e.Part + " " + e.File + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *PartError) Unwrap() error { return e.Err }

func partErr(part string, f *File, format string, a ...any) error {
	name := ""
	if f != nil {
		name = f.Name
	}
	return &PartError{Part: part, File: name, Err: fmt.Errorf(format, a...)}
}

// Build makes a bundle from parts. The platform is tpm when there are TPM
// quotes (an Azure HCL report then binds the AK; a TDX quote goes with a
// TDX HCL report), else tdx for a TDX quote, else snp for an SNP report.
func Build(p Parts) (*bundle.Bundle, error) {
	b := &bundle.Bundle{Format: bundle.Format}
	var err error
	switch {
	case len(p.TPMQuotes) > 0:
		err = buildTPM(b, &p)
	case p.AzureHCLReport != nil:
		err = partErr(PartHCL, p.AzureHCLReport, "%w: the HCL report binds the vTPM's AK: give the vTPM quote too (%s, %s, %s)", ErrMissing, PartTPMQuote, PartTPMSig, PartTPMPCRs)
	case p.TDXQuote != nil && p.SNPReport != nil:
		err = partErr(PartSNPReport, p.SNPReport, "%w: a bundle holds a TDX quote or an SNP report, not both", mr.ErrUnsupported)
	case p.TDXQuote != nil:
		err = buildTDX(b, &p)
	case p.SNPReport != nil:
		err = buildSNP(b, &p)
	default:
		err = &PartError{Part: "evidence", Err: fmt.Errorf("%w: no hardware evidence: give %s/%s/%s, %s or %s", ErrMissing, PartTPMQuote, PartTPMSig, PartTPMPCRs, PartTDXQuote, PartSNPReport)}
	}
	if err != nil {
		return nil, err
	}
	if p.Collateral != nil && (p.TDXQuote == nil) {
		return nil, partErr(PartCollateral, p.Collateral, "%w: TDX collateral without %s", mr.ErrUnsupported, PartTDXQuote)
	}
	if p.VCEK != nil && p.VLEK != nil {
		return nil, partErr(PartVLEK, p.VLEK, "%w: give %s or %s, not both", mr.ErrUnsupported, PartVCEK, PartVLEK)
	}
	if len(p.AKCerts) > 0 && b.Platform != mr.PlatformTPM {
		return nil, partErr(PartAKCert, &p.AKCerts[0], "%w: an AK certificate goes with a TPM quote", mr.ErrUnsupported)
	}
	for _, c := range p.AKCerts {
		ders, err := ParseCertificates(c.Data)
		if err != nil {
			return nil, partErr(PartAKCert, &c, "%w", err)
		}
		b.Evidence.Certificates = append(b.Evidence.Certificates, ders...)
	}
	for i := range p.Logs {
		lg, err := buildLog(&p.Logs[i])
		if err != nil {
			return nil, err
		}
		b.Logs = append(b.Logs, lg)
	}
	return b, nil
}

// endorsement adds the VCEK or VLEK (and any chain in the same file).
func endorsement(b *bundle.Bundle, p *Parts, what string) error {
	f, part := p.VCEK, PartVCEK
	if f == nil {
		f, part = p.VLEK, PartVLEK
	}
	if f == nil {
		return &PartError{Part: what, Err: fmt.Errorf("%w: the SNP report needs its signing key's certificate: %s or %s", ErrMissing, PartVCEK, PartVLEK)}
	}
	ders, err := ParseCertificates(f.Data)
	if err != nil {
		return partErr(part, f, "%w", err)
	}
	b.Evidence.Certificates = append(b.Evidence.Certificates, ders...)
	return nil
}

func buildTPM(b *bundle.Bundle, p *Parts) error {
	b.Platform = mr.PlatformTPM
	if p.SNPReport != nil {
		return partErr(PartSNPReport, p.SNPReport, "%w: with a TPM quote, the SNP report comes inside %s", mr.ErrUnsupported, PartHCL)
	}
	var nonce []byte
	banks := map[mr.Alg]string{}
	// The AK names the scheme of a plain signature (tpm2_quote -f plain);
	// a --ak that does not parse is reported below, after the quotes.
	var akKey crypto.PublicKey
	if p.AK != nil {
		akKey, _ = ParseAK(p.AK.Data)
	}
	for i := range p.TPMQuotes {
		tq := &p.TPMQuotes[i]
		attest := UnwrapAttest(tq.Attest.Data)
		info, err := tpmverify.ParseQuoteInfo(attest)
		if err != nil {
			return partErr(PartTPMQuote, &tq.Attest, "not a TPMS_ATTEST quote: %w", err)
		}
		sig, err := signatureFor(info, attest, tq.Signature.Data, akKey)
		if err != nil {
			return partErr(PartTPMSig, &tq.Signature, "%w", err)
		}
		if tq.PCRs == nil {
			return partErr(PartTPMQuote, &tq.Attest, "%w: no %s for this quote: the quoted PCR values are needed to check its PCR digest (an event log replay alone proves nothing)", ErrMissing, PartTPMPCRs)
		}
		pcrFile, err := pcrFileFor(info, tq.PCRs.Data)
		if err != nil {
			return partErr(PartTPMPCRs, tq.PCRs, "%w", err)
		}
		q, err := tpmverify.NewQuote(attest, sig, pcrFile)
		if errors.Is(err, tpmverify.ErrPCRMismatch) {
			return partErr(PartTPMPCRs, tq.PCRs, "%w: %w", mr.ErrMalformed, err)
		}
		if err != nil {
			return partErr(PartTPMQuote, &tq.Attest, "%w", err)
		}
		if err := sameSelection(info, q); err != nil {
			return partErr(PartTPMPCRs, tq.PCRs, "%w: %v", mr.ErrMalformed, err)
		}
		if prev, dup := banks[q.Alg]; dup {
			return partErr(PartTPMQuote, &tq.Attest, "%w: a second quote of the %v bank (the first is %s)", mr.ErrUnsupported, q.Alg, prev)
		}
		banks[q.Alg] = tq.Attest.Name
		if i == 0 {
			nonce = info.ExtraData
		} else if !bytes.Equal(nonce, info.ExtraData) {
			return partErr(PartTPMQuote, &tq.Attest, "%w: qualifying data %x differs from the first quote's %x", mr.ErrMalformed, info.ExtraData, nonce)
		}
		pf, _ := tpmverify.MarshalPCRFile(q)
		pcrs := map[string]string{}
		for k, v := range q.PCRs {
			pcrs[fmt.Sprint(k)] = hex.EncodeToString(v)
		}
		b.Evidence.TPMQuotes = append(b.Evidence.TPMQuotes, bundle.TPMQuote{Alg: q.Alg.String(), Attest: attest, Signature: sig, PCRs: pcrs, PCRFile: pf})
	}
	if p.Nonce != nil && !bytes.Equal(p.Nonce, nonce) {
		return &PartError{Part: PartNonce, Err: fmt.Errorf("%w: %x is not the quotes' qualifying data %x", mr.ErrMalformed, p.Nonce, nonce)}
	}
	b.Nonce = nonce
	var hcl *azure.Report
	if p.AzureHCLReport != nil {
		var err error
		if hcl, err = azure.Parse(p.AzureHCLReport.Data); err != nil {
			return partErr(PartHCL, p.AzureHCLReport, "not an Azure HCL report: %w", err)
		}
		b.Evidence.AzureHCLReport = p.AzureHCLReport.Data
		switch hcl.ReportType {
		case azure.ReportTypeSNP:
			if p.TDXQuote != nil {
				return partErr(PartTDXQuote, p.TDXQuote, "%w: the HCL report holds an SNP report", mr.ErrUnsupported)
			}
			if err := endorsement(b, p, PartHCL); err != nil {
				return err
			}
		case azure.ReportTypeTDX:
			if p.TDXQuote == nil {
				return partErr(PartHCL, p.AzureHCLReport, "%w: a TDX HCL report holds an unsigned TD report: give the TD quote that binds it (%s)", ErrMissing, PartTDXQuote)
			}
			if _, err := tdxverify.ParseQuote(p.TDXQuote.Data); err != nil {
				return partErr(PartTDXQuote, p.TDXQuote, "not a TDX quote: %w", err)
			}
			b.Evidence.Report = p.TDXQuote.Data
			if err := collateral(b, p); err != nil {
				return err
			}
		}
	} else if p.TDXQuote != nil {
		return partErr(PartTDXQuote, p.TDXQuote, "%w: with a TPM quote, a TDX quote goes with %s", mr.ErrUnsupported, PartHCL)
	}
	if p.AK == nil {
		if hcl == nil {
			return &PartError{Part: PartAK, Err: fmt.Errorf("%w: the TPM quotes need the AK public key", ErrMissing)}
		}
		k, err := hcl.AKPub()
		if err != nil {
			return partErr(PartHCL, p.AzureHCLReport, "no %s given and %w", PartAK, err)
		}
		pemb, err := tpmverify.MarshalAKPublic(k)
		if err != nil {
			return partErr(PartHCL, p.AzureHCLReport, "%w: HCLAkPub: %v", mr.ErrMalformed, err)
		}
		b.Evidence.PublicKey = string(pemb)
		return nil
	}
	k, err := ParseAK(p.AK.Data)
	if err != nil {
		return partErr(PartAK, p.AK, "%w", err)
	}
	pemb, err := tpmverify.MarshalAKPublic(k)
	if err != nil {
		return partErr(PartAK, p.AK, "%w: %v", mr.ErrUnsupported, err)
	}
	b.Evidence.PublicKey = string(pemb)
	return nil
}

func collateral(b *bundle.Bundle, p *Parts) error {
	if p.Collateral == nil {
		return nil
	}
	if _, err := tdxverify.ParseCollateral(p.Collateral.Data); err != nil {
		return partErr(PartCollateral, p.Collateral, "not QuoteCollateralV3 JSON: %w", err)
	}
	b.Collateral = &bundle.Collateral{TDX: append([]byte(nil), bytes.TrimSpace(p.Collateral.Data)...)}
	return nil
}

func buildTDX(b *bundle.Bundle, p *Parts) error {
	b.Platform = mr.PlatformTDX
	q, err := tdxverify.ParseQuote(p.TDXQuote.Data)
	if err != nil {
		return partErr(PartTDXQuote, p.TDXQuote, "not a TDX quote: %w", err)
	}
	if p.VCEK != nil || p.VLEK != nil {
		return &PartError{Part: PartVCEK, Err: fmt.Errorf("%w: a VCEK/VLEK goes with an SNP report", mr.ErrUnsupported)}
	}
	b.Evidence.Report = p.TDXQuote.Data
	if err := nonceFromReportData(b, p, q.Body.ReportData, cvmreport.ReportData, "the quote's REPORTDATA"); err != nil {
		return err
	}
	return collateral(b, p)
}

func buildSNP(b *bundle.Bundle, p *Parts) error {
	b.Platform = mr.PlatformSNP
	raw := p.SNPReport.Data
	if len(raw) < sevabi.ReportSize {
		return partErr(PartSNPReport, p.SNPReport, "not an SNP report: %w: %d bytes, want %d", mr.ErrMalformed, len(raw), sevabi.ReportSize)
	}
	if len(raw) > sevabi.ReportSize {
		// No producer writes more (snpguest serializes the 1184-byte
		// struct; the kernel's ioctl and configfs-tsm give the report
		// alone): bytes after it are another file's or a damaged one's,
		// refused here rather than left for verify to fail on.
		return partErr(PartSNPReport, p.SNPReport, "%w: at byte %d: %d bytes after the %d-byte SNP report; give the report alone (the certificates of an extended report go in %s/%s)",
			mr.ErrMalformed, sevabi.ReportSize, len(raw)-sevabi.ReportSize, sevabi.ReportSize, PartVCEK, PartVLEK)
	}
	pr, err := sevabi.ReportToProto(raw)
	if err != nil {
		return partErr(PartSNPReport, p.SNPReport, "not an SNP report: %w: %v", mr.ErrMalformed, err)
	}
	b.Evidence.Report = raw
	if err := endorsement(b, p, PartSNPReport); err != nil {
		return err
	}
	var rd [64]byte
	copy(rd[:], pr.GetReportData())
	return nonceFromReportData(b, p, rd, cvmreport.ReportData, "the report's REPORT_DATA")
}

func nonceFromReportData(b *bundle.Bundle, p *Parts, rd [64]byte, bind func([]byte) [64]byte, what string) error {
	if p.Nonce == nil {
		b.Nonce = append([]byte(nil), rd[:]...)
		return nil
	}
	if bind(p.Nonce) != rd {
		return &PartError{Part: PartNonce, Err: fmt.Errorf("%w: %s is %x, not this nonce (zero-padded to 64 bytes, or sha512 of a longer one)", mr.ErrMalformed, what, rd)}
	}
	b.Nonce = p.Nonce
	return nil
}

func buildLog(l *Log) (bundle.Log, error) {
	f, err := logfile.ParseFormat(l.Format)
	if err != nil {
		return bundle.Log{}, partErr(PartLog, &l.File, "%w", err)
	}
	if f == eventlog.FormatAuto {
		var ok bool
		if f, ok = logfile.Sniff(l.File.Data); !ok {
			return bundle.Log{}, partErr(PartLog, &l.File, "%w: format not recognised; name it (FORMAT=FILE)", mr.ErrMalformed)
		}
	}
	out := bundle.Log{Format: string(f), Source: l.File.Name, Data: l.File.Data}
	c, _ := logfile.Lookup(f) // ParseFormat and Sniff give registered formats only
	if c.Role() == logfile.RoleRuntime {
		if l.Register == "" {
			return out, partErr(PartLog, &l.File, "%w: a runtime log needs its backing register: %s %s:REG=FILE", ErrMissing, PartLog, f)
		}
		out.Register = l.Register
	} else if l.Register != "" {
		return out, partErr(PartLog, &l.File, "%w: only a runtime log has a backing register", mr.ErrUnsupported)
	}
	// Read whole through the format's codec, as verify will: a log that
	// does not parse never enters a bundle; a record that does not match
	// its content is left for verify to judge.
	if err := logfile.FromBytes(l.File.Name, l.File.Data, f).Check(context.Background(), logfile.Options{Format: f}); err != nil {
		return out, partErr(PartLog, &l.File, "not a %s log: %w", f, err)
	}
	return out, nil
}

// sameSelection checks that the PCR values given are exactly the PCRs the
// quote covers.
func sameSelection(info *tpmverify.QuoteInfo, q mr.TPMQuote) error {
	var want []int
	for _, s := range info.Selection {
		want = append(want, s.PCRs...)
	}
	var got []int
	for i := range q.PCRs {
		got = append(got, i)
	}
	sort.Ints(want)
	sort.Ints(got)
	if !slices.Equal(want, got) {
		return fmt.Errorf("the file holds %v PCRs %v, the quote covers %v", q.Alg, got, want)
	}
	return nil
}

// UnwrapAttest returns the TPMS_ATTEST inside b: b itself, or the contents
// of a TPM2B_ATTEST (u16 size, then the structure) as some tools write it.
func UnwrapAttest(b []byte) []byte {
	if len(b) >= 6 && int(b[0])<<8|int(b[1]) == len(b)-2 && bytes.Equal(b[2:6], []byte{0xff, 0x54, 0x43, 0x47}) {
		return b[2:]
	}
	return b
}

// ParseAK reads an AK public key given as PEM ("PUBLIC KEY"), a marshalled
// TPM2B_PUBLIC (tpm2_createak -u) or a bare TPMT_PUBLIC.
func ParseAK(b []byte) (crypto.PublicKey, error) {
	if bytes.Contains(b, []byte("-----BEGIN")) {
		k, err := tpmverify.ParseAKPublic(b)
		if err != nil {
			return nil, fmt.Errorf("not a PEM public key: %w", err)
		}
		return k, nil
	}
	body := b
	what := "TPMT_PUBLIC"
	if len(b) >= 2 && int(b[0])<<8|int(b[1]) == len(b)-2 {
		body, what = b[2:], "TPM2B_PUBLIC"
	}
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](body)
	if err != nil {
		return nil, fmt.Errorf("%w: not PEM, TPM2B_PUBLIC or TPMT_PUBLIC: %s: %v", mr.ErrMalformed, what, err)
	}
	if n := len(tpm2.Marshal(pub)); n != len(body) {
		return nil, fmt.Errorf("%w: %s: %d bytes after the structure", mr.ErrMalformed, what, len(body)-n)
	}
	k, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", mr.ErrUnsupported, what, err)
	}
	return k, nil
}

// ParseCertificates reads one DER certificate or any number of PEM
// CERTIFICATE blocks and returns them as DER.
func ParseCertificates(b []byte) ([][]byte, error) {
	if !bytes.Contains(b, []byte("-----BEGIN")) {
		if _, err := x509.ParseCertificate(b); err != nil {
			return nil, fmt.Errorf("%w: not a DER or PEM certificate: %v", mr.ErrMalformed, err)
		}
		return [][]byte{b}, nil
	}
	var out [][]byte
	for rest, n := b, 0; ; n++ {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return nil, fmt.Errorf("%w: PEM block %d: %v", mr.ErrMalformed, n, err)
		}
		out = append(out, blk.Bytes)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no PEM CERTIFICATE block", mr.ErrMalformed)
	}
	return out, nil
}
