package importer

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ccmr-dev/ccmr/internal/strictjson"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
)

// Trustee evidence kinds, as `ccmr evidence import --trustee` reports
// them. The names are Trustee's tee names (kbs_types::Tee) with the
// evidence version.
const (
	TrusteeTDX        = "tdx"
	TrusteeAzSNPv0    = "az-snp-vtpm/v0"
	TrusteeAzSNPv1    = "az-snp-vtpm/v1"
	TrusteeAzSNPv2    = "az-snp-vtpm/v2"
	TrusteeAzTDXv0    = "az-tdx-vtpm/v0"
	TrusteeAzTDXv1    = "az-tdx-vtpm/v1"
	TrusteeTPM        = "tpm"
	trusteeAARegister = "rtmr3" // the attestation agent extends RTMR3 (CC MR index 4)
)

// The JSON of Trustee's verifiers (confidential-containers/trustee,
// deps/verifier/src/{tdx,az_snp_vtpm,az_tdx_vtpm}; the attester side is
// guest-components' attestation-agent). Trustee's serde structs accept
// unknown members; ccmr refuses them, and refuses a member given twice,
// since what one reader drops another may read.

// trusteeTDX is TdxEvidence: a base64 (standard) TD quote, the CCEL
// (base64, optional) and, from attestation agents that kept it beside
// the CCEL, the AA event log (its text form, or base64 of its binary
// form).
type trusteeTDX struct {
	CCEventlog *string `json:"cc_eventlog"`
	Quote      string  `json:"quote"`
	AAEventlog *string `json:"aa_eventlog"`
}

// trusteeVTPMQuoteV0 is az-snp-vtpm's vtpm::Quote as serde writes it:
// byte vectors as JSON arrays of numbers, the RSASSA signature bare,
// the sha256 PCR values in the quote's selection order.
type trusteeVTPMQuoteV0 struct {
	Signature []uint8   `json:"signature"`
	Message   []uint8   `json:"message"`
	PCRs      [][]uint8 `json:"pcrs"`
}

// trusteeTPMQuote is Trustee's TpmQuote (v1 and later): hex strings.
type trusteeTPMQuote struct {
	Signature string   `json:"signature"`
	Message   string   `json:"message"`
	PCRs      []string `json:"pcrs"`
}

// trusteeTPM is guest-components' TPM attester Evidence: the AK as
// base64 of its DER SubjectPublicKeyInfo, and one sha256 quote with
// base64 members (the signature a whole TPMT_SIGNATURE) and hex PCR
// values.
type trusteeTPM struct {
	TPMQuote trusteeTPMQuote `json:"tpm_quote"`
	AKPublic string          `json:"ak_public"`
}

type trusteeAzSNPv0 struct {
	Quote  trusteeVTPMQuoteV0 `json:"quote"`
	Report []uint8            `json:"report"`
	VCEK   string             `json:"vcek"` // PEM
}

type trusteeAzSNPv1 struct {
	Version   int             `json:"version"`
	TPMQuote  trusteeTPMQuote `json:"tpm_quote"`
	HCLReport string          `json:"hcl_report"` // base64url
	VCEK      string          `json:"vcek"`       // base64url of DER
}

type trusteeAzTDXv0 struct {
	TPMQuote  trusteeVTPMQuoteV0 `json:"tpm_quote"`
	HCLReport []uint8            `json:"hcl_report"`
	TDQuote   []uint8            `json:"td_quote"`
}

type trusteeAzTDXv1 struct {
	Version   int             `json:"version"`
	TPMQuote  trusteeTPMQuote `json:"tpm_quote"`
	HCLReport string          `json:"hcl_report"` // base64url
	TDQuote   string          `json:"td_quote"`   // base64url
}

