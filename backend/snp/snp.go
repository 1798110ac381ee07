// Package snp is ccmr's AMD SEV-SNP device. SNP has no register the guest
// can extend at run time: the launch measurement, HOST_DATA and REPORT_DATA
// are fields of the attestation report, read here from a report obtained
// through configfs-tsm (go-configfs-tsm report, provider sev_guest) or
// /dev/sev-guest (go-sev-guest client). Virtual registers on an SNP guest
// need a vTPM (an SVSM-provided TPM) as their backing device.
//
// Every path is prefixed with a root folder so that tests run against
// internal/tsmfake.
package snp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/report"
	sevabi "github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/client"

	"github.com/ccmr-dev/ccmr/internal/kernfs"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/cvmreport"
)

// Kernel paths, relative to the root given to Open.
const (
	ClassDir   = "/sys/class/misc/sev-guest"
	DevicePath = "/dev/sev-guest"
	ReportDir  = configfsi.TsmPrefix + "/report"
	// Provider is the configfs-tsm provider name of the SEV guest driver.
	Provider = "sev_guest"
)

// ErrNeedsLinux: the SEV-SNP guest interfaces are Linux kernel ABIs; on
// another system Open fails with it (the offline verifier needs none of them).
var ErrNeedsLinux = errors.New("snp: the SEV-SNP guest device needs Linux")

// ErrNoReport: neither configfs-tsm nor /dev/sev-guest produced a report.
var ErrNoReport = errors.New("snp: no report interface (configfs-tsm report or /dev/sev-guest)")

// FS is the file access the backend needs, on kernel paths (see kernfs.FS).
type FS = kernfs.FS

// OSFS returns the operating system's files under root ("/" for the machine).
func OSFS(root string) FS { return kernfs.OS(root) }

// ReportDevice is the /dev/sev-guest interface (go-sev-guest client.Device).
type ReportDevice = client.Device

// Option configures Open.
type Option func(*Device)

// WithFS replaces the root-prefixed operating-system files.
func WithFS(f FS) Option { return func(d *Device) { d.fs = f } }

// WithReportDevice replaces /dev/sev-guest, e.g. with go-sev-guest's mock.
func WithReportDevice(r ReportDevice) Option { return func(d *Device) { d.rdev = r } }

// WithClock sets the time source of evidence.
func WithClock(now func() time.Time) Option { return func(d *Device) { d.now = now } }

// Device is an SEV-SNP guest's report fields. Use from one goroutine at a time.
type Device struct {
	root string
	fs   FS
	rdev ReportDevice
	now  func() time.Time
	last []byte // most recent raw report
}

var registers = cvmreport.SNPRegisters

