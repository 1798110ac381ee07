package importer

import (
	"fmt"

	"github.com/google/go-tpm-tools/proto/attest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
)

// Whole-file part names, as `ccmr evidence import` spells their flags.
const (
	PartGoTPM   = "--gotpm"
	PartTrustee = "--trustee"
)

// member names one member of a whole evidence file: the name its parts
// carry into Build, so that a later error still says where the bytes came
// from ("att.pb#quotes[1].quote").
func member(f File, m string) string { return f.Name + "#" + m }

// memberErr is an error about member m of whole file f.
func memberErr(part string, f File, m string, format string, a ...any) error {
	return &PartError{Part: part, File: f.Name, Err: fmt.Errorf("member %s: "+format, append([]any{m}, a...)...)}
}

// GoTPM reads a go-tpm-tools Attestation protobuf (what `gotpm attest`
// and the GCE and Confidential Space agents write) with go-tpm-tools' own
// message type and returns its parts for Build: the AK (TPMT_PUBLIC), its
// certificate and the intermediates, one quote per bank with the bank's
// PCR values, the TCG event log and the canonical event log.
//
// The file must be exactly one encoding of what it holds: members
// go-tpm-tools does not define (unknown fields, at any depth), a member
// given twice, or bytes after the message are refused, since protobuf
// would otherwise take the last of two values or keep bytes nobody reads.
// A TDX or SEV-SNP attestation beside the quotes is refused: a ccmr TPM
// bundle has no place that verify checks for it, and dropping it would
// let a reader believe it was judged. GCE instance_info is not imported:
// it is unsigned metadata that proves nothing.
func GoTPM(f File) (Parts, error) {
	var a attest.Attestation
	if err := (proto.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(f.Data, &a); err != nil {
		return Parts{}, &PartError{Part: PartGoTPM, File: f.Name, Err: fmt.Errorf("%w: not a go-tpm-tools Attestation protobuf: %v", mr.ErrMalformed, err)}
	}
	if path, ok := unknownField(a.ProtoReflect(), ""); ok {
		return Parts{}, memberErr(PartGoTPM, f, path, "%w: a field go-tpm-tools' Attestation does not define", mr.ErrMalformed)
	}
	// Every field Go writes once and omits when empty, so the message's
	// size is the input's: a shorter one means a field given twice (the
	// last one wins) or an empty one spelled out, which no go-tpm-tools
	// writer does.
	if n := proto.Size(&a); n != len(f.Data) {
		return Parts{}, &PartError{Part: PartGoTPM, File: f.Name, Err: fmt.Errorf("%w: %d bytes hold a %d-byte message: a field is given twice or data follows the message", mr.ErrMalformed, len(f.Data), n)}
	}
	switch a.GetTeeAttestation().(type) {
	case nil:
	case *attest.Attestation_SevSnpAttestation:
		return Parts{}, memberErr(PartGoTPM, f, "sev_snp_attestation", "%w: an SEV-SNP attestation beside TPM quotes is not imported (a ccmr TPM bundle would not verify it); import the report with --snp-report/--vcek", mr.ErrUnsupported)
	case *attest.Attestation_TdxAttestation:
		return Parts{}, memberErr(PartGoTPM, f, "tdx_attestation", "%w: a TDX quote beside TPM quotes is not imported (a ccmr TPM bundle would not verify it); import the quote with --tdx-quote", mr.ErrUnsupported)
	default:
		return Parts{}, memberErr(PartGoTPM, f, "tee_attestation", "%w: unknown TEE attestation", mr.ErrUnsupported)
	}
	var p Parts
	if len(a.GetAkPub()) == 0 {
		return Parts{}, memberErr(PartGoTPM, f, "ak_pub", "%w: no AK public area", ErrMissing)
	}
	if _, err := ParseAK(a.GetAkPub()); err != nil {
		return Parts{}, memberErr(PartGoTPM, f, "ak_pub", "%w", err)
	}
	p.AK = &File{Name: member(f, "ak_pub"), Data: a.GetAkPub()}
	if len(a.GetQuotes()) == 0 {
		return Parts{}, memberErr(PartGoTPM, f, "quotes", "%w: no quotes", ErrMissing)
	}
	for i, q := range a.GetQuotes() {
		m := fmt.Sprintf("quotes[%d]", i)
		tq, err := goTPMQuote(f, m, q.GetQuote(), q.GetRawSig(), int32(q.GetPcrs().GetHash()), q.GetPcrs().GetPcrs())
		if err != nil {
			return Parts{}, err
		}
		p.TPMQuotes = append(p.TPMQuotes, tq)
	}
	if c := a.GetAkCert(); len(c) > 0 {
		if _, err := ParseCertificates(c); err != nil {
			return Parts{}, memberErr(PartGoTPM, f, "ak_cert", "%w", err)
		}
		p.AKCerts = append(p.AKCerts, File{Name: member(f, "ak_cert"), Data: c})
	}
	for i, c := range a.GetIntermediateCerts() {
		m := fmt.Sprintf("intermediate_certs[%d]", i)
		if _, err := ParseCertificates(c); err != nil {
			return Parts{}, memberErr(PartGoTPM, f, m, "%w", err)
		}
		p.AKCerts = append(p.AKCerts, File{Name: member(f, m), Data: c})
	}
	if l := a.GetEventLog(); len(l) > 0 {
		p.Logs = append(p.Logs, Log{Format: "tcg2", File: File{Name: member(f, "event_log"), Data: l}})
	}
	if l := a.GetCanonicalEventLog(); len(l) > 0 {
		p.Logs = append(p.Logs, Log{Format: "cel-tlv", File: File{Name: member(f, "canonical_event_log"), Data: l}})
	}
	return p, nil
}

// goTPMQuote turns one go-tpm-tools Quote (TPMS_ATTEST, TPMT_SIGNATURE,
// the bank's PCR values by index) into the tpm2_quote parts Build reads.
// The PCR values must be of the bank the quote selects, exactly the PCRs
// it selects, and each of the bank's digest size: a file whose values
// are of another bank than its quote is refused naming the member.
func goTPMQuote(f File, m string, quote, sig []byte, hashAlg int32, pcrs map[uint32][]byte) (TPMQuote, error) {
	info, err := tpmverify.ParseQuoteInfo(UnwrapAttest(quote))
	if err != nil {
		return TPMQuote{}, memberErr(PartGoTPM, f, m+".quote", "not a TPMS_ATTEST quote: %w", err)
	}
	if _, err := tpmverify.ParseSignature(sig); err != nil {
		return TPMQuote{}, memberErr(PartGoTPM, f, m+".raw_sig", "not a TPMT_SIGNATURE: %w", err)
	}
	if len(info.Selection) != 1 {
		return TPMQuote{}, memberErr(PartGoTPM, f, m+".quote", "%w: the quote selects %d PCR banks, want one", mr.ErrUnsupported, len(info.Selection))
	}
	bank := info.Selection[0].Alg
	// go-tpm-tools' HashAlgo numbers are the TPM_ALG_IDs.
	alg := mr.Alg(hashAlg)
	if hashAlg < 0 || hashAlg > 0xffff || !alg.Valid() {
		return TPMQuote{}, memberErr(PartGoTPM, f, m+".pcrs.hash", "%w: hash %d is not a PCR bank", mr.ErrMalformed, hashAlg)
	}
	if alg != bank {
		return TPMQuote{}, memberErr(PartGoTPM, f, m+".pcrs.hash", "%w: the PCR values are of the %v bank, the quote's selection is of %v", mr.ErrMalformed, alg, bank)
	}
	vals := make(map[int][]byte, len(pcrs))
	for k, v := range pcrs {
		if len(v) != alg.Size() {
			return TPMQuote{}, memberErr(PartGoTPM, f, fmt.Sprintf("%s.pcrs.pcrs[%d]", m, k), "%w: %d bytes, a %v value has %d", mr.ErrMalformed, len(v), alg, alg.Size())
		}
		vals[int(k)] = v
	}
	if err := sameSelection(info, mr.TPMQuote{Alg: alg, PCRs: vals}); err != nil {
		return TPMQuote{}, memberErr(PartGoTPM, f, m+".pcrs", "%w: %v", mr.ErrMalformed, err)
	}
	pf, err := tpmverify.MarshalPCRFile(mr.TPMQuote{Alg: alg, Attest: UnwrapAttest(quote), PCRs: vals})
	if err != nil {
		return TPMQuote{}, memberErr(PartGoTPM, f, m+".pcrs", "%w: %v", mr.ErrMalformed, err)
	}
	return TPMQuote{
		Attest:    File{Name: member(f, m+".quote"), Data: quote},
		Signature: File{Name: member(f, m+".raw_sig"), Data: sig},
		PCRs:      &File{Name: member(f, m+".pcrs"), Data: pf},
	}, nil
}

// unknownField returns the path of the first field that m or a message
// inside it holds without its type defining it.
func unknownField(m protoreflect.Message, path string) (string, bool) {
	if len(m.GetUnknown()) > 0 {
		if path == "" {
			return "(top level)", true
		}
		return path, true
	}
	var found string
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := string(fd.Name())
		if path != "" {
			name = path + "." + name
		}
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					if p, ok := unknownField(mv.Message(), fmt.Sprintf("%s[%v]", name, k.Interface())); ok {
						found = p
						return false
					}
					return true
				})
			}
		case fd.IsList():
			if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					if p, ok := unknownField(l.Get(i).Message(), fmt.Sprintf("%s[%d]", name, i)); ok {
						found = p
						return false
					}
				}
			}
		case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
			if p, ok := unknownField(v.Message(), name); ok {
				found = p
				return false
			}
		}
		return true
	})
	return found, found != ""
}
