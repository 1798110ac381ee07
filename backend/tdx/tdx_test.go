package tdx_test

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/fakertmr"
	"github.com/google/go-configfs-tsm/configfs/faketsm"
	"github.com/google/go-configfs-tsm/rtmr"
	"github.com/google/go-eventlog/ccel"
	"github.com/google/go-eventlog/extract"
	"github.com/google/go-eventlog/register"
	tdxabi "github.com/google/go-tdx-guest/abi"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"
	tdxtest "github.com/google/go-tdx-guest/testing"

	"github.com/ccmr-dev/ccmr/backend/tdx"
	"github.com/ccmr-dev/ccmr/internal/modcache"
	"github.com/ccmr-dev/ccmr/internal/tsmfake"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/cvmreport"
)

// inModCache are the real artifacts these tests read from the dependency
// that ships them, in place in the module cache (testdata/README.md says
// what each is); testdata/ holds only the expected values.
var inModCache = map[string][2]string{
	"tdx_prod_quote_SPR_E4.dat":        {"github.com/google/go-tdx-guest", "testing/testdata/tdx_prod_quote_SPR_E4.dat"},
	"ccel-cos-113-intel-tdx.data.bin":  {"github.com/google/go-eventlog", "testdata/eventlogs/ccel/cos-113-intel-tdx.bin"},
	"ccel-cos-113-intel-tdx.table.bin": {"github.com/google/go-eventlog", "testdata/eventlogs/ccel/cos-113-intel-tdx.table.bin"},
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

func expected(t testing.TB, name string) map[string]string {
	t.Helper()
	var raw map[string]any
	if err := json.Unmarshal(readTestdata(t, name), &raw); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range raw {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fill(b byte) []byte { return bytes.Repeat([]byte{b}, 48) }

// newMachine emulates a TDX guest with the real CCEL and distinct values.
func newMachine(t testing.TB, o tsmfake.TDXOptions) *tsmfake.Machine {
	t.Helper()
	o.MRTD, o.MRConfigID = fill(0xd0), fill(0xc0)
	o.RTMR = [4][]byte{fill(1), fill(2), fill(3), nil}
	o.CCELTable = readTestdata(t, "ccel-cos-113-intel-tdx.table.bin")
	o.CCELData = readTestdata(t, "ccel-cos-113-intel-tdx.data.bin")
	m, err := tsmfake.NewTDX(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func open(t testing.TB, m *tsmfake.Machine) *tdx.Device {
	t.Helper()
	d, err := tdx.Open(context.Background(), m.Root, tdx.WithFS(m))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func value(t testing.TB, d *tdx.Device, name string) []byte {
	t.Helper()
	v, err := d.Read(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return v[0].Digest.Bytes
}

func TestExtendRTMR2(t *testing.T) {
	ctx := context.Background()
	m := newMachine(t, tsmfake.TDXOptions{})
	d := open(t, m)
	old := value(t, d, "rtmr2")
	if !bytes.Equal(old, fill(3)) {
		t.Fatalf("rtmr2 = %x, want the emulated initial value", old)
	}
	dg := sha512.Sum384([]byte("event"))
	if err := d.Extend(ctx, "rtmr2", mr.Digest{Alg: mr.SHA384, Bytes: dg[:]}); err != nil {
		t.Fatal(err)
	}
	want := sha512.Sum384(append(append([]byte{}, old...), dg[:]...))
	if got := value(t, d, "rtmr2"); !bytes.Equal(got, want[:]) {
		t.Fatalf("rtmr2 after extend = %x, want sha384(old||d) = %x", got, want)
	}
	// The value a plain reader of the sysfs file sees is the same raw digest.
	raw, err := os.ReadFile(filepath.Join(m.Root, "sys/class/misc/tdx_guest/measurements/rtmr2:sha384"))
	if err != nil || !bytes.Equal(raw, want[:]) {
		t.Fatalf("sysfs file holds %x (%v)", raw, err)
	}
	// ExtendData hashes first.
	if err := d.ExtendData(ctx, "rtmr2", []byte("data")); err != nil {
		t.Fatal(err)
	}
	h := sha512.Sum384([]byte("data"))
	want2 := sha512.Sum384(append(want[:], h[:]...))
	if got := value(t, d, "rtmr2"); !bytes.Equal(got, want2[:]) {
		t.Fatalf("after ExtendData: %x, want %x", got, want2)
	}
}

func snapshot(t testing.TB, d *tdx.Device) []mr.Value {
	t.Helper()
	v, err := d.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func sameValues(a, b []mr.Value) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Digest.Equal(b[i].Digest) {
			return false
		}
	}
	return true
}

func TestRefusedWritesChangeNothing(t *testing.T) {
	ctx := context.Background()
	m := newMachine(t, tsmfake.TDXOptions{})
	d := open(t, m)
	before := snapshot(t, d)
	d48 := bytes.Repeat([]byte{7}, 48)

	err := d.Extend(ctx, "mrtd", mr.Digest{Alg: mr.SHA384, Bytes: d48})
	if !errors.Is(err, mr.ErrNotExtendable) || !strings.Contains(err.Error(), "mrtd") {
		t.Errorf("extend mrtd: %v, want ErrNotExtendable naming mrtd", err)
	}
	err = d.Extend(ctx, "rtmr2", mr.Digest{Alg: mr.SHA384, Bytes: d48[:47]})
	if !errors.Is(err, mr.ErrDigestSize) || !strings.Contains(err.Error(), "47") {
		t.Errorf("extend with 47 bytes: %v, want ErrDigestSize naming 47", err)
	}
	if err := d.Extend(ctx, "rtmr9", mr.Digest{Alg: mr.SHA384, Bytes: d48}); !errors.Is(err, mr.ErrUnknownRegister) {
		t.Errorf("extend rtmr9: %v", err)
	}
	if !sameValues(before, snapshot(t, d)) {
		t.Fatal("a refused extend changed a register")
	}

	// The same refusals from the emulated kernel itself, below the backend.
	p := tsmfake.MeasurementsDir + "/"
	if err := m.WriteFile(p+"rtmr2:sha384", d48[:47]); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("kernel write of 47 bytes: %v, want EINVAL", err)
	}
	if err := m.WriteFile(p+"mrtd:sha384", d48); !errors.Is(err, syscall.EACCES) {
		t.Errorf("kernel write to mrtd: %v, want EACCES", err)
	}
	if err := m.WriteFile(p+"mrconfigid", d48); !errors.Is(err, syscall.EACCES) {
		t.Errorf("kernel write to mrconfigid: %v, want EACCES", err)
	}
	if !sameValues(before, snapshot(t, d)) {
		t.Fatal("a refused kernel write changed a register")
	}
	// A 49-byte write: sysfs clamps the first write(2) to 48 bytes (which
	// extends), the write loop's second write(2) at offset 48 gets EFBIG.
	old := m.Value("rtmr3:sha384")
	long := append(bytes.Clone(d48), 9)
	if err := m.WriteFile(p+"rtmr3:sha384", long); !errors.Is(err, syscall.EFBIG) {
		t.Errorf("kernel write of 49 bytes: %v, want EFBIG", err)
	}
	want := sha512.Sum384(append(old, d48...))
	if !bytes.Equal(m.Value("rtmr3:sha384"), want[:]) {
		t.Error("49-byte write did not extend with its first 48 bytes")
	}
}

func TestAttestQuoteMatchesRegisters(t *testing.T) {
	ctx := context.Background()
	m := newMachine(t, tsmfake.TDXOptions{})
	d := open(t, m)
	if err := d.ExtendData(ctx, "rtmr3", []byte("app")); err != nil {
		t.Fatal(err)
	}
	nonce := []byte("fresh nonce")
	ev, err := d.Attest(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Platform != mr.PlatformTDX || !bytes.Equal(ev.Nonce, nonce) {
		t.Fatalf("platform %q nonce %q", ev.Platform, ev.Nonce)
	}
	if !bytes.Equal(ev.FirmwareLog, readTestdata(t, "ccel-cos-113-intel-tdx.data.bin")) || ev.FirmwareLogFormat != "ccel" {
		t.Fatalf("firmware log: %d bytes, format %q", len(ev.FirmwareLog), ev.FirmwareLogFormat)
	}
	q, err := tdxabi.QuoteToProto(ev.Report)
	if err != nil {
		t.Fatal(err)
	}
	body := q.(*tdxpb.QuoteV4).GetTdQuoteBody()
	byName := map[string][]byte{}
	for _, v := range ev.Registers {
		byName[v.Register.Name] = v.Digest.Bytes
	}
	for i := range 4 {
		name := "rtmr" + string(rune('0'+i))
		if !bytes.Equal(body.Rtmrs[i], byName[name]) {
			t.Errorf("quote RTMR%d = %x, registers read before = %x", i, body.Rtmrs[i], byName[name])
		}
		// And both equal the emulated hardware, independently of the backend.
		if !bytes.Equal(body.Rtmrs[i], m.Value(name+":sha384")) {
			t.Errorf("quote RTMR%d differs from the emulated register", i)
		}
	}
	if !bytes.Equal(body.MrTd, byName["mrtd"]) || !bytes.Equal(body.MrConfigId, byName["mrconfigid"]) {
		t.Error("quote MRTD/MRCONFIGID differ from registers")
	}
	want := make([]byte, 64)
	copy(want, nonce)
	if !bytes.Equal(body.ReportData, want) {
		t.Errorf("REPORTDATA = %x, want zero-padded nonce", body.ReportData)
	}
	table, data, err := d.CCEL(ctx)
	if err != nil || len(table) != 56 || len(data) != 262144 {
		t.Fatalf("CCEL: table %d data %d err %v", len(table), len(data), err)
	}
}

func TestReportData(t *testing.T) {
	short := cvmreport.ReportData([]byte{1, 2, 3})
	if short[0] != 1 || short[2] != 3 || !bytes.Equal(short[3:], make([]byte, 61)) {
		t.Errorf("short nonce: %x", short)
	}
	n64 := bytes.Repeat([]byte{5}, 64)
	if r := cvmreport.ReportData(n64); !bytes.Equal(r[:], n64) {
		t.Error("64-byte nonce must be used as is")
	}
	long := bytes.Repeat([]byte{5}, 65)
	if r := cvmreport.ReportData(long); r != sha512.Sum512(long) {
		t.Error("65-byte nonce must be replaced by its SHA-512")
	}
}

func TestProbe(t *testing.T) {
	tdxM := newMachine(t, tsmfake.TDXOptions{})
	snpM, err := tsmfake.NewSNP(t.TempDir(), tsmfake.SNPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !tdx.Probe(tdxM.Root) {
		t.Error("Probe misses the TDX emulation")
	}
	if tdx.Probe(snpM.Root) {
		t.Error("Probe claims TDX on an SNP emulation")
	}
	if tdx.Probe(t.TempDir()) {
		t.Error("Probe claims TDX on an empty root")
	}
	if _, err := tdx.Open(context.Background(), t.TempDir()); !errors.Is(err, mr.ErrUnsupported) {
		t.Errorf("Open on empty root: %v", err)
	}
}

// A kernel before 6.16: no sysfs registers. Values come from a quote and
// nothing is extendable.
func TestOldKernelReadsFromQuote(t *testing.T) {
	ctx := context.Background()
	m := newMachine(t, tsmfake.TDXOptions{NoSysfs: true})
	d := open(t, m)
	v, err := d.Read(ctx, "rtmr1", "mrtd")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(v[0].Digest.Bytes, fill(2)) || !bytes.Equal(v[1].Digest.Bytes, fill(0xd0)) {
		t.Fatalf("values from quote: %v", v)
	}
	err = d.Extend(ctx, "rtmr2", mr.Digest{Alg: mr.SHA384, Bytes: fill(1)})
	if !errors.Is(err, mr.ErrNotExtendable) || !strings.Contains(err.Error(), "6.16") {
		t.Fatalf("extend without interface: %v", err)
	}
	regs, _ := d.Registers(ctx)
	for _, r := range regs {
		if r.Flags&mr.Extendable != 0 {
			t.Errorf("%s claims extendable", r.Name)
		}
	}
}

// The configfs RTMR interface, through go-configfs-tsm's fakertmr wired
// into the emulation (no sysfs registers).
func TestConfigfsRTMR(t *testing.T) {
	ctx := context.Background()
	m := newMachine(t, tsmfake.TDXOptions{NoSysfs: true, ConfigfsRTMR: true})
	d := open(t, m)
	old := m.Value("rtmr2:sha384")
	dg := sha512.Sum384([]byte("x"))
	if err := d.Extend(ctx, "rtmr2", mr.Digest{Alg: mr.SHA384, Bytes: dg[:]}); err != nil {
		t.Fatal(err)
	}
	want := sha512.Sum384(append(old, dg[:]...))
	if !bytes.Equal(m.Value("rtmr2:sha384"), want[:]) {
		t.Fatal("configfs extend did not give sha384(old||d)")
	}
	// go-configfs-tsm reads the same value back.
	resp, err := rtmr.GetDigest(m, 2)
	if err != nil || !bytes.Equal(resp.Digest, want[:]) {
		t.Fatalf("rtmr.GetDigest = %x, %v", resp.Digest, err)
	}
	// And the quote carries it.
	v, err := d.Read(ctx, "rtmr2")
	if err != nil || !bytes.Equal(v[0].Digest.Bytes, want[:]) {
		t.Fatalf("read rtmr2 = %v, %v", v, err)
	}
}

// go-configfs-tsm's own fakertmr, unmodified, as the configfs client.
func TestUpstreamFakeRTMR(t *testing.T) {
	root := t.TempDir()
	sub := fakertmr.CreateRtmrSubsystem(t.TempDir())
	c := &faketsm.Client{Subsystems: map[string]configfsi.Client{"rtmrs": sub}}
	fsys := overlay{FS: tdx.OSFS(root), cfs: c}
	if err := os.MkdirAll(filepath.Join(root, "sys/kernel/config/tsm/rtmrs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "dev/tdx_guest"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := tdx.Open(context.Background(), root, tdx.WithFS(fsys))
	if err != nil {
		t.Fatal(err)
	}
	dg := sha512.Sum384([]byte("y"))
	if err := d.Extend(context.Background(), "rtmr3", mr.Digest{Alg: mr.SHA384, Bytes: dg[:]}); err != nil {
		t.Fatal(err)
	}
	resp, err := rtmr.GetDigest(c, 3)
	want := sha512.Sum384(append(make([]byte, 48), dg[:]...))
	if err != nil || !bytes.Equal(resp.Digest, want[:]) {
		t.Fatalf("fakertmr digest %x (%v), want %x", resp.Digest, err, want)
	}
	// fakertmr refuses RTMR0/1 with a permission error: ErrNotExtendable.
	if err := d.Extend(context.Background(), "rtmr0", mr.Digest{Alg: mr.SHA384, Bytes: dg[:]}); !errors.Is(err, mr.ErrNotExtendable) {
		t.Errorf("rtmr0 via fakertmr: %v", err)
	}
}

type overlay struct {
	tdx.FS
	cfs configfsi.Client
}

func (o overlay) MkdirTemp(dir, p string) (string, error) { return o.cfs.MkdirTemp(dir, p) }
func (o overlay) ReadFile(n string) ([]byte, error)       { return o.cfs.ReadFile(n) }
func (o overlay) WriteFile(n string, b []byte) error      { return o.cfs.WriteFile(n, b) }
func (o overlay) ReadDir(n string) ([]os.DirEntry, error) { return o.cfs.ReadDir(n) }
func (o overlay) RemoveAll(n string) error                { return o.cfs.RemoveAll(n) }

// The /dev/tdx_guest fallback with go-tdx-guest's mock device and its real
// test quote: no configfs.
func TestDeviceFallback(t *testing.T) {
	dev, err := tdxtest.TcDevice(tdxtest.TestCases())
	if err != nil {
		t.Fatal(err)
	}
	m := newMachine(t, tsmfake.TDXOptions{NoConfigfs: true})
	d, err := tdx.Open(context.Background(), m.Root, tdx.WithFS(m), tdx.WithQuoteDevice(dev))
	if err != nil {
		t.Fatal(err)
	}
	tc := tdxtest.TestCases()[0]
	q, err := d.Quote(context.Background(), tc.Input[:])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(q, tc.Quote) {
		t.Fatal("fallback quote differs from the mock's")
	}
}

func TestRealQuote(t *testing.T) {
	want := expected(t, "tdx_prod_quote_SPR_E4.expected.json")
	raw := readTestdata(t, "tdx_prod_quote_SPR_E4.dat")
	vals, err := cvmreport.TDXQuoteRegisters(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vals {
		if got := v.Digest.Hex(); got != want[v.Register.Name] {
			t.Errorf("%s = %s, go-tdx-guest's test says %s", v.Register.Name, got, want[v.Register.Name])
		}
	}
	q, err := tdxabi.QuoteToProto(raw)
	if err != nil {
		t.Fatal(err)
	}
	b := q.(*tdxpb.QuoteV4).GetTdQuoteBody()
	if hex.EncodeToString(b.ReportData) != want["report_data"] || hex.EncodeToString(b.MrSeam) != want["mr_seam"] {
		t.Error("REPORTDATA or MR_SEAM differ from the published values")
	}
}

// The real CCEL replays (with go-eventlog) to the RTMR values its source
// publishes: the file is intact and is what a verifier gets in evidence.
func TestRealCCEL(t *testing.T) {
	want := expected(t, "ccel-cos-113-intel-tdx.expected.json")
	bank := register.RTMRBank{}
	for i := range 3 {
		bank.RTMRs = append(bank.RTMRs, register.RTMR{Index: i, Digest: unhex(t, want["rtmr"+string(rune('0'+i))])})
	}
	table := readTestdata(t, "ccel-cos-113-intel-tdx.table.bin")
	data := readTestdata(t, "ccel-cos-113-intel-tdx.data.bin")
	if _, err := ccel.ReplayAndExtract(table, data, bank, extract.Opts{Loader: extract.GRUB}); err != nil {
		t.Fatalf("real CCEL does not replay to the published RTMRs: %v", err)
	}
	bank.RTMRs[1].Digest = fill(0)
	if _, err := ccel.ReplayAndExtract(table, data, bank, extract.Opts{Loader: extract.GRUB}); err == nil {
		t.Fatal("replay accepted a wrong RTMR1")
	}
}

func BenchmarkExtendSysfs(b *testing.B) {
	m := newMachine(b, tsmfake.TDXOptions{})
	d := open(b, m)
	dg := mr.Digest{Alg: mr.SHA384, Bytes: fill(1)}
	ctx := context.Background()
	for b.Loop() {
		if err := d.Extend(ctx, "rtmr3", dg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAttest(b *testing.B) {
	m := newMachine(b, tsmfake.TDXOptions{})
	d := open(b, m)
	ctx := context.Background()
	for b.Loop() {
		if _, err := d.Attest(ctx, []byte("n")); err != nil {
			b.Fatal(err)
		}
	}
}
