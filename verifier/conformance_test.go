package verifier_test

import (
	"context"
	"crypto"
	"encoding/binary"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/bundle/importer"
	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier"
)

// Library-level conformance: bundles built by importer.Build from the
// public corpus (read in place) and judged by verifier.Verify, for what the
// CLI tests (cmd/ccmr/evidence_test.go) do not reach: which layer fails and
// why, PCR values that differ from the quote, a firmware log that is not the
// quoted machine's, and the Azure hardware report's values judged by
// policy.

func cfile(t *testing.T, rel string) importer.File {
	t.Helper()
	p := corpus.Path(t, rel)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return importer.File{Name: p, Data: b}
}

func ptr(f importer.File) *importer.File { return &f }

func gceParts(t *testing.T) importer.Parts {
	const g = "go-tpm-tools/attestations/gce-cos-85-nonce9009/"
	p := importer.Parts{AK: ptr(cfile(t, g+"ak_pub.tpmt_public"))}
	for _, b := range []string{"sha1", "sha256", "sha384"} {
		p.TPMQuotes = append(p.TPMQuotes, importer.TPMQuote{Attest: cfile(t, g+"quote-"+b+".attest"),
			Signature: cfile(t, g+"quote-"+b+".sig"), PCRs: ptr(cfile(t, g+"pcrs-"+b+".serialized"))})
	}
	p.Logs = []importer.Log{{Format: "auto", File: cfile(t, g+"eventlog.bin")}}
	return p
}

