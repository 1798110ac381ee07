package fleet

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tdxverify"
)

// hwBundle is a v1 bundle of real hardware evidence answering nonce.
func hwBundle(t *testing.T, p mr.Platform, report []byte, certs [][]byte, nonce []byte) []byte {
	t.Helper()
	b := &bundle.Bundle{Format: bundle.Format, Platform: p, Nonce: nonce, Evidence: bundle.Evidence{Report: report, Certificates: certs}}
	var buf bytes.Buffer
	if err := b.Write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// enrolHW enrols id with the identity the evidence names.
func enrolHW(t *testing.T, st Store, id, group string, p mr.Platform, evidence []byte, tr *Trust) {
	t.Helper()
	ident, err := Identity(p, evidence)
	if err != nil {
		t.Fatal(err)
	}
	var raw []byte
	if tr != nil {
		if raw, err = tr.Marshal(); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Enroll(context.Background(), Machine{ID: id, Group: group, Platform: string(p), Identity: ident, Trust: raw}); err != nil {
		t.Fatal(err)
	}
}

// TDX and SNP machines are enrolled with their hardware's identity (SNP
// CHIP_ID, TDX PPID from the PCK certificate) and judged with their
// stored trust, on the corpus's real reports and quotes: evidence of the
// enrolled chip gets a verdict; genuine evidence of another chip (or
// another platform) posted as the machine is refused 403 with nothing
// written and the nonce still unused; a report that names no chip (VLEK,
// CHIP_ID masked) cannot be enrolled.
func TestHardwareEnrolment(t *testing.T) {
	snpA, vcekA := corpus.Read(t, "go-sev-guest/attestation.bin"), corpus.Read(t, "go-sev-guest/vcek.testcer")
	snpB, vcekB := corpus.Read(t, "trustee/snp/test-report.bin"), corpus.Read(t, "trustee/snp/test-vcek.der")
	tdxA, tdxB := corpus.Read(t, "dcap-qvl/tdx_quote"), corpus.Read(t, "trustee/tdx/tdx_quote_4.dat")
	vlek := corpus.Read(t, "trustee/snp/test-vlek-report.bin")
	if _, err := Identity(mr.PlatformSNP, vlek); err == nil {
		t.Error("a VLEK report (CHIP_ID zero) has an identity")
	}
	if _, err := Identity(mr.PlatformTDX, tdxA[:len(tdxA)/2]); err == nil {
		t.Error("half a TDX quote has an identity")
	}
	dir := t.TempDir()
	for name, pol := range map[string]string{"snp": `{"snp": {"allow_debug": true}}`, "tdx": `{}`} {
		if err := os.WriteFile(filepath.Join(dir, name+".json"), []byte(pol), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	groups, err := LoadGroups(dir)
	if err != nil {
		t.Fatal(err)
	}
	rd := func(r []byte) []byte { return append([]byte(nil), r[0x50:0x90]...) }
	tdxRD := func(q []byte) []byte {
		pq, err := tdxverify.ParseQuote(q)
		if err != nil {
			t.Fatal(err)
		}
		return append([]byte(nil), pq.Body.ReportData[:]...)
	}
	for name, url := range storeURLs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			r := newReplica(t, url, Config{Groups: groups})
			issue := func(n []byte) {
				if err := r.st.IssueNonce(ctx, n, time.Now().Add(time.Hour)); err != nil {
					t.Fatal(err)
				}
			}
			// The corpus's reports answer fixed nonces: the test issues
			// them, as the service issues its own.
			for _, n := range [][]byte{rd(snpA), rd(snpB), tdxRD(tdxA), tdxRD(tdxB)} {
				issue(n)
			}
			enrolHW(t, r.st, "snp-a", "snp", mr.PlatformSNP, snpA, nil)
			enrolHW(t, r.st, "snp-b", "snp", mr.PlatformSNP, snpB, nil)
			enrolHW(t, r.st, "tdx-a", "tdx", mr.PlatformTDX, tdxA, &Trust{AllowMissingCollateral: true})

			// Another chip's genuine report posted as snp-a: refused.
			before := takeSnap(t, r.st, "snp-a")
			if code, _ := r.post(t, "snp-a", hwBundle(t, mr.PlatformSNP, snpB, [][]byte{vcekB}, rd(snpB))); code != 403 {
				t.Errorf("chip B's report as snp-a: status %d, want 403", code)
			}
			// A TDX quote posted as an SNP machine: refused.
			if code, _ := r.post(t, "snp-a", hwBundle(t, mr.PlatformTDX, tdxB, nil, tdxRD(tdxB))); code != 403 {
				t.Errorf("a TDX quote as snp-a: status %d, want 403", code)
			}
			if after := takeSnap(t, r.st, "snp-a"); after != before {
				t.Errorf("refused evidence wrote: %+v, was %+v", after, before)
			}
			// Its own chip's report: judged, trusted (its group's policy
			// accepts the debug guest), the state advanced.
			code, res := r.post(t, "snp-a", hwBundle(t, mr.PlatformSNP, snpA, [][]byte{vcekA}, rd(snpA)))
			if code != 200 || !res.Trusted || !res.Advanced {
				t.Fatalf("snp-a's own report: %d %+v", code, res)
			}
			// Chip B's report, refused as snp-a, still has its nonce: it
			// is judged as snp-b, the machine enrolled with chip B.
			if code, res := r.post(t, "snp-b", hwBundle(t, mr.PlatformSNP, snpB, [][]byte{vcekB}, rd(snpB))); code != 200 || res.Replayed {
				t.Fatalf("chip B's report as snp-b: %d %+v", code, res)
			}

			// TDX: another platform's quote as tdx-a: refused.
			before = takeSnap(t, r.st, "tdx-a")
			if code, _ := r.post(t, "tdx-a", hwBundle(t, mr.PlatformTDX, tdxB, nil, tdxRD(tdxB))); code != 403 {
				t.Errorf("platform B's quote as tdx-a: status %d, want 403", code)
			}
			if after := takeSnap(t, r.st, "tdx-a"); after != before {
				t.Errorf("refused evidence wrote: %+v, was %+v", after, before)
			}
			// Its own quote, without collateral, which the machine's stored
			// trust allows (weakened).
			code, res = r.post(t, "tdx-a", hwBundle(t, mr.PlatformTDX, tdxA, nil, tdxRD(tdxA)))
			if code != 200 || !res.Trusted || !res.Advanced || !bytes.Contains(res.Report, []byte("collateral")) {
				t.Fatalf("tdx-a's own quote: %d %+v", code, res)
			}
			// Enrolment refuses a machine that pins nothing or the wrong kind.
			for _, m := range []Machine{
				{ID: "x", Group: "g", Platform: "snp"},
				{ID: "x", Group: "g", Platform: "snp", Identity: "tdx-ppid:811dca2a26b952e85bb6448b097ba4fd"},
				{ID: "x", Group: "g", Platform: "tdx", Identity: "tdx-ppid:811dca2a26b952e85bb6448b097ba4fd", KeyPEM: "k"},
				{ID: "x", Group: "g", Platform: "sim", KeyPEM: "k", Identity: "tdx-ppid:811dca2a26b952e85bb6448b097ba4fd"},
				{ID: "x", Group: "g", Platform: "tdx", Identity: "tdx-ppid:00000000000000000000000000000000"},
				{ID: "x", Group: "g", Platform: "tdx", Identity: "tdx-ppid:811DCA2A26B952E85BB6448B097BA4FD"},
				{ID: "x", Group: "g", Platform: "tdx", Identity: "811dca2a26b952e85bb6448b097ba4fd"},
				{ID: "x", Group: "g", Platform: "tdx", Identity: "tdx-ppid:811dca2a26b952e85bb6448b097ba4fd", Trust: []byte(`{"allow_all": true}`)},
			} {
				if err := r.st.Enroll(ctx, m); err == nil {
					t.Errorf("enrolled %+v", m)
				}
			}
		})
	}
}
