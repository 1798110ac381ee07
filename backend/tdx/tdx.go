// Package tdx is ccmr's Intel TDX device: MRTD, RTMR0..3 and the
// MRCONFIGID/MROWNER/MROWNERCONFIG fields, read and extended through the
// kernel's TSM measurement-register sysfs ABI (Linux 6.16+,
// /sys/class/misc/tdx_guest/measurements), or the configfs RTMR interface
// that go-configfs-tsm's rtmr package drives; quotes through configfs-tsm
// (go-configfs-tsm report, provider tdx_guest) or /dev/tdx_guest
// (go-tdx-guest client); the CC event log from the CCEL ACPI table.
//
// The sysfs part is hand-written because no maintained Go library drives the
// 6.16 measurement-register files; it is a handful of reads and one write.
// Every path is prefixed with a root folder, so tests run against
// internal/tsmfake, which keeps the kernel's semantics.
package tdx

import (
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/report"
	"github.com/google/go-configfs-tsm/rtmr"
	"github.com/google/go-tdx-guest/client"

	"github.com/ccmr-dev/ccmr/internal/kernfs"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/cvmreport"
)

// Kernel paths, relative to the root given to Open.
const (
	MeasurementsDir = "/sys/class/misc/tdx_guest/measurements"
	ClassDir        = "/sys/class/misc/tdx_guest"
	DevicePath      = "/dev/tdx_guest"
	ReportDir       = configfsi.TsmPrefix + "/report"
	RTMRConfigDir   = configfsi.TsmPrefix + "/rtmrs"
	CCELTablePath   = "/sys/firmware/acpi/tables/CCEL"
	CCELDataPath    = "/sys/firmware/acpi/tables/data/CCEL"
	// Provider is the configfs-tsm provider name of the TDX guest driver.
	Provider = "tdx_guest"
	// FirmwareLogFormat names the CCEL in mr.Evidence.
	FirmwareLogFormat = "ccel"
)

// ErrNeedsLinux: the TDX guest interfaces are Linux kernel ABIs; on
// another system Open fails with it (the offline verifier needs none of them).
var ErrNeedsLinux = errors.New("tdx: the TDX guest device needs Linux")

// ErrNoQuote: neither configfs-tsm nor /dev/tdx_guest could produce a quote.
var ErrNoQuote = errors.New("tdx: no quote interface (configfs-tsm report or /dev/tdx_guest)")

// FS is the file access the backend needs, on kernel paths (see kernfs.FS).
type FS = kernfs.FS

// OSFS returns the operating system's files under root ("/" for the machine).
func OSFS(root string) FS { return kernfs.OS(root) }

// QuoteDevice is the /dev/tdx_guest interface (go-tdx-guest client.Device).
type QuoteDevice = client.Device

// Option configures Open.
type Option func(*Device)

// WithFS replaces the root-prefixed operating-system files (tests pass a
// tsmfake.Machine).
func WithFS(f FS) Option { return func(d *Device) { d.fs = f } }

// WithQuoteDevice replaces /dev/tdx_guest, e.g. with go-tdx-guest's mock.
func WithQuoteDevice(q QuoteDevice) Option { return func(d *Device) { d.qdev = q } }

// WithClock sets the time source of evidence.
func WithClock(now func() time.Time) Option { return func(d *Device) { d.now = now } }

// Device is a TDX guest's measurement registers. Use from one goroutine at a
// time; the kernel serialises extends.
type Device struct {
	root string
	fs   FS
	qdev QuoteDevice
	now  func() time.Time
}

// Register names and their CC MR index (0 = MRTD, 1..4 = RTMR0..3).
var registers = []struct {
	name, attr string
	index      int
}{
	{"mrtd", "mrtd:sha384", 0},
	{"rtmr0", "rtmr0:sha384", 1},
	{"rtmr1", "rtmr1:sha384", 2},
	{"rtmr2", "rtmr2:sha384", 3},
	{"rtmr3", "rtmr3:sha384", 4},
	{"mrconfigid", "mrconfigid", -1},
	{"mrowner", "mrowner", -1},
	{"mrownerconfig", "mrownerconfig", -1},
}