// Trustee reads the evidence JSON a Trustee (KBS) attester sends for
// `tdx`, `snp`, `az-snp-vtpm` (v0, v1, v2), `az-tdx-vtpm` (v0, v1) and `tpm` and
// returns its parts for Build, and the kind it found (TrusteeTDX, ...).
// The kind is told by the members, as Trustee's untagged serde enum
// does; every member must be one that kind defines, present once, of
// its type. An `snp` evidence is the sev crate's serde form of the
// report and its certificate table, in the form of sev 1.x-5.x, 6.1-6.2
// or 6.3-7.x (TrusteeSNPSev1, ...): the report is rebuilt to its ABI
// bytes as that crate does (trusteeSNPEvidence).
//
// An Azure vTPM quote carries its RSASSA signature bare: Trustee checks
// it as PKCS#1 v1.5 over SHA-256 (az-snp-vtpm's Quote::verify), so it
// becomes that TPMT_SIGNATURE. Its PCR values are sha256, in the order
// of the quote's selection, which must be one sha256 bank of exactly as
// many PCRs.
func Trustee(f File) (Parts, string, error) {
	var top map[string]json.RawMessage
	if err := strictjson.Decode(f.Data, &top); err != nil {
		return Parts{}, "", trusteeErr(f, "", "%w: not Trustee evidence JSON: %w", mr.ErrMalformed, err)
	}
	has := func(names ...string) bool {
		for _, n := range names {
			if _, ok := top[n]; !ok {
				return false
			}
		}
		return true
	}
	switch {
	case has("version"):
		var v int
		if err := json.Unmarshal(top["version"], &v); err != nil {
			return Parts{}, "", trusteeErr(f, "version", "%w: %v", mr.ErrMalformed, err)
		}
		switch {
		case has("td_quote") && v == 1:
			return trusteeAzTDX1(f)
		case has("vcek") && (v == 1 || v == 2):
			return trusteeAzSNP1(f, v)
		}
		return Parts{}, "", trusteeErr(f, "version", "%w: version %d of az-snp-vtpm (1, 2) or az-tdx-vtpm (1) evidence", mr.ErrUnsupported, v)
	case has("quote", "report", "vcek"):
		return trusteeAzSNP0(f)
	case has("tpm_quote", "hcl_report", "td_quote"):
		return trusteeAzTDX0(f)
	case has("tpm_quote", "ak_public"):
		return trusteeTPMEvidence(f)
	case has("quote"):
		return trusteeTDXEvidence(f)
	case has("attestation_report"):
		return trusteeSNPEvidence(f, top)
	}
	names := make([]string, 0, len(top))
	for n := range top {
		names = append(names, n)
	}
	slices.Sort(names)
	return Parts{}, "", trusteeErr(f, "", "%w: members %q are none of Trustee's tdx, snp, az-snp-vtpm, az-tdx-vtpm or tpm evidence", mr.ErrUnsupported, names)
}

// trusteeErr is an error about member m (or the whole file) of f.
func trusteeErr(f File, m string, format string, a ...any) error {
	if m == "" {
		return &PartError{Part: PartTrustee, File: f.Name, Err: fmt.Errorf(format, a...)}
	}
	return memberErr(PartTrustee, f, m, format, a...)
}

// decodeStrict decodes f strictly into v, naming where it failed.
func decodeStrict(f File, kind string, v any) error {
	if err := strictjson.Decode(f.Data, v); err != nil {
		var se *strictjson.Error
		if errors.As(err, &se) && se.Path != "" {
			return trusteeErr(f, se.Path, "%w: %s evidence: %w", mr.ErrMalformed, kind, err)
		}
		return trusteeErr(f, "", "%w: %s evidence: %w", mr.ErrMalformed, kind, err)
	}
	return nil
}

// b64 decodes a base64 member: std or url alphabet, padded as serde_with
// and the base64 crate write it (an unpadded string of a length that
// needs none is taken too).
func b64(f File, m, s string, url bool) ([]byte, error) {
	enc := base64.StdEncoding
	if url {
		enc = base64.URLEncoding
	}
	if !strings.HasSuffix(s, "=") && len(s)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	b, err := enc.Strict().DecodeString(s)
	if err != nil {
		return nil, trusteeErr(f, m, "%w: not base64: %v", mr.ErrMalformed, err)
	}
	if len(b) == 0 {
		return nil, trusteeErr(f, m, "%w: empty", ErrMissing)
	}
	return b, nil
}

