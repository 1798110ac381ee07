package tsmfake_test

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"syscall"
	"testing"

	"github.com/google/go-configfs-tsm/report"
	tdxabi "github.com/google/go-tdx-guest/abi"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"

	"github.com/ccmr-dev/ccmr/internal/tsmfake"
)

func TestReportRules(t *testing.T) {
	m, err := tsmfake.NewTDX(t.TempDir(), tsmfake.TDXOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// 64-byte inblob: a quote carrying it.
	in := bytes.Repeat([]byte{3}, 64)
	resp, err := report.Get(m, &report.Request{InBlob: in})
	if err != nil {
		t.Fatal(err)
	}
	q, err := tdxabi.QuoteToProto(resp.OutBlob)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(q.(*tdxpb.QuoteV4).TdQuoteBody.ReportData, in) || resp.Provider != "tdx_guest\n" {
		t.Fatal("quote does not carry the inblob or wrong provider")
	}
	// The provider refuses inblobs that are not 64 bytes.
	if _, err := report.Get(m, &report.Request{InBlob: in[:10]}); err == nil {
		t.Error("10-byte inblob accepted")
	}
	if _, err := report.Get(m, &report.Request{InBlob: append(in, 1)}); err == nil {
		t.Error("65-byte inblob accepted")
	}
}

func TestSysfsRules(t *testing.T) {
	m, err := tsmfake.NewTDX(t.TempDir(), tsmfake.TDXOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := tsmfake.MeasurementsDir + "/rtmr1:sha384"
	d := bytes.Repeat([]byte{1}, 48)
	if err := m.WriteFile(p, d); err != nil {
		t.Fatal(err)
	}
	want := sha512.Sum384(append(make([]byte, 48), d...))
	got, err := m.ReadFile(p)
	if err != nil || !bytes.Equal(got, want[:]) {
		t.Fatalf("read %x (%v)", got, err)
	}
	if err := m.WriteFile(p, nil); err != nil {
		t.Errorf("empty write: %v (the kernel returns 0)", err)
	}
	if err := m.WriteFile(tsmfake.MeasurementsDir+"/nosuch", d); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("missing attribute: %v", err)
	}
}