func verify(t *testing.T, p importer.Parts, opts verifier.Options) *verifier.Report {
	t.Helper()
	b, err := importer.Build(p)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := verifier.Verify(context.Background(), b, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func failure(rep *verifier.Report) string {
	if l := rep.FailedLayer(); l >= 0 {
		return rep.Layers[l].Failure.Reason
	}
	return ""
}

func TestConformanceGCELayers(t *testing.T) {
	ak := cfile(t, "go-tpm-tools/attestations/gce-cos-85-nonce9009/ak_pub.pem").Data
	opts := verifier.Options{Nonce: []byte{0x90, 0x09}, TrustedKeys: [][]byte{ak}}
	rep := verify(t, gceParts(t), opts)
	if !rep.Trusted {
		t.Fatalf("GCE not trusted: %s", failure(rep))
	}
	// Layer 1 proved PCR 0-9 of three banks from the event log.
	if got := strings.Join(rep.Layers[1].Checked, "\n"); !strings.Contains(got, "replay to 30 quoted register values") {
		t.Fatalf("layer 1: %s", got)
	}

	// A PCR value changed in the PCR file (the quote untouched): import
	// accepts it, layer 0 refuses the PCR digest.
	p := gceParts(t)
	pf := append([]byte(nil), p.TPMQuotes[1].PCRs.Data...)
	pf[132+4+4+2] ^= 1 // first byte of pcr0's sha256 value (after the selection list, n, count, size)
	p.TPMQuotes[1].PCRs = &importer.File{Name: "changed.pcrs", Data: pf}
	rep = verify(t, p, opts)
	if rep.Trusted || rep.FailedLayer() != 0 || !strings.Contains(failure(rep), "PCR values do not match") {
		t.Fatalf("changed PCR value: trusted=%v layer %d %q", rep.Trusted, rep.FailedLayer(), failure(rep))
	}

	// Another machine's firmware log: layer 0 passes, layer 1 names the PCR.
	p = gceParts(t)
	p.Logs = []importer.Log{{Format: "tcg2", File: cfile(t, "go-tpm-tools/eventlogs/gdc-host.bin")}}
	rep = verify(t, p, opts)
	if rep.Trusted || rep.FailedLayer() != 1 || rep.Layers[1].Failure.Register == "" {
		t.Fatalf("foreign event log: trusted=%v layer %d %+v", rep.Trusted, rep.FailedLayer(), rep.Layers[1].Failure)
	}
}

// The AK in its three forms is the same key.
func TestConformanceAKForms(t *testing.T) {
	const g = "go-tpm-tools/attestations/gce-cos-85-nonce9009/"
	want, err := importer.ParseAK(cfile(t, g+"ak_pub.pem").Data)
	if err != nil {
		t.Fatal(err)
	}
	type eq interface{ Equal(crypto.PublicKey) bool }
	for _, f := range []string{g + "ak_pub.tpm2b_public", g + "ak_pub.tpmt_public", "go-attestation/windows_gcp_shielded_vm/ak_pub.tpmt_public"} {
		k, err := importer.ParseAK(cfile(t, f).Data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if strings.HasPrefix(f, g) && !want.(eq).Equal(k) {
			t.Fatalf("%s is not ak_pub.pem", f)
		}
	}
	win, _ := importer.ParseAK(cfile(t, "go-attestation/windows_gcp_shielded_vm/ak_pub.tpmt_public").Data)
	winPEM, err := importer.ParseAK(cfile(t, "go-attestation/windows_gcp_shielded_vm/ak_pub.pem").Data)
	if err != nil || !win.(eq).Equal(winPEM) {
		t.Fatalf("windows TPMT_PUBLIC is not its PEM: %v", err)
	}
}

// A TPM2B-wrapped TPMS_ATTEST imports and verifies like the bare one.
func TestConformanceWrappedAttest(t *testing.T) {
	p := importer.Parts{AK: ptr(cfile(t, "keylime/ak.pub"))}
	q := cfile(t, "keylime/quote.out")
	wrapped := binary.BigEndian.AppendUint16(nil, uint16(len(q.Data)))
	wrapped = append(wrapped, q.Data...)
	p.TPMQuotes = []importer.TPMQuote{{Attest: importer.File{Name: "wrapped", Data: wrapped}, Signature: cfile(t, "keylime/quotesig.out"), PCRs: ptr(cfile(t, "keylime/quotepcr.out"))}}
	rep := verify(t, p, verifier.Options{TrustedKeys: [][]byte{cfile(t, "keylime/akpub.pem").Data}})
	if !rep.Trusted {
		t.Fatalf("wrapped attest: %s", failure(rep))
	}
}

// Azure SNP: the SNP report's MEASUREMENT becomes a trusted register that a
// policy judges; the value is read here from the raw report bytes.
func TestConformanceAzureSNPPolicy(t *testing.T) {
	const a = "trustee/az-snp-vtpm/"
	hcl := cfile(t, a+"hcl-report.bin")
	p := importer.Parts{AzureHCLReport: &hcl, VCEK: ptr(cfile(t, a+"vcek.pem")),
		TPMQuotes: []importer.TPMQuote{{Attest: cfile(t, a+"tpm-quote.attest"), Signature: cfile(t, a+"tpm-quote.tpmt_signature"), PCRs: ptr(cfile(t, a+"tpm-quote-pcrs.serialized"))}}}
	meas := mr.Digest{Alg: mr.SHA384, Bytes: hcl.Data[32+0x90 : 32+0x90+48]}
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	// The HCL path is asked for and the policy names the launch
	// measurement (issue 15 item 4).
	snpPol := &verifier.SNPPolicy{Measurement: []string{hex.EncodeToString(meas.Bytes)}}
	rep := verify(t, p, verifier.Options{At: at, AzureHCL: true, Policy: &verifier.Policy{SNP: snpPol, Registers: map[string][]mr.Digest{"measurement": {meas}}}})
	if !rep.Trusted {
		t.Fatalf("Azure SNP with its measurement as policy: %s", failure(rep))
	}
	other := mr.Digest{Alg: mr.SHA384, Bytes: make([]byte, 48)}
	rep = verify(t, p, verifier.Options{At: at, AzureHCL: true, Policy: &verifier.Policy{SNP: snpPol, Registers: map[string][]mr.Digest{"measurement": {other}}}})
	if rep.Trusted || rep.FailedLayer() != verifier.LayerPolicy {
		t.Fatalf("Azure SNP with another measurement: trusted=%v layer %d", rep.Trusted, rep.FailedLayer())
	}
	// Without the VCEK the chain cannot be checked: import refuses.
	p.VCEK = nil
	if _, err := importer.Build(p); err == nil || !strings.Contains(err.Error(), "--vcek") {
		t.Fatalf("no VCEK: %v", err)
	}
}