func unhex(f File, m, s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, trusteeErr(f, m, "%w: not hex: %v", mr.ErrMalformed, err)
	}
	if len(b) == 0 {
		return nil, trusteeErr(f, m, "%w: empty", ErrMissing)
	}
	return b, nil
}

func trusteeTDXEvidence(f File) (Parts, string, error) {
	var e trusteeTDX
	if err := decodeStrict(f, TrusteeTDX, &e); err != nil {
		return Parts{}, "", err
	}
	q, err := b64(f, "quote", e.Quote, false)
	if err != nil {
		return Parts{}, "", err
	}
	p := Parts{TDXQuote: &File{Name: member(f, "quote"), Data: q}}
	// Trustee reads an empty cc_eventlog as none.
	if e.CCEventlog != nil && *e.CCEventlog != "" {
		l, err := b64(f, "cc_eventlog", *e.CCEventlog, false)
		if err != nil {
			return Parts{}, "", err
		}
		p.Logs = append(p.Logs, Log{Format: "ccel", File: File{Name: member(f, "cc_eventlog"), Data: l}})
	}
	if e.AAEventlog != nil && *e.AAEventlog != "" {
		// The attestation agent first sent its log file as text (INIT
		// line, one record a line), later base64 of the binary form.
		l := Log{Format: "aael-text", Register: trusteeAARegister, File: File{Name: member(f, "aa_eventlog"), Data: []byte(*e.AAEventlog)}}
		if !strings.HasPrefix(*e.AAEventlog, "INIT ") {
			b, err := b64(f, "aa_eventlog", *e.AAEventlog, false)
			if err != nil {
				return Parts{}, "", trusteeErr(f, "aa_eventlog", "%w: neither the AA event log's text form (INIT line first) nor base64 of its binary form", mr.ErrMalformed)
			}
			l.Format, l.File.Data = "runtime", b
		}
		p.Logs = append(p.Logs, l)
	}
	return p, TrusteeTDX, nil
}

func trusteeAzSNP0(f File) (Parts, string, error) {
	var e trusteeAzSNPv0
	if err := decodeStrict(f, TrusteeAzSNPv0, &e); err != nil {
		return Parts{}, "", err
	}
	tq, err := vtpmQuote(f, "quote", e.Quote.Message, e.Quote.Signature, e.Quote.PCRs)
	if err != nil {
		return Parts{}, "", err
	}
	if len(e.Report) == 0 {
		return Parts{}, "", trusteeErr(f, "report", "%w: empty", ErrMissing)
	}
	if !strings.Contains(e.VCEK, "-----BEGIN CERTIFICATE-----") {
		return Parts{}, "", trusteeErr(f, "vcek", "%w: not a PEM certificate", mr.ErrMalformed)
	}
	return Parts{TPMQuotes: []TPMQuote{tq},
		AzureHCLReport: &File{Name: member(f, "report"), Data: e.Report},
		VCEK:           &File{Name: member(f, "vcek"), Data: []byte(e.VCEK)}}, TrusteeAzSNPv0, nil
}

func trusteeAzSNP1(f File, v int) (Parts, string, error) {
	kind := TrusteeAzSNPv1
	if v == 2 {
		kind = TrusteeAzSNPv2
	}
	var e trusteeAzSNPv1
	if err := decodeStrict(f, kind, &e); err != nil {
		return Parts{}, "", err
	}
	tq, err := vtpmQuoteHex(f, e.TPMQuote)
	if err != nil {
		return Parts{}, "", err
	}
	hcl, err := b64(f, "hcl_report", e.HCLReport, true)
	if err != nil {
		return Parts{}, "", err
	}
	vcek, err := b64(f, "vcek", e.VCEK, true)
	if err != nil {
		return Parts{}, "", err
	}
	return Parts{TPMQuotes: []TPMQuote{tq},
		AzureHCLReport: &File{Name: member(f, "hcl_report"), Data: hcl},
		VCEK:           &File{Name: member(f, "vcek"), Data: vcek}}, kind, nil
}

