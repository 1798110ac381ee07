// Package cvmreport reads the attestation reports of confidential VMs
// without the device that made them: the REPORTDATA binding of a nonce
// (one rule for TDX and SEV-SNP), the registers a TDX quote or an SNP
// report carries, and the SNP certificate table. backend/tdx and
// backend/snp produce the reports and use it; the offline verifier uses it
// on any system.
package cvmreport

import (
	"crypto/sha512"
	"fmt"
	"slices"

	sevabi "github.com/google/go-sev-guest/abi"
	tdxabi "github.com/google/go-tdx-guest/abi"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/uuid"

	"github.com/ccmr-dev/ccmr/mr"
)

// ReportData maps a nonce to the 64-byte REPORTDATA of a TDX TDREPORT or an
// SEV-SNP REPORT_DATA: a nonce of at most 64 bytes is copied and zero-padded
// on the right; a longer one is replaced by its SHA-512. A verifier
// recomputes it from the nonce.
func ReportData(nonce []byte) [64]byte {
	var rd [64]byte
	if len(nonce) <= 64 {
		copy(rd[:], nonce)
	} else {
		rd = sha512.Sum512(nonce)
	}
	return rd
}

// TDXRegisters are the registers a TDX quote carries, in the order
// TDXQuoteRegisters returns them: MRTD (CC MR index 0), RTMR0..3 (1..4) and
// the owner fields (index -1), all 48 bytes.
var TDXRegisters = []mr.Register{
	{Name: "mrtd", Alg: mr.SHA384, Size: 48, Flags: mr.Reported, Index: 0},
	{Name: "rtmr0", Alg: mr.SHA384, Size: 48, Flags: mr.Reported, Index: 1},
	{Name: "rtmr1", Alg: mr.SHA384, Size: 48, Flags: mr.Reported, Index: 2},
	{Name: "rtmr2", Alg: mr.SHA384, Size: 48, Flags: mr.Reported, Index: 3},
	{Name: "rtmr3", Alg: mr.SHA384, Size: 48, Flags: mr.Reported, Index: 4},
	{Name: "mrconfigid", Alg: mr.SHA384, Size: 48, Flags: mr.Reported, Index: -1},
	{Name: "mrowner", Alg: mr.SHA384, Size: 48, Flags: mr.Reported, Index: -1},
	{Name: "mrownerconfig", Alg: mr.SHA384, Size: 48, Flags: mr.Reported, Index: -1},
}

// TDXQuoteRegisters returns mrtd, rtmr0..3, mrconfigid, mrowner,
// mrownerconfig (TDXRegisters order) as a quote carries them. Nothing is
// verified: the caller checks the quote's signature (verifier/tdxverify).
func TDXQuoteRegisters(quote []byte) ([]mr.Value, error) {
	q, err := tdxQuoteToProto(quote)
	if err != nil {
		return nil, fmt.Errorf("tdx: quote: %w: %w", mr.ErrMalformed, err)
	}
	v4, ok := q.(*tdxpb.QuoteV4)
	if !ok {
		return nil, fmt.Errorf("tdx: quote: %w: unsupported quote type %T", mr.ErrUnsupported, q)
	}
	b := v4.GetTdQuoteBody()
	if len(b.GetRtmrs()) != 4 {
		return nil, fmt.Errorf("tdx: quote: %w: %d RTMRs", mr.ErrMalformed, len(b.GetRtmrs()))
	}
	vals := [][]byte{b.GetMrTd(), b.Rtmrs[0], b.Rtmrs[1], b.Rtmrs[2], b.Rtmrs[3], b.GetMrConfigId(), b.GetMrOwner(), b.GetMrOwnerConfig()}
	out := make([]mr.Value, len(TDXRegisters))
	for i, r := range TDXRegisters {
		out[i] = mr.Value{Register: r, Digest: mr.Digest{Alg: r.Alg, Bytes: slices.Clone(vals[i])}}
	}
	return out, nil
}

// tdxQuoteToProto is go-tdx-guest's abi.QuoteToProto, which panics on some
// malformed quotes (a certification data length past the end: found by
// FuzzTDXQuoteRegisters); the panic becomes mr.ErrMalformed.
func tdxQuoteToProto(quote []byte) (q any, err error) {
	defer func() {
		if r := recover(); r != nil {
			q, err = nil, fmt.Errorf("%w: go-tdx-guest could not parse the quote: %v", mr.ErrMalformed, r)
		}
	}()
	return tdxabi.QuoteToProto(quote)
}

// SNPRegisters are the report fields SNPReportRegisters returns, in order.
var SNPRegisters = []mr.Register{
	{Name: "measurement", Alg: mr.SHA384, Size: sevabi.MeasurementSize, Flags: mr.Readable | mr.Reported, Index: -1},
	{Name: "host_data", Alg: mr.SHA256, Size: sevabi.HostDataSize, Flags: mr.Readable | mr.Reported, Index: -1},
	{Name: "report_data", Alg: mr.SHA512, Size: sevabi.ReportDataSize, Flags: mr.Readable | mr.Reported, Index: -1},
}

// SNPReportRegisters returns measurement, host_data and report_data of a
// raw SEV-SNP attestation report. Nothing is verified: the caller checks
// the report's signature (verifier/snpverify).
func SNPReportRegisters(raw []byte) ([]mr.Value, error) {
	r, err := sevabi.ReportToProto(raw)
	if err != nil {
		return nil, fmt.Errorf("snp: report: %w: %w", mr.ErrMalformed, err)
	}
	vals := [][]byte{r.GetMeasurement(), r.GetHostData(), r.GetReportData()}
	out := make([]mr.Value, len(SNPRegisters))
	for i, reg := range SNPRegisters {
		out[i] = mr.Value{Register: reg, Digest: mr.Digest{Alg: reg.Alg, Bytes: slices.Clone(vals[i])}}
	}
	return out, nil
}

// SNPCertificates returns the DER certificates of an SNP certificate table
// (the configfs auxblob or the extended-report certificate buffer): the
// VCEK or VLEK first, then ASK, ARK and any others, in table order.
func SNPCertificates(table []byte) ([][]byte, error) {
	if len(table) == 0 {
		return nil, nil
	}
	var ct sevabi.CertTable
	if err := ct.Unmarshal(table); err != nil {
		return nil, fmt.Errorf("snp: certificate table: %w: %w", mr.ErrMalformed, err)
	}
	signer := []uuid.UUID{uuid.MustParse(sevabi.VcekGUID), uuid.MustParse(sevabi.VlekGUID)}
	var first, rest [][]byte
	for _, e := range ct.Entries {
		if slices.Contains(signer, e.GUID) {
			first = append(first, e.RawCert)
		} else {
			rest = append(rest, e.RawCert)
		}
	}
	return append(first, rest...), nil
}
