// Package tsmfake emulates, under a temporary root folder, the Linux kernel
// interfaces that ccmr's TDX and SEV-SNP backends use: the TSM
// measurement-register sysfs ABI of Linux 6.16+
// (/sys/class/misc/tdx_guest/measurements), the configfs-tsm report
// subsystem (/sys/kernel/config/tsm/report), the configfs RTMR interface that
// go-configfs-tsm's rtmr package drives, the CCEL ACPI table and log, and the
// device nodes whose presence auto-detection looks for.
//
// Plain files cannot enforce sysfs semantics (a write of 47 bytes to a
// regular file simply succeeds), so the backends reach the kernel through a
// small file-system interface (configfsi.Client plus Stat) and a Machine
// implements it with the kernel's rules, while also keeping real files and
// directories under Root so that code which only looks (Probe, os.Stat, a
// plain read of a register file) sees what it would see on a real guest.
//
// The rules emulated, from the kernel sources:
//
//   - drivers/virt/coco/guest/tsm-mr.c, tm_digest_write: a write must start
//     at offset 0 and have exactly the attribute's size, else -EINVAL; the
//     RTMR then becomes SHA-384(old || data) (TDG.MR.RTMR.EXTEND).
//   - fs/sysfs/file.c, sysfs_kf_bin_write: a write at or past the size
//     fails with -EFBIG, a longer one is clamped to the size. So one write(2)
//     of 49 bytes extends with the first 48 and returns 48; Go's write loop
//     then writes the last byte at offset 48 and gets EFBIG.
//   - fs/kernfs/file.c, kernfs_fop_open: opening for writing an attribute
//     that has no write permission fails with -EACCES, even for root.
//   - reads return the raw value (no newline, no hex).
//   - configfs-tsm report: inblob takes at most 64 bytes (TSM_INBLOB_MAX);
//     the tdx_guest and sev_guest providers refuse to generate unless it has
//     exactly 64 (-EINVAL on reading outblob); "generation" counts writes.
//
// What is not real: quotes and reports are not signed by hardware. A TDX
// quote is the real v4 quote published in go-tdx-guest's testdata with its
// TD-report fields replaced by the emulated values (so its signature no
// longer verifies); an SNP report is built with go-sev-guest's
// testing.CreateRawReport plus the emulated measurement and host data (zero
// signature). Device nodes are empty regular files, not character devices.
package tsmfake

import (
	"bytes"
	"crypto/sha512"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/fakertmr"
	"github.com/google/go-configfs-tsm/configfs/faketsm"
	sevabi "github.com/google/go-sev-guest/abi"
	sevtest "github.com/google/go-sev-guest/testing"
	tdxabi "github.com/google/go-tdx-guest/abi"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"
	tdxdata "github.com/google/go-tdx-guest/testing/testdata"
)

// Kernel paths (absolute, without the emulation root).
const (
	// MeasurementsDir is where the TDX guest driver exposes its MRs
	// (the class link; the real directory is under /sys/devices/virtual).
	MeasurementsDir = "/sys/class/misc/tdx_guest/measurements"
	// TDXDevicesDir is the real sysfs directory of the tdx_guest device.
	TDXDevicesDir = "/sys/devices/virtual/misc/tdx_guest"
	// TDXDevice is the TDX guest device node.
	TDXDevice = "/dev/tdx_guest"
	// SNPDevice is the SEV guest device node.
	SNPDevice = "/dev/sev-guest"
	// SNPDevicesDir is the real sysfs directory of the sev-guest device.
	SNPDevicesDir = "/sys/devices/virtual/misc/sev-guest"
	// ReportDir is the configfs-tsm report subsystem.
	ReportDir = configfsi.TsmPrefix + "/report"
	// RTMRDir is the configfs-tsm rtmrs subsystem go-configfs-tsm drives.
	RTMRDir = configfsi.TsmPrefix + "/rtmrs"
	// CCELTable is the CC event log ACPI table.
	CCELTable = "/sys/firmware/acpi/tables/CCEL"
	// CCELData is the CC event log itself.
	CCELData = "/sys/firmware/acpi/tables/data/CCEL"
)

// MRSize is the size of every TDX measurement register.
const MRSize = 48