func trusteeAzTDX0(f File) (Parts, string, error) {
	var e trusteeAzTDXv0
	if err := decodeStrict(f, TrusteeAzTDXv0, &e); err != nil {
		return Parts{}, "", err
	}
	tq, err := vtpmQuote(f, "tpm_quote", e.TPMQuote.Message, e.TPMQuote.Signature, e.TPMQuote.PCRs)
	if err != nil {
		return Parts{}, "", err
	}
	for m, b := range map[string][]uint8{"hcl_report": e.HCLReport, "td_quote": e.TDQuote} {
		if len(b) == 0 {
			return Parts{}, "", trusteeErr(f, m, "%w: empty", ErrMissing)
		}
	}
	return Parts{TPMQuotes: []TPMQuote{tq},
		AzureHCLReport: &File{Name: member(f, "hcl_report"), Data: e.HCLReport},
		TDXQuote:       &File{Name: member(f, "td_quote"), Data: e.TDQuote}}, TrusteeAzTDXv0, nil
}

func trusteeAzTDX1(f File) (Parts, string, error) {
	var e trusteeAzTDXv1
	if err := decodeStrict(f, TrusteeAzTDXv1, &e); err != nil {
		return Parts{}, "", err
	}
	tq, err := vtpmQuoteHex(f, e.TPMQuote)
	if err != nil {
		return Parts{}, "", err
	}
	hcl, err := b64(f, "hcl_report", e.HCLReport, true)
	if err != nil {
		return Parts{}, "", err
	}
	td, err := b64(f, "td_quote", e.TDQuote, true)
	if err != nil {
		return Parts{}, "", err
	}
	return Parts{TPMQuotes: []TPMQuote{tq},
		AzureHCLReport: &File{Name: member(f, "hcl_report"), Data: hcl},
		TDXQuote:       &File{Name: member(f, "td_quote"), Data: td}}, TrusteeAzTDXv1, nil
}

// vtpmQuoteHex decodes a v1+ TpmQuote (hex members) and makes its parts.
func vtpmQuoteHex(f File, q trusteeTPMQuote) (TPMQuote, error) {
	msg, err := unhex(f, "tpm_quote.message", q.Message)
	if err != nil {
		return TPMQuote{}, err
	}
	sig, err := unhex(f, "tpm_quote.signature", q.Signature)
	if err != nil {
		return TPMQuote{}, err
	}
	pcrs := make([][]byte, len(q.PCRs))
	for i, s := range q.PCRs {
		if pcrs[i], err = unhex(f, fmt.Sprintf("tpm_quote.pcrs[%d]", i), s); err != nil {
			return TPMQuote{}, err
		}
	}
	return vtpmQuote(f, "tpm_quote", msg, sig, pcrs)
}

// vtpmQuote makes the tpm2_quote parts of an Azure vTPM quote: the
// TPMS_ATTEST, the bare RSASSA-SHA256 signature as a TPMT_SIGNATURE, and
// the sha256 values paired in order with the PCRs the quote selects.
func vtpmQuote(f File, m string, msg, sig []byte, vals [][]byte) (TPMQuote, error) {
	if len(sig) == 0 || len(sig) > 0xffff {
		return TPMQuote{}, trusteeErr(f, m+".signature", "%w: %d bytes", mr.ErrMalformed, len(sig))
	}
	// TPMT_SIGNATURE: sigAlg TPM_ALG_RSASSA, hash TPM_ALG_SHA256, then the
	// TPM2B_PUBLIC_KEY_RSA.
	tsig := binary.BigEndian.AppendUint16(nil, 0x0014)
	tsig = binary.BigEndian.AppendUint16(tsig, uint16(mr.SHA256))
	tsig = binary.BigEndian.AppendUint16(tsig, uint16(len(sig)))
	tsig = append(tsig, sig...)
	return selectedQuote(f, m, msg, tsig, vals)
}