// Probe reports whether root looks like a TDX guest: the tdx_guest misc
// device in sysfs or its device node.
func Probe(root string) bool {
	f := OSFS(root)
	for _, p := range []string{ClassDir, DevicePath} {
		if _, err := f.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// Open opens the TDX device whose kernel files live under root ("" or "/"
// for this machine). It fails when root has no TDX guest interface.
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
	if !d.exists(ClassDir) && !d.exists(DevicePath) && !d.exists(MeasurementsDir) && d.qdev == nil {
		return nil, fmt.Errorf("tdx: no TDX guest under %s (no %s, no %s): %w", root, ClassDir, DevicePath, mr.ErrUnsupported)
	}
	return d, nil
}

// Kind returns "tdx".
func (d *Device) Kind() string { return "tdx" }

// Close releases nothing; it exists for mr.Device.
func (d *Device) Close() error { return nil }

func (d *Device) exists(p string) bool { _, err := d.fs.Stat(p); return err == nil }

func (d *Device) hasSysfs() bool     { return d.exists(MeasurementsDir) }
func (d *Device) hasRTMRCfs() bool   { return d.exists(RTMRConfigDir) }
func (d *Device) hasReportCfs() bool { return d.exists(ReportDir) }

// Registers lists mrtd, rtmr0..3 (sha384) and the three 48-byte config
// fields. The RTMRs are extendable when the kernel offers a way to extend.
func (d *Device) Registers(ctx context.Context) ([]mr.Register, error) {
	ext := d.hasSysfs() || d.hasRTMRCfs()
	out := make([]mr.Register, 0, len(registers))
	for _, r := range registers {
		f := mr.Readable | mr.Reported
		if strings.HasPrefix(r.name, "rtmr") && ext {
			f |= mr.Extendable
		}
		out = append(out, mr.Register{Name: r.name, Alg: mr.SHA384, Size: 48, Flags: f, Index: r.index})
	}
	return out, nil
}

func lookup(name string) (int, bool) {
	for i, r := range registers {
		if r.name == name {
			return i, true
		}
	}
	return 0, false
}

// Read returns the named registers (all when names is empty). With the
// sysfs ABI each value is read from its file; on older kernels the values
// come from a fresh quote with zero report data.
func (d *Device) Read(ctx context.Context, names ...string) ([]mr.Value, error) {
	if len(names) == 0 {
		for _, r := range registers {
			names = append(names, r.name)
		}
	}
	idx := make([]int, len(names))
	for i, n := range names {
		j, ok := lookup(n)
		if !ok {
			return nil, fmt.Errorf("tdx: %w %q (have mrtd, rtmr0..rtmr3, mrconfigid, mrowner, mrownerconfig)", mr.ErrUnknownRegister, n)
		}
		idx[i] = j
	}
	regs, _ := d.Registers(ctx)
	if d.hasSysfs() {
		out := make([]mr.Value, 0, len(names))
		for i, j := range idx {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			p := MeasurementsDir + "/" + registers[j].attr
			b, err := d.fs.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("tdx: read %s: %w", names[i], err)
			}
			if len(b) != 48 {
				return nil, fmt.Errorf("tdx: %s: %w: %d bytes, want 48", path.Join(d.root, p), mr.ErrMalformed, len(b))
			}
			out = append(out, mr.Value{Register: regs[j], Digest: mr.Digest{Alg: mr.SHA384, Bytes: b}})
		}
		return out, nil
	}
	q, err := d.quote(ctx, make([]byte, 64))
	if err != nil {
		return nil, fmt.Errorf("tdx: no %s (kernel older than 6.16?) and no quote: %w", MeasurementsDir, err)
	}
	all, err := cvmreport.TDXQuoteRegisters(q)
	if err != nil {
		return nil, err
	}
	out := make([]mr.Value, 0, len(names))
	for _, j := range idx {
		v := all[j]
		v.Register = regs[j]
		out = append(out, v)
	}
	return out, nil
}