// TDXOptions configure an emulated TDX guest. Nil values are zeros.
type TDXOptions struct {
	MRTD, MRConfigID, MROwner, MROwnerConfig []byte
	// RTMR holds initial RTMR values (nil: zero).
	RTMR [4][]byte
	// NoSysfs emulates a kernel older than 6.16 (no measurements folder).
	NoSysfs bool
	// NoConfigfs leaves out the configfs-tsm report subsystem.
	NoConfigfs bool
	// ConfigfsRTMR adds the configfs rtmrs subsystem (go-configfs-tsm's
	// fakertmr, kept coherent with the sysfs registers).
	ConfigfsRTMR bool
	// CCELTable and CCELData are written to the ACPI table files when set.
	CCELTable, CCELData []byte
}

// SNPOptions configure an emulated SEV-SNP guest.
type SNPOptions struct {
	Measurement []byte // 48 bytes
	HostData    []byte // 32 bytes
	// AuxBlob is the certificate table (GUID table) the auxblob returns;
	// nil means a table with go-sev-guest's test-only VCEK/ASK/ARK.
	AuxBlob []byte
	// NoConfigfs leaves out the configfs-tsm report subsystem.
	NoConfigfs bool
}

// Machine is one emulated guest. It implements configfsi.Client and Stat
// over kernel paths ("/sys/...", "/dev/..."), resolved under Root.
// It is safe for concurrent use.
type Machine struct {
	// Root is the folder the emulated paths live under.
	Root string
	// Platform is "tdx" or "snp".
	Platform string

	mu       sync.Mutex
	mrs      map[string]*mrFile // by attribute file name
	snp      SNPOptions
	cfs      *faketsm.Client
	reports  int // outblobs generated
	noConfig bool
}

type mrFile struct {
	value    []byte
	writable bool
	rtmr     int // RTMR index, -1 for others
}

// NewTDX builds an emulated TDX guest under root (which must exist).
func NewTDX(root string, o TDXOptions) (*Machine, error) {
	m := &Machine{Root: root, Platform: "tdx", mrs: map[string]*mrFile{}, noConfig: o.NoConfigfs}
	val := func(b []byte) ([]byte, error) {
		if b == nil {
			return make([]byte, MRSize), nil
		}
		if len(b) != MRSize {
			return nil, fmt.Errorf("tsmfake: register value must be %d bytes, got %d", MRSize, len(b))
		}
		return bytes.Clone(b), nil
	}
	for _, f := range []struct {
		name string
		v    []byte
		rtmr int
	}{{"mrconfigid", o.MRConfigID, -1}, {"mrowner", o.MROwner, -1}, {"mrownerconfig", o.MROwnerConfig, -1},
		{"mrtd:sha384", o.MRTD, -1}, {"rtmr0:sha384", o.RTMR[0], 0}, {"rtmr1:sha384", o.RTMR[1], 1},
		{"rtmr2:sha384", o.RTMR[2], 2}, {"rtmr3:sha384", o.RTMR[3], 3}} {
		v, err := val(f.v)
		if err != nil {
			return nil, err
		}
		m.mrs[f.name] = &mrFile{value: v, writable: f.rtmr >= 0, rtmr: f.rtmr}
	}
	if err := m.mkdir(TDXDevicesDir); err != nil {
		return nil, err
	}
	if err := m.symlink("../../devices/virtual/misc/tdx_guest", "/sys/class/misc/tdx_guest"); err != nil {
		return nil, err
	}
	if !o.NoSysfs {
		if err := m.mkdir(TDXDevicesDir + "/measurements"); err != nil {
			return nil, err
		}
		for name, f := range m.mrs {
			mode := os.FileMode(0o444)
			if f.writable {
				mode = 0o644
			}
			if err := os.WriteFile(m.host(MeasurementsDir+"/"+name), f.value, mode); err != nil {
				return nil, err
			}
		}
	}
	if err := m.touch(TDXDevice); err != nil {
		return nil, err
	}
	if o.CCELTable != nil {
		if err := m.write(CCELTable, o.CCELTable, 0o400); err != nil {
			return nil, err
		}
	}
	if o.CCELData != nil {
		if err := m.write(CCELData, o.CCELData, 0o400); err != nil {
			return nil, err
		}
	}
	m.cfs = &faketsm.Client{Subsystems: map[string]configfsi.Client{}}
	if !o.NoConfigfs {
		if err := m.mkdir(ReportDir); err != nil {
			return nil, err
		}
		m.cfs.Subsystems["report"] = m.reportSubsystem("tdx_guest\n", m.tdxOutblob, nil)
	}
	if o.ConfigfsRTMR {
		if err := m.mkdir(RTMRDir); err != nil {
			return nil, err
		}
		m.cfs.Subsystems["rtmrs"] = m.rtmrSubsystem()
	}
	return m, nil
}