// selectedQuote makes the tpm2_quote parts of a quote whose sha256 values
// are given in the order of the PCRs it selects.
func selectedQuote(f File, m string, msg, tsig []byte, vals [][]byte) (TPMQuote, error) {
	info, err := tpmverify.ParseQuoteInfo(msg)
	if err != nil {
		return TPMQuote{}, trusteeErr(f, m+".message", "not a TPMS_ATTEST quote: %w", err)
	}
	if len(info.Selection) != 1 || info.Selection[0].Alg != mr.SHA256 {
		return TPMQuote{}, trusteeErr(f, m+".message", "%w: the quote selects %d banks, want the one sha256 bank whose values the file gives", mr.ErrUnsupported, len(info.Selection))
	}
	sel := info.Selection[0].PCRs
	if len(vals) != len(sel) {
		return TPMQuote{}, trusteeErr(f, m+".pcrs", "%w: %d values for the %d PCRs the quote selects", mr.ErrMalformed, len(vals), len(sel))
	}
	pcrs := make(map[int][]byte, len(sel))
	for i, idx := range sel {
		if len(vals[i]) != mr.SHA256.Size() {
			return TPMQuote{}, trusteeErr(f, fmt.Sprintf("%s.pcrs[%d]", m, i), "%w: %d bytes, a sha256 value has 32", mr.ErrMalformed, len(vals[i]))
		}
		pcrs[idx] = vals[i]
	}
	pf, err := tpmverify.MarshalPCRFile(mr.TPMQuote{Alg: mr.SHA256, Attest: msg, PCRs: pcrs})
	if err != nil {
		return TPMQuote{}, trusteeErr(f, m+".pcrs", "%w: %v", mr.ErrMalformed, err)
	}
	return TPMQuote{
		Attest:    File{Name: member(f, m+".message"), Data: msg},
		Signature: File{Name: member(f, m+".signature"), Data: tsig},
		PCRs:      &File{Name: member(f, m+".pcrs"), Data: pf},
	}, nil
}

func trusteeTPMEvidence(f File) (Parts, string, error) {
	var e trusteeTPM
	if err := decodeStrict(f, TrusteeTPM, &e); err != nil {
		return Parts{}, "", err
	}
	der, err := b64(f, "ak_public", e.AKPublic, false)
	if err != nil {
		return Parts{}, "", err
	}
	akPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	if _, err := ParseAK(akPEM); err != nil {
		return Parts{}, "", trusteeErr(f, "ak_public", "%w", err)
	}
	msg, err := b64(f, "tpm_quote.message", e.TPMQuote.Message, false)
	if err != nil {
		return Parts{}, "", err
	}
	sig, err := b64(f, "tpm_quote.signature", e.TPMQuote.Signature, false)
	if err != nil {
		return Parts{}, "", err
	}
	if _, err := tpmverify.ParseSignature(sig); err != nil {
		return Parts{}, "", trusteeErr(f, "tpm_quote.signature", "not a TPMT_SIGNATURE: %w", err)
	}
	vals := make([][]byte, len(e.TPMQuote.PCRs))
	for i, s := range e.TPMQuote.PCRs {
		if vals[i], err = unhex(f, fmt.Sprintf("tpm_quote.pcrs[%d]", i), s); err != nil {
			return Parts{}, "", err
		}
	}
	info, err := tpmverify.ParseQuoteInfo(msg)
	if err != nil {
		return Parts{}, "", trusteeErr(f, "tpm_quote.message", "not a TPMS_ATTEST quote: %w", err)
	}
	// The attester sends all 24 sha256 PCRs; the quote may select fewer.
	// Values for exactly the selected PCRs pair in order; 24 values of a
	// quote over fewer pair by index.
	if len(info.Selection) == 1 && len(vals) == 24 && len(info.Selection[0].PCRs) < 24 {
		picked := make([][]byte, 0, len(info.Selection[0].PCRs))
		for _, idx := range info.Selection[0].PCRs {
			if idx >= 24 {
				return Parts{}, "", trusteeErr(f, "tpm_quote.message", "%w: the quote selects PCR %d", mr.ErrMalformed, idx)
			}
			picked = append(picked, vals[idx])
		}
		vals = picked
	}
	tq, err := selectedQuote(f, "tpm_quote", msg, sig, vals)
	if err != nil {
		return Parts{}, "", err
	}
	return Parts{TPMQuotes: []TPMQuote{tq}, AK: &File{Name: member(f, "ak_public"), Data: akPEM}}, TrusteeTPM, nil
}