// Probe reports whether root looks like an SEV-SNP guest: the sev-guest
// misc device in sysfs or its device node.
func Probe(root string) bool {
	f := OSFS(root)
	for _, p := range []string{ClassDir, DevicePath} {
		if _, err := f.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// Open opens the SNP device whose kernel files live under root ("" or "/").
func Open(ctx context.Context, root string, opts ...Option) (*Device, error) {
	if root == "" {
		root = "/"
	}
	d := &Device{root: root, now: time.Now}
	for _, o := range opts {
		o(d)
	}
	if d.fs == nil {
		if errHost != nil { // this machine's files, on a system without the guest ABI
			return nil, errHost
		}
		d.fs = OSFS(root)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !d.exists(ClassDir) && !d.exists(DevicePath) && d.rdev == nil {
		return nil, fmt.Errorf("snp: no SEV-SNP guest under %s (no %s, no %s): %w", root, ClassDir, DevicePath, mr.ErrUnsupported)
	}
	return d, nil
}

func (d *Device) exists(p string) bool { _, err := d.fs.Stat(p); return err == nil }

// Kind returns "snp".
func (d *Device) Kind() string { return "snp" }

// Close releases nothing; it exists for mr.Device.
func (d *Device) Close() error { return nil }

// Registers lists measurement (48 bytes), host_data (32) and report_data
// (64): readable and reported, never extendable.
func (d *Device) Registers(ctx context.Context) ([]mr.Register, error) {
	return slices.Clone(registers), nil
}

// Read returns the named fields (all when names is empty) from the most
// recent report this Device obtained, or from a new report with zero report
// data when it has none. report_data is therefore that of the last report.
func (d *Device) Read(ctx context.Context, names ...string) ([]mr.Value, error) {
	if len(names) == 0 {
		for _, r := range registers {
			names = append(names, r.Name)
		}
	}
	for _, n := range names {
		if !known(n) {
			return nil, fmt.Errorf("snp: %w %q (have measurement, host_data, report_data)", mr.ErrUnknownRegister, n)
		}
	}
	if d.last == nil {
		if _, _, err := d.report(ctx, make([]byte, 64)); err != nil {
			return nil, err
		}
	}
	all, err := cvmreport.SNPReportRegisters(d.last)
	if err != nil {
		return nil, err
	}
	out := make([]mr.Value, 0, len(names))
	for _, n := range names {
		for _, v := range all {
			if v.Register.Name == n {
				out = append(out, v)
			}
		}
	}
	return out, nil
}

func known(n string) bool {
	return slices.ContainsFunc(registers, func(r mr.Register) bool { return r.Name == n })
}

func notExtendable(name string) error {
	if !known(name) {
		return fmt.Errorf("snp: %w %q", mr.ErrUnknownRegister, name)
	}
	return fmt.Errorf("snp: %w: SEV-SNP has no run-time extendable register (%s is a report field); "+
		"back virtual registers with a vTPM (SVSM) instead: --device tpm", mr.ErrNotExtendable, name)
}

// Extend always fails: ErrNotExtendable (ErrUnknownRegister for other names).
func (d *Device) Extend(ctx context.Context, name string, dg mr.Digest) error {
	return notExtendable(name)
}

// ExtendData always fails like Extend.
func (d *Device) ExtendData(ctx context.Context, name string, data []byte) error {
	return notExtendable(name)
}

// Report returns a raw attestation report over cvmreport.ReportData(nonce) and the
// certificate table (GUID table) that came with it, if any.
func (d *Device) Report(ctx context.Context, nonce []byte) (raw, certs []byte, err error) {
	rd := cvmreport.ReportData(nonce)
	return d.report(ctx, rd[:])
}

func (d *Device) report(ctx context.Context, rd []byte) ([]byte, []byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	var errs []error
	if d.exists(ReportDir) {
		resp, err := report.Get(d.fs, &report.Request{InBlob: rd, GetAuxBlob: true})
		if err == nil {
			if p := strings.TrimSpace(resp.Provider); p != Provider {
				return nil, nil, fmt.Errorf("snp: configfs-tsm provider is %q, want %q", p, Provider)
			}
			return d.keep(resp.OutBlob, resp.AuxBlob)
		}
		errs = append(errs, fmt.Errorf("configfs-tsm %s: %w", path.Join(d.root, ReportDir), err))
	}
	dev := d.rdev
	if dev == nil && d.exists(DevicePath) {
		ld, closeFn, err := openDeviceNode(filepath.Join(d.root, DevicePath))
		if err != nil {
			errs = append(errs, err)
		} else {
			defer closeFn()
			dev = ld
		}
	}
	if dev != nil {
		var a [64]byte
		copy(a[:], rd)
		raw, certs, err := client.GetRawExtendedReport(dev, a)
		if err == nil {
			return d.keep(raw, certs)
		}
		errs = append(errs, fmt.Errorf("%s: %w", DevicePath, err))
	}
	return nil, nil, fmt.Errorf("%w: %w", ErrNoReport, errors.Join(errs...))
}

func (d *Device) keep(raw, certs []byte) ([]byte, []byte, error) {
	if len(raw) > sevabi.ReportSize {
		raw = raw[:sevabi.ReportSize] // the ioctl response may be padded
	}
	if _, err := sevabi.ReportToProto(raw); err != nil {
		return nil, nil, fmt.Errorf("snp: report: %w: %w", mr.ErrMalformed, err)
	}
	d.last = bytes.Clone(raw)
	return raw, certs, nil
}

// Attest returns a report over cvmreport.ReportData(nonce), with the certificates that
// came with it and the report's own measurement, host_data and report_data.
func (d *Device) Attest(ctx context.Context, nonce []byte) (*mr.Evidence, error) {
	raw, certs, err := d.Report(ctx, nonce)
	if err != nil {
		return nil, err
	}
	vals, err := cvmreport.SNPReportRegisters(raw)
	if err != nil {
		return nil, err
	}
	cs, err := cvmreport.SNPCertificates(certs)
	if err != nil {
		return nil, err
	}
	return &mr.Evidence{
		Platform:     mr.PlatformSNP,
		Nonce:        slices.Clone(nonce),
		Time:         d.now().UTC(),
		Report:       raw,
		Certificates: cs,
		Registers:    vals,
	}, nil
}

var (
	_ mr.Device   = (*Device)(nil)
	_ mr.Attester = (*Device)(nil)
)