// NewSNP builds an emulated SEV-SNP guest under root (which must exist).
func NewSNP(root string, o SNPOptions) (*Machine, error) {
	if o.Measurement == nil {
		o.Measurement = make([]byte, sevabi.MeasurementSize)
	}
	if o.HostData == nil {
		o.HostData = make([]byte, sevabi.HostDataSize)
	}
	if len(o.Measurement) != sevabi.MeasurementSize || len(o.HostData) != sevabi.HostDataSize {
		return nil, fmt.Errorf("tsmfake: measurement must be %d bytes and host data %d", sevabi.MeasurementSize, sevabi.HostDataSize)
	}
	if o.AuxBlob == nil {
		s, err := sevtest.DefaultTestOnlyCertChain("Milan", time.Now())
		if err != nil {
			return nil, err
		}
		if o.AuxBlob, err = s.CertTableBytes(); err != nil {
			return nil, err
		}
	}
	m := &Machine{Root: root, Platform: "snp", snp: o, noConfig: o.NoConfigfs}
	if err := m.mkdir(SNPDevicesDir); err != nil {
		return nil, err
	}
	if err := m.symlink("../../devices/virtual/misc/sev-guest", "/sys/class/misc/sev-guest"); err != nil {
		return nil, err
	}
	if err := m.touch(SNPDevice); err != nil {
		return nil, err
	}
	m.cfs = &faketsm.Client{Subsystems: map[string]configfsi.Client{}}
	if !o.NoConfigfs {
		if err := m.mkdir(ReportDir); err != nil {
			return nil, err
		}
		m.cfs.Subsystems["report"] = m.reportSubsystem("sev_guest\n", m.snpOutblob, func() []byte { return bytes.Clone(m.snp.AuxBlob) })
	}
	return m, nil
}

// Value returns the current value of a TDX register by attribute file name
// ("rtmr2:sha384", "mrconfigid").
func (m *Machine) Value(attr string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	if f, ok := m.mrs[attr]; ok {
		return bytes.Clone(f.value)
	}
	return nil
}

// Reports returns how many reports (outblobs) the emulation generated.
func (m *Machine) Reports() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reports
}

func (m *Machine) host(p string) string { return filepath.Join(m.Root, filepath.FromSlash(p)) }

func (m *Machine) mkdir(p string) error { return os.MkdirAll(m.host(p), 0o755) }

func (m *Machine) touch(p string) error { return m.write(p, nil, 0o600) }

func (m *Machine) write(p string, b []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(m.host(p)), 0o755); err != nil {
		return err
	}
	return os.WriteFile(m.host(p), b, mode)
}

func (m *Machine) symlink(target, p string) error {
	if err := os.MkdirAll(filepath.Dir(m.host(p)), 0o755); err != nil {
		return err
	}
	return os.Symlink(target, m.host(p))
}

// mrAttr returns the attribute name when p is a measurement register file.
func (m *Machine) mrAttr(p string) (string, bool) {
	p = path.Clean(p)
	for _, dir := range []string{MeasurementsDir, TDXDevicesDir + "/measurements"} {
		if path.Dir(p) == dir {
			return path.Base(p), true
		}
	}
	return "", false
}

func isConfigfs(p string) bool {
	p = path.Clean(p)
	return p == configfsi.TsmPrefix || strings.HasPrefix(p, configfsi.TsmPrefix+"/")
}

func pathErr(op, p string, err error) error { return &fs.PathError{Op: op, Path: p, Err: err} }

