package verifier

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/mr"
)

// The report's Proven holds what a real TDX quote proves (the published
// MRTD and RTMRs, as fields and as sha384 registers), and nothing once
// layer 0 failed, even after the quote itself verified (a policy's tdx
// section refused it).
func TestProvenTDX(t *testing.T) {
	quote := corpusFile(t, "dcap-qvl/tdx_quote")
	coll := corpusFile(t, "dcap-qvl/tdx_quote_collateral.json")
	var exp map[string]json.RawMessage
	if err := json.Unmarshal(corpusFile(t, "dcap-qvl/EXPECTED.json"), &exp); err != nil {
		t.Fatal(err)
	}
	var e map[string]any
	if err := json.Unmarshal(exp["tdx_quote"], &e); err != nil {
		t.Fatal(err)
	}
	nonce, _ := hex.DecodeString(e["report_data"].(string))
	b := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformTDX, Nonce: nonce,
		Evidence: bundle.Evidence{Report: quote}, Collateral: &bundle.Collateral{TDX: json.RawMessage(coll)}}
	o := Options{At: time.Date(2025, 7, 10, 0, 0, 0, 0, time.UTC), Nonce: nonce}
	rep, err := Verify(context.Background(), b, o)
	if err != nil || !rep.Trusted {
		t.Fatalf("real TDX quote: %v\n%s", err, reportText(rep))
	}
	p := rep.Proven
	if p == nil || p.TDX == nil || p.SNP != nil {
		t.Fatalf("proven: %+v", p)
	}
	for name, got := range map[string]string{"mrtd": p.TDX.MRTD, "rtmr0": p.TDX.RTMR0, "rtmr1": p.TDX.RTMR1, "rtmr2": p.TDX.RTMR2, "rtmr3": p.TDX.RTMR3} {
		if want := strings.ToLower(e[name].(string)); got != want {
			t.Errorf("proven tdx %s = %s, want %s", name, got, want)
		}
		found := false
		for _, r := range p.Registers {
			found = found || (r.Name == name && r.Digest.Alg == mr.SHA384 && r.Digest.Hex() == strings.ToLower(e[name].(string)))
		}
		if !found {
			t.Errorf("proven registers lack %s: %+v", name, p.Registers)
		}
	}
	if p.TDX.Debug || len(p.TDX.TEETCBSVN) != 32 {
		t.Errorf("proven tdx debug %v, tee_tcb_svn %q", p.TDX.Debug, p.TDX.TEETCBSVN)
	}

	o.Policy = &Policy{TDX: &TDXPolicy{MRTD: []string{strings.Repeat("00", 48)}}}
	rep, err = Verify(context.Background(), b, o)
	if err != nil || rep.Trusted || rep.FailedLayer() != LayerEvidence {
		t.Fatalf("a wrong tdx.mrtd: %v\n%s", err, reportText(rep))
	}
	if p := rep.Proven; p == nil || p.TDX != nil || len(p.Registers) > 0 || len(p.Virtual) > 0 {
		t.Fatalf("layer 0 failed, yet values are reported proven: %+v", p)
	}
}

// A real SNP report's fields as proven.
func TestProvenSNP(t *testing.T) {
	report := corpusFile(t, "go-sev-guest/attestation.bin")
	vcek := corpusFile(t, "go-sev-guest/vcek.testcer")
	b := &bundle.Bundle{Format: bundle.Format, Platform: mr.PlatformSNP, Nonce: report[0x50 : 0x50+64],
		Evidence: bundle.Evidence{Report: report, Certificates: [][]byte{vcek}}}
	rep, err := Verify(context.Background(), b, Options{At: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), Policy: &Policy{SNP: &SNPPolicy{AllowDebug: true}}})
	if err != nil || !rep.Trusted {
		t.Fatalf("real SNP report: %v\n%s", err, reportText(rep))
	}
	s := rep.Proven.SNP
	if s == nil || s.Measurement != hex.EncodeToString(report[0x90:0x90+48]) || s.HostData != hex.EncodeToString(report[0xC0:0xC0+32]) || !s.Debug || s.Signer != "VCEK" {
		t.Fatalf("proven snp: %+v", s)
	}
	// The same fields, pinned as a policy section, pass.
	pol := &Policy{SNP: &SNPPolicy{AllowDebug: true, Measurement: []string{s.Measurement}, HostData: []string{s.HostData}, VMPL: &s.VMPL, MinTCB: &s.ReportedTCBParts}}
	rep, _ = Verify(context.Background(), b, Options{At: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), Policy: pol})
	if !rep.Trusted {
		t.Fatalf("the proven fields as a policy:\n%s", reportText(rep))
	}
}

// Register names sort as people read them.
func TestProvenOrder(t *testing.T) {
	rs := []ProvenRegister{{Name: "pcr10", Digest: mr.Zero(mr.SHA256)}, {Name: "pcr2", Digest: mr.Zero(mr.SHA256)}, {Name: "pcr2", Digest: mr.Zero(mr.SHA1)}, {Name: "mrtd", Digest: mr.Zero(mr.SHA384)}}
	sortRegisters(rs)
	var got []string
	for _, r := range rs {
		got = append(got, r.Name+"/"+r.Digest.Alg.String())
	}
	if strings.Join(got, " ") != "mrtd/sha384 pcr2/sha1 pcr2/sha256 pcr10/sha256" {
		t.Errorf("order %v", got)
	}
}

// When layer 1 fails (a runtime log record changed), the registers the sim
// statement signed are still proven, the virtual registers no longer are:
// Proven never reports what a failed layer would have proved.
func TestProvenAfterLayerFailure(t *testing.T) {
	g := newGuest(t)
	g.extend("mr_app", "one")
	b := g.quote(false)
	rep := verifyT(t, b, g.opts())
	if !rep.Trusted || len(rep.Proven.Virtual) != 1 || rep.Proven.Virtual[0].Name != "mr_app" || len(rep.Proven.Registers) == 0 {
		t.Fatalf("honest: proven %+v\n%s", rep.Proven, reportText(rep))
	}
	// Drop the runtime log: rtmr3's quoted value is explained by nothing
	// and mr_app has no history.
	b.Logs = nil
	rep = verifyT(t, b, g.opts())
	if rep.Trusted || rep.FailedLayer() == LayerEvidence {
		t.Fatalf("without its runtime log: trusted %v, failed layer %d\n%s", rep.Trusted, rep.FailedLayer(), reportText(rep))
	}
	if len(rep.Proven.Virtual) != 0 || len(rep.Proven.Registers) == 0 {
		t.Fatalf("a failed layer %d: proven %+v", rep.FailedLayer(), rep.Proven)
	}
}