// Extend extends rtmr0..3 with a 48-byte sha384 digest: one raw write to
// the register's sysfs file (the TDX module computes SHA-384(old || d)),
// or through configfs-tsm rtmrs where only that exists.
func (d *Device) Extend(ctx context.Context, name string, dg mr.Digest) error {
	j, ok := lookup(name)
	if !ok {
		return fmt.Errorf("tdx: %w %q", mr.ErrUnknownRegister, name)
	}
	if !strings.HasPrefix(name, "rtmr") {
		return fmt.Errorf("tdx: %w: %s is fixed at TD build time; only rtmr0..rtmr3 can be extended", mr.ErrNotExtendable, name)
	}
	if dg.Alg != mr.SHA384 || len(dg.Bytes) != 48 {
		return fmt.Errorf("tdx: %w: %s takes a sha384 digest of 48 bytes, got %v with %d bytes", mr.ErrDigestSize, name, dg.Alg, len(dg.Bytes))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	switch {
	case d.hasSysfs():
		p := MeasurementsDir + "/" + registers[j].attr
		if err := d.fs.WriteFile(p, dg.Bytes); err != nil {
			return fmt.Errorf("tdx: extend %s via %s: %w", name, path.Join(d.root, p), classify(err))
		}
		return nil
	case d.hasRTMRCfs():
		if err := rtmr.ExtendDigest(d.fs, registers[j].index-1, dg.Bytes); err != nil {
			return fmt.Errorf("tdx: extend %s via configfs %s: %w", name, RTMRConfigDir, classify(err))
		}
		return nil
	}
	return fmt.Errorf("tdx: %w: this kernel offers no RTMR extend interface (%s needs Linux 6.16+)", mr.ErrNotExtendable, MeasurementsDir)
}

// classify maps kernel errors onto ccmr's sentinels, keeping the original.
// go-configfs-tsm's rtmr package wraps with %v, which drops the errno, so
// its permission errors are recognised by their text.
func classify(err error) error {
	msg := err.Error()
	switch {
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM), errors.Is(err, os.ErrPermission),
		strings.HasSuffix(msg, syscall.EACCES.Error()), strings.HasSuffix(msg, syscall.EPERM.Error()):
		return fmt.Errorf("%w: %w", mr.ErrNotExtendable, err)
	case errors.Is(err, syscall.EINVAL):
		return fmt.Errorf("%w: kernel refused the write: %w", mr.ErrDigestSize, err)
	}
	return err
}

// ExtendData extends name with sha384(data).
func (d *Device) ExtendData(ctx context.Context, name string, data []byte) error {
	s := sha512.Sum384(data)
	return d.Extend(ctx, name, mr.Digest{Alg: mr.SHA384, Bytes: s[:]})
}

// Quote returns a raw TDX quote whose REPORTDATA is cvmreport.ReportData(nonce).
func (d *Device) Quote(ctx context.Context, nonce []byte) ([]byte, error) {
	rd := cvmreport.ReportData(nonce)
	return d.quote(ctx, rd[:])
}

func (d *Device) quote(ctx context.Context, rd []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var errs []error
	if d.hasReportCfs() {
		resp, err := report.Get(d.fs, &report.Request{InBlob: rd})
		if err == nil {
			if p := strings.TrimSpace(resp.Provider); p != Provider {
				return nil, fmt.Errorf("tdx: configfs-tsm provider is %q, want %q", p, Provider)
			}
			return resp.OutBlob, nil
		}
		errs = append(errs, fmt.Errorf("configfs-tsm %s: %w", path.Join(d.root, ReportDir), err))
	}
	dev := d.qdev
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
		q, err := client.GetRawQuote(dev, a)
		if err == nil {
			return q, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", DevicePath, err))
	}
	return nil, fmt.Errorf("%w: %w", ErrNoQuote, errors.Join(errs...))
}

// CCEL returns the CC event log ACPI table and the log area, as the kernel
// exposes them; a missing file gives nil without error.
func (d *Device) CCEL(ctx context.Context) (table, data []byte, err error) {
	read := func(p string) ([]byte, error) {
		b, err := d.fs.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("tdx: %s: %w", path.Join(d.root, p), err)
		}
		return b, nil
	}
	if table, err = read(CCELTablePath); err != nil {
		return nil, nil, err
	}
	data, err = read(CCELDataPath)
	return table, data, err
}

// Attest reads every register, then asks for a quote over cvmreport.ReportData(nonce),
// and returns the quote with the CCEL and the values read just before.
// Evidence.FirmwareLog holds the CCEL log area (data/CCEL); the 56-byte ACPI
// table, which mr.Evidence has no field for, is available from CCEL.
func (d *Device) Attest(ctx context.Context, nonce []byte) (*mr.Evidence, error) {
	vals, err := d.Read(ctx)
	if err != nil {
		return nil, err
	}
	q, err := d.Quote(ctx, nonce)
	if err != nil {
		return nil, err
	}
	_, data, err := d.CCEL(ctx)
	if err != nil {
		return nil, err
	}
	ev := &mr.Evidence{
		Platform:  mr.PlatformTDX,
		Nonce:     slices.Clone(nonce),
		Time:      d.now().UTC(),
		Report:    q,
		Registers: vals,
	}
	if data != nil {
		ev.FirmwareLog = data
		ev.FirmwareLogFormat = FirmwareLogFormat
	}
	return ev, nil
}

var (
	_ mr.Device   = (*Device)(nil)
	_ mr.Attester = (*Device)(nil)
)
