package snp_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sevabi "github.com/google/go-sev-guest/abi"
	sgtest "github.com/google/go-sev-guest/testing"
	"github.com/google/go-sev-guest/verify"

	"github.com/ccmr-dev/ccmr/backend/snp"
	"github.com/ccmr-dev/ccmr/internal/modcache"
	"github.com/ccmr-dev/ccmr/internal/tsmfake"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/cvmreport"
)

// inModCache are the real artifacts these tests read from the dependency
// that ships them, in place in the module cache (testdata/README.md says
// what each is); testdata/ holds only the expected values.
var inModCache = map[string][2]string{
	"attestation.bin": {"github.com/google/go-sev-guest", "verify/testdata/attestation.bin"},
	"vcek.der":        {"github.com/google/go-sev-guest", "verify/testdata/vcek.testcer"},
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	p := filepath.Join("testdata", name)
	if m, ok := inModCache[name]; ok {
		var err error
		if p, err = modcache.File(m[0], m[1]); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newMachine(t testing.TB, o tsmfake.SNPOptions) *tsmfake.Machine {
	t.Helper()
	if o.Measurement == nil {
		o.Measurement = bytes.Repeat([]byte{0x4d}, 48)
	}
	if o.HostData == nil {
		o.HostData = bytes.Repeat([]byte{0x48}, 32)
	}
	m, err := tsmfake.NewSNP(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func open(t testing.TB, m *tsmfake.Machine) *snp.Device {
	t.Helper()
	d, err := snp.Open(context.Background(), m.Root, snp.WithFS(m))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestReadFields(t *testing.T) {
	m := newMachine(t, tsmfake.SNPOptions{})
	d := open(t, m)
	v, err := d.Read(context.Background(), "measurement", "host_data")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(v[0].Digest.Bytes, bytes.Repeat([]byte{0x4d}, 48)) || !bytes.Equal(v[1].Digest.Bytes, bytes.Repeat([]byte{0x48}, 32)) {
		t.Fatalf("fields: %v", v)
	}
	// Cached: a second read makes no new report.
	n := m.Reports()
	if _, err := d.Read(context.Background()); err != nil || m.Reports() != n {
		t.Fatalf("second read made a report (%v)", err)
	}
	if _, err := d.Read(context.Background(), "rtmr0"); !errors.Is(err, mr.ErrUnknownRegister) {
		t.Errorf("read rtmr0: %v", err)
	}
}

func TestExtendRefused(t *testing.T) {
	d := open(t, newMachine(t, tsmfake.SNPOptions{}))
	ctx := context.Background()
	err := d.Extend(ctx, "measurement", mr.Digest{Alg: mr.SHA384, Bytes: make([]byte, 48)})
	if !errors.Is(err, mr.ErrNotExtendable) || !strings.Contains(err.Error(), "vTPM") || !strings.Contains(err.Error(), "SVSM") {
		t.Errorf("extend: %v", err)
	}
	if err := d.ExtendData(ctx, "host_data", []byte("x")); !errors.Is(err, mr.ErrNotExtendable) {
		t.Errorf("extend data: %v", err)
	}
	if err := d.Extend(ctx, "pcr0", mr.Digest{}); !errors.Is(err, mr.ErrUnknownRegister) {
		t.Errorf("unknown: %v", err)
	}
	regs, _ := d.Registers(ctx)
	for _, r := range regs {
		if r.Flags&mr.Extendable != 0 {
			t.Errorf("%s claims extendable", r.Name)
		}
	}
}

func TestAttest(t *testing.T) {
	m := newMachine(t, tsmfake.SNPOptions{})
	d := open(t, m)
	nonce := bytes.Repeat([]byte{0xab}, 100) // longer than 64: SHA-512
	ev, err := d.Attest(context.Background(), nonce)
	if err != nil {
		t.Fatal(err)
	}
	r, err := sevabi.ReportToProto(ev.Report)
	if err != nil {
		t.Fatal(err)
	}
	rd := cvmreport.ReportData(nonce)
	if ev.Platform != mr.PlatformSNP || !bytes.Equal(r.ReportData, rd[:]) {
		t.Fatalf("report data %x", r.ReportData)
	}
	if !bytes.Equal(r.Measurement, bytes.Repeat([]byte{0x4d}, 48)) {
		t.Error("measurement not in report")
	}
	if len(ev.Certificates) < 1 {
		t.Fatal("no certificates from the auxblob")
	}
	vcek, err := x509.ParseCertificate(ev.Certificates[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(vcek.Subject.CommonName, "VCEK") && !strings.Contains(vcek.Subject.String(), "VCEK") {
		t.Errorf("first certificate is %q, want the VCEK", vcek.Subject)
	}
	// Registers in evidence come from the report itself.
	for _, v := range ev.Registers {
		if v.Register.Name == "report_data" && !bytes.Equal(v.Digest.Bytes, rd[:]) {
			t.Error("evidence report_data differs from the report")
		}
	}
}

func TestProbe(t *testing.T) {
	s := newMachine(t, tsmfake.SNPOptions{})
	x, err := tsmfake.NewTDX(t.TempDir(), tsmfake.TDXOptions{})
	if err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	for _, c := range []struct {
		root string
		snp  bool
	}{{s.Root, true}, {x.Root, false}, {empty, false}} {
		if got := snp.Probe(c.root); got != c.snp {
			t.Errorf("snp.Probe(%s) = %v", c.root, got)
		}
	}
	if _, err := snp.Open(context.Background(), empty); !errors.Is(err, mr.ErrUnsupported) {
		t.Errorf("open empty: %v", err)
	}
}

func TestRealReport(t *testing.T) {
	var want map[string]string
	if err := json.Unmarshal(readTestdata(t, "attestation.expected.json"), &want); err != nil {
		t.Fatal(err)
	}
	raw := readTestdata(t, "attestation.bin")
	vals, err := cvmreport.SNPReportRegisters(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vals {
		if got := v.Digest.Hex(); got != want[v.Register.Name] {
			t.Errorf("%s = %s, go-sev-guest's test says %s", v.Register.Name, got, want[v.Register.Name])
		}
	}
	r, err := sevabi.ReportToProto(raw)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(r.ChipId) != want["chip_id"] || hex.EncodeToString(r.ReportId) != want["report_id"] {
		t.Error("chip_id or report_id differ from the published values")
	}
	// The report's signature verifies with its VCEK (go-sev-guest verify).
	vcek, err := x509.ParseCertificate(readTestdata(t, "vcek.der"))
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.SnpReportSignature(raw, vcek); err != nil {
		t.Fatalf("real report signature: %v", err)
	}
	bad := bytes.Clone(raw)
	bad[0x90] ^= 1 // flip a measurement bit
	if err := verify.SnpReportSignature(bad, vcek); err == nil {
		t.Fatal("tampered report verified")
	}
}

// Without configfs-tsm the report comes from /dev/sev-guest, here
// go-sev-guest's own mock device answering with its test reports: the
// evidence holds the device's report for our report data, and the report's
// fields are the registers.
func TestSevGuestDeviceFallback(t *testing.T) {
	ctx := context.Background()
	tcs := sgtest.TestCases()
	dev, err := sgtest.TcDevice(tcs, &sgtest.DeviceOptions{Now: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	m := newMachine(t, tsmfake.SNPOptions{NoConfigfs: true})
	d, err := snp.Open(ctx, m.Root, snp.WithFS(m), snp.WithReportDevice(dev))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tcs {
		if tc.WantErr != "" || tc.FwErr != 0 {
			continue
		}
		ev, err := d.Attest(ctx, tc.Input[:])
		if err != nil {
			t.Fatalf("%s: %v", tc.Name, err)
		}
		if len(ev.Report) != sevabi.ReportSize || !bytes.Equal(ev.Report[:0x2a0], tc.Output[:0x2a0]) { // the mock signs the report: compare the signed part
			t.Fatalf("%s: the evidence is not the device's report", tc.Name)
		}
		vals, err := cvmreport.SNPReportRegisters(ev.Report)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			if v.Register.Name == "report_data" && !bytes.Equal(v.Digest.Bytes, tc.Input[:]) {
				t.Fatalf("%s: report_data %x, want %x", tc.Name, v.Digest.Bytes, tc.Input)
			}
		}
	}
}
