package importer

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm-tools/proto/attest"
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
)

// corpusFile reads rel from the public corpus as a File named rel.
func corpusFile(t testing.TB, rel string) File {
	t.Helper()
	return File{Name: rel, Data: corpus.Read(t, rel)}
}

// bundleJSON is b as written, with the logs' Source (the file name, for
// people) cleared: the one thing that differs between a whole file and
// its split parts.
func bundleJSON(t *testing.T, b *bundle.Bundle) []byte {
	t.Helper()
	for i := range b.Logs {
		b.Logs[i].Source = ""
	}
	var buf bytes.Buffer
	if err := b.Write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// splitGoTPM builds the bundle of the corpus's extracted parts of a GCE
// attestation, as `ccmr evidence import` is given them today.
func splitGoTPM(t *testing.T, dir string) *bundle.Bundle {
	t.Helper()
	ak := corpusFile(t, dir+"/ak_pub.tpmt_public")
	p := Parts{AK: &ak, AKCerts: []File{corpusFile(t, dir+"/ak_cert.der")},
		Logs: []Log{{Format: "tcg2", File: corpusFile(t, dir+"/eventlog.bin")}}}
	for _, bank := range []string{"sha1", "sha256", "sha384"} {
		pcrs := corpusFile(t, dir+"/pcrs-"+bank+".serialized")
		p.TPMQuotes = append(p.TPMQuotes, TPMQuote{Attest: corpusFile(t, dir+"/quote-"+bank+".attest"), Signature: corpusFile(t, dir+"/quote-"+bank+".sig"), PCRs: &pcrs})
	}
	b, err := Build(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every go-tpm-tools Attestation of the corpus imports whole into the very
// bundle its extracted parts make.
func TestGoTPMCorpusEqualsSplitParts(t *testing.T) {
	for _, name := range []string{"gce-cos-85-no-nonce", "gce-cos-85-nonce9009"} {
		dir := "go-tpm-tools/attestations/" + name
		p, err := GoTPM(corpusFile(t, dir+".pb"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, err := Build(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got, want := bundleJSON(t, b), bundleJSON(t, splitGoTPM(t, dir)); !bytes.Equal(got, want) {
			t.Errorf("%s: the whole file's bundle differs from its split parts' bundle", name)
		}
		if len(b.Evidence.TPMQuotes) != 3 || len(b.Evidence.Certificates) != 1 || len(b.Logs) != 1 {
			t.Errorf("%s: %d quotes, %d certificates, %d logs", name, len(b.Evidence.TPMQuotes), len(b.Evidence.Certificates), len(b.Logs))
		}
	}
}

// gotpmCorpus returns the nonce9009 attestation, decoded.
func gotpmCorpus(t *testing.T) (*attest.Attestation, File) {
	t.Helper()
	f := corpusFile(t, "go-tpm-tools/attestations/gce-cos-85-nonce9009.pb")
	var a attest.Attestation
	if err := proto.Unmarshal(f.Data, &a); err != nil {
		t.Fatal(err)
	}
	return &a, f
}

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantGoTPMErr checks that GoTPM refuses data with a --gotpm error naming
// the file and containing want.
func wantGoTPMErr(t *testing.T, what string, data []byte, want string, sentinel error) {
	t.Helper()
	_, err := GoTPM(File{Name: "hostile.pb", Data: data})
	var pe *PartError
	if !errors.As(err, &pe) || pe.Part != PartGoTPM || pe.File != "hostile.pb" || !strings.Contains(err.Error(), want) || !errors.Is(err, sentinel) {
		t.Errorf("%s: %v, want a --gotpm hostile.pb error with %q (%v)", what, err, want, sentinel)
	}
}

// Hostile go-tpm-tools files: each is refused naming the file and, where
// there is one, the member.
func TestGoTPMHostile(t *testing.T) {
	a, f := gotpmCorpus(t)
	// Re-encoding the corpus file is the input itself: the hostile
	// variants below differ from a real file only by what they name.
	if _, err := GoTPM(File{Name: "x", Data: marshal(t, a)}); err != nil {
		t.Fatalf("re-encoded corpus file: %v", err)
	}

	// Data after the message: a second event_log (protobuf keeps the last
	// one), a field go-tpm-tools does not define, a stray byte.
	dup := protowire.AppendTag(bytes.Clone(f.Data), 3, protowire.BytesType)
	dup = protowire.AppendBytes(dup, []byte("a different log"))
	wantGoTPMErr(t, "trailing duplicate event_log", dup, "given twice or data follows", mr.ErrMalformed)
	unk := protowire.AppendTag(bytes.Clone(f.Data), 99, protowire.VarintType)
	unk = protowire.AppendVarint(unk, 1)
	wantGoTPMErr(t, "trailing unknown field", unk, "field go-tpm-tools' Attestation does not define", mr.ErrMalformed)
	wantGoTPMErr(t, "trailing zero byte", append(bytes.Clone(f.Data), 0), "not a go-tpm-tools Attestation", mr.ErrMalformed)
	wantGoTPMErr(t, "empty", nil, "no AK public area", ErrMissing)
	wantGoTPMErr(t, "truncated", f.Data[:len(f.Data)/2], "not a go-tpm-tools Attestation", mr.ErrMalformed)

	// An unknown field inside a quote is named by its path.
	q := proto.Clone(a).(*attest.Attestation)
	qb := protowire.AppendTag(nil, 7, protowire.VarintType)
	q.Quotes[1].ProtoReflect().SetUnknown(protowire.AppendVarint(qb, 5))
	wantGoTPMErr(t, "unknown field in quotes[1]", marshal(t, q), "member quotes[1]:", mr.ErrMalformed)

	// The sha256 quote's PCR values relabelled as sha1: the bank of the
	// values disagrees with the quote's selection.
	q = proto.Clone(a).(*attest.Attestation)
	if q.Quotes[1].Pcrs.Hash != tpmpb.HashAlgo_SHA256 {
		t.Fatalf("corpus quotes[1] is %v", q.Quotes[1].Pcrs.Hash)
	}
	q.Quotes[1].Pcrs.Hash = tpmpb.HashAlgo_SHA1
	wantGoTPMErr(t, "bank relabelled", marshal(t, q), "member quotes[1].pcrs.hash: ", mr.ErrMalformed)
	// The sha384 quote given the sha256 quote's values and bank.
	q = proto.Clone(a).(*attest.Attestation)
	q.Quotes[2].Pcrs = a.Quotes[1].Pcrs
	wantGoTPMErr(t, "values of another bank", marshal(t, q), "the PCR values are of the sha256 bank, the quote's selection is of sha384", mr.ErrMalformed)
	// A value of the wrong size; a PCR missing; a value changed (its
	// digest no longer is the quote's).
	q = proto.Clone(a).(*attest.Attestation)
	q.Quotes[1].Pcrs.Pcrs[4] = make([]byte, 20)
	wantGoTPMErr(t, "short value", marshal(t, q), "member quotes[1].pcrs.pcrs[4]", mr.ErrMalformed)
	q = proto.Clone(a).(*attest.Attestation)
	delete(q.Quotes[1].Pcrs.Pcrs, 23)
	wantGoTPMErr(t, "missing PCR", marshal(t, q), "member quotes[1].pcrs: ", mr.ErrMalformed)
	q = proto.Clone(a).(*attest.Attestation)
	q.Quotes[1].Pcrs.Pcrs[0] = bytes.Repeat([]byte{1}, 32)
	// It imports (the values parse) and the quote then does not verify:
	// its PCR digest is not the values' digest.
	p, err := GoTPM(File{Name: "changed.pb", Data: marshal(t, q)})
	if err != nil {
		t.Fatalf("a changed PCR value is verify's to judge: %v", err)
	}
	b, err := Build(p)
	if err != nil {
		t.Fatal(err)
	}
	bq := b.Evidence.TPMQuotes[1]
	vals, err := tpmverify.ParsePCRFile(bq.PCRFile)
	if err != nil {
		t.Fatal(err)
	}
	mq := mr.TPMQuote{Alg: mr.SHA256, Attest: bq.Attest, Signature: bq.Signature, PCRs: vals[mr.SHA256]}
	if err := tpmverify.VerifyQuotePEM([]byte(b.Evidence.PublicKey), mq, b.Nonce); err == nil {
		t.Error("a quote with a changed PCR value verifies")
	}

	// Bad members: the AK, the signature, the certificate.
	q = proto.Clone(a).(*attest.Attestation)
	q.AkPub = []byte("not a key")
	wantGoTPMErr(t, "bad ak_pub", marshal(t, q), "member ak_pub: ", mr.ErrMalformed)
	q = proto.Clone(a).(*attest.Attestation)
	q.Quotes[0].RawSig = q.Quotes[0].RawSig[6:]
	wantGoTPMErr(t, "bare signature", marshal(t, q), "member quotes[0].raw_sig: not a TPMT_SIGNATURE", mr.ErrUnsupported)
	q = proto.Clone(a).(*attest.Attestation)
	q.AkCert = []byte("junk")
	wantGoTPMErr(t, "bad ak_cert", marshal(t, q), "member ak_cert: ", mr.ErrMalformed)
	q = proto.Clone(a).(*attest.Attestation)
	q.Quotes = nil
	wantGoTPMErr(t, "no quotes", marshal(t, q), "member quotes: ", ErrMissing)

	// A TEE attestation beside the quotes is refused, not dropped.
	q = proto.Clone(a).(*attest.Attestation)
	q.TeeAttestation = &attest.Attestation_TdxAttestation{}
	wantGoTPMErr(t, "tdx attestation", marshal(t, q), "member tdx_attestation: ", mr.ErrUnsupported)
	q = proto.Clone(a).(*attest.Attestation)
	q.TeeAttestation = &attest.Attestation_SevSnpAttestation{}
	wantGoTPMErr(t, "snp attestation", marshal(t, q), "member sev_snp_attestation: ", mr.ErrUnsupported)
}

// A canonical event log becomes a cel-tlv log; the corpus's Confidential
// Space CEL is one.
func TestGoTPMCanonicalEventLog(t *testing.T) {
	a, _ := gotpmCorpus(t)
	a.CanonicalEventLog = corpus.Read(t, filepath.ToSlash("go-tpm-tools/cel/confidential-space-rtmr3.cel.bin"))
	p, err := GoTPM(File{Name: "cs.pb", Data: marshal(t, a)})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Logs) != 2 || p.Logs[1].Format != "cel-tlv" || p.Logs[1].File.Name != "cs.pb#canonical_event_log" {
		t.Fatalf("logs: %+v", p.Logs)
	}
	if _, err := Build(p); err != nil {
		t.Fatal(err)
	}
}