// ReadFile reads a kernel path. A register file returns its raw value.
func (m *Machine) ReadFile(name string) ([]byte, error) {
	if attr, ok := m.mrAttr(name); ok {
		if _, err := os.Stat(m.host(name)); err != nil {
			return nil, err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		f, ok := m.mrs[attr]
		if !ok {
			return nil, pathErr("open", name, syscall.ENOENT)
		}
		return bytes.Clone(f.value), nil
	}
	if isConfigfs(name) {
		return m.cfs.ReadFile(name)
	}
	return os.ReadFile(m.host(name))
}

// WriteFile opens a kernel path for writing and issues write(2) calls until
// contents is written or one fails, as os.WriteFile does (without creating
// or truncating). Register files follow the kernel's rules, see the package
// documentation.
func (m *Machine) WriteFile(name string, contents []byte) error {
	if attr, ok := m.mrAttr(name); ok {
		if _, err := os.Stat(m.host(name)); err != nil {
			return err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		f, ok := m.mrs[attr]
		if !ok {
			return pathErr("open", name, syscall.ENOENT)
		}
		if !f.writable {
			return pathErr("open", name, syscall.EACCES)
		}
		off := 0
		for off < len(contents) {
			n, err := m.sysfsBinWrite(f, name, contents[off:], off)
			if err != nil {
				return pathErr("write", name, err)
			}
			if n == 0 {
				return pathErr("write", name, syscall.EIO) // io.ErrShortWrite in os
			}
			off += n
		}
		return nil
	}
	if isConfigfs(name) {
		return m.cfs.WriteFile(name, contents)
	}
	// Anything else behaves like a plain file that must already exist.
	f, err := os.OpenFile(m.host(name), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(contents)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// sysfsBinWrite is one write(2) at offset off: sysfs_kf_bin_write followed
// by tm_digest_write. Called with m.mu held.
func (m *Machine) sysfsBinWrite(f *mrFile, name string, b []byte, off int) (int, error) {
	if off >= MRSize {
		return 0, syscall.EFBIG
	}
	count := min(len(b), MRSize-off)
	if count == 0 {
		return 0, nil
	}
	if off != 0 || count != MRSize {
		return 0, syscall.EINVAL
	}
	h := sha512.New384()
	h.Write(f.value)
	h.Write(b[:count])
	f.value = h.Sum(nil)
	// Mirror the value into the on-disk file for plain readers.
	if err := os.WriteFile(m.host(name), f.value, 0o644); err != nil {
		return 0, err
	}
	return count, nil
}

// Stat returns the file info of a kernel path under Root.
func (m *Machine) Stat(name string) (fs.FileInfo, error) { return os.Stat(m.host(name)) }

// MkdirTemp creates a configfs entry (report or rtmrs subsystem).
func (m *Machine) MkdirTemp(dir, pattern string) (string, error) {
	if !isConfigfs(dir) {
		return "", pathErr("mkdir", dir, syscall.EPERM)
	}
	return m.cfs.MkdirTemp(dir, pattern)
}

// ReadDir lists a configfs folder (rtmrs) or a folder under Root.
func (m *Machine) ReadDir(dir string) ([]os.DirEntry, error) {
	if isConfigfs(dir) && path.Clean(dir) != configfsi.TsmPrefix {
		return m.cfs.ReadDir(dir)
	}
	return os.ReadDir(m.host(dir))
}

// RemoveAll removes a configfs entry.
func (m *Machine) RemoveAll(name string) error {
	if !isConfigfs(name) {
		return pathErr("rmdir", name, syscall.EPERM)
	}
	return m.cfs.RemoveAll(name)
}

// reportSubsystem builds a go-configfs-tsm faketsm report subsystem (which
// keeps the generation counter) whose outblob is produced by gen.
func (m *Machine) reportSubsystem(provider string, gen func(inblob []byte) ([]byte, error), aux func() []byte) *faketsm.ReportSubsystem {
	r := faketsm.Report611(0)
	check := r.CheckInAttr
	r.CheckInAttr = func(e *faketsm.ReportEntry, attr string, contents []byte) error {
		if attr == "inblob" && len(contents) > 64 {
			return syscall.EINVAL
		}
		return check(e, attr, contents)
	}
	r.ReadAttr = func(e *faketsm.ReportEntry, attr string) ([]byte, error) {
		switch attr {
		case "provider":
			return []byte(provider), nil
		case "auxblob":
			if aux == nil {
				return nil, nil
			}
			return aux(), nil
		case "outblob":
			in := e.InAttrs["inblob"].Value
			if len(in) != 64 {
				return nil, syscall.EINVAL
			}
			return gen(in)
		case "privlevel_floor":
			return []byte("0\n"), nil
		}
		return nil, os.ErrNotExist
	}
	return r
}

// tdxOutblob returns a v4 quote carrying the current registers and inblob
// as REPORTDATA.
func (m *Machine) tdxOutblob(inblob []byte) ([]byte, error) {
	q, err := tdxabi.QuoteToProto(tdxdata.RawQuote)
	if err != nil {
		return nil, err
	}
	v4, ok := q.(*tdxpb.QuoteV4)
	if !ok {
		return nil, fmt.Errorf("tsmfake: template quote is %T", q)
	}
	m.mu.Lock()
	b := v4.TdQuoteBody
	b.MrTd = bytes.Clone(m.mrs["mrtd:sha384"].value)
	b.MrConfigId = bytes.Clone(m.mrs["mrconfigid"].value)
	b.MrOwner = bytes.Clone(m.mrs["mrowner"].value)
	b.MrOwnerConfig = bytes.Clone(m.mrs["mrownerconfig"].value)
	b.Rtmrs = [][]byte{}
	for i := range 4 {
		b.Rtmrs = append(b.Rtmrs, bytes.Clone(m.mrs["rtmr"+strconv.Itoa(i)+":sha384"].value))
	}
	m.reports++
	m.mu.Unlock()
	b.ReportData = bytes.Clone(inblob)
	return tdxabi.QuoteToAbiBytes(v4)
}

// snpOutblob returns an unsigned SNP report with the emulated fields.
func (m *Machine) snpOutblob(inblob []byte) ([]byte, error) {
	raw := sevtest.CreateRawReport(&sevtest.TestReportOptions{ReportData: inblob})
	r, err := sevabi.ReportToProto(raw[:])
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	r.Measurement = bytes.Clone(m.snp.Measurement)
	r.HostData = bytes.Clone(m.snp.HostData)
	m.reports++
	m.mu.Unlock()
	return sevabi.ReportToAbiBytes(r)
}

// rtmrSubsystem wires go-configfs-tsm's fakertmr to the emulated RTMRs:
// assigning an index loads the register's current value, and an extend
// through configfs updates it (and the sysfs file).
func (m *Machine) rtmrSubsystem() *fakertmr.RtmrSubsystem {
	s := fakertmr.CreateRtmrSubsystem(m.host(configfsi.TsmPrefix + "/.fakertmr"))
	write, read := s.WriteAttr, s.ReadAttr
	s.ReadAttr = func(entry, attr string) ([]byte, error) {
		if attr != "digest" {
			return read(entry, attr)
		}
		ib, err := os.ReadFile(filepath.Join(entry, "index"))
		if err != nil {
			return nil, err
		}
		i, err := strconv.Atoi(strings.TrimSpace(string(ib)))
		if err != nil || i < 0 || i > 3 {
			return read(entry, attr) // index not assigned yet
		}
		return m.Value("rtmr" + strconv.Itoa(i) + ":sha384"), nil
	}
	s.WriteAttr = func(entry, attr string, contents []byte, idx map[int]bool) error {
		if err := write(entry, attr, contents, idx); err != nil {
			return err
		}
		ib, err := os.ReadFile(filepath.Join(entry, "index"))
		if err != nil {
			return err
		}
		i, err := strconv.Atoi(strings.TrimSpace(string(ib)))
		if err != nil {
			return err
		}
		name := "rtmr" + strconv.Itoa(i) + ":sha384"
		m.mu.Lock()
		defer m.mu.Unlock()
		f := m.mrs[name]
		switch attr {
		case "index":
			return os.WriteFile(filepath.Join(entry, "digest"), f.value, 0o666)
		case "digest":
			// fakertmr computed sha384(old || d) from the value we loaded.
			v, err := os.ReadFile(filepath.Join(entry, "digest"))
			if err != nil {
				return err
			}
			f.value = v
			if _, err := os.Stat(m.host(MeasurementsDir + "/" + name)); err == nil {
				return os.WriteFile(m.host(MeasurementsDir+"/"+name), v, 0o644)
			}
		}
		return nil
	}
	return s
}
