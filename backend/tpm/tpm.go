// Package tpm is the TPM 2.0 backend of ccmr: an mr.Device and mr.Attester
// over go-tpm's tpm2 command API (pure Go, no cgo).
//
// It reads PCR 0..23 of every allocated bank, extends one bank with a given
// digest or every bank at once with each bank's hash of some data (one
// TPM2_PCR_Extend), and quotes the PCRs of each bank with an attestation key
// (AK). It talks to /dev/tpmrm0 (or another device file), to swtpm over TCP
// (tcp://HOST:PORT, swtpm's --server port, raw TPM command stream) or over a
// unix socket (unix:PATH).
//
// Some parts are written here by hand because no maintained Go library
// offers them: the transport (go-tpm's have no deadlines, and its TCP
// transport speaks the Microsoft simulator framing rather than swtpm's raw
// stream), the verification of a quote against claimed PCR values without a
// TPM, and the "serialized" PCR file tpm2-tools' tpm2_quote writes and
// tpm2_checkquote reads (a dump of C structures, specified only by the
// tpm2-tools source).
//
// PCRs 17..22 are readable and quoted but not extendable from software
// (locality 0). PCR 16 (debug) and PCR 23 (application) can be reset from
// the guest with TPM2_PCR_Reset at locality 0; they are readable and
// extendable like the others but must not back virtual registers.
package tpm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
)

// NumPCRs is the number of PCRs per bank ccmr exposes (PC Client profile).
const NumPCRs = tpmverify.NumPCRs

// ResettablePCRs are the PCRs a guest can reset at locality 0 (PC Client
// profile): never use them to back a virtual register.
var ResettablePCRs = [...]int{16, 23}

// DefaultEventLog is where Linux exposes the firmware's TCG2 event log.
const DefaultEventLog = "/sys/kernel/security/tpm0/binary_bios_measurements"

// AKAlg selects the kind of attestation key ccmr creates.
type AKAlg string

// Attestation key kinds.
const (
	// AKECC is an ECC NIST P-256 key signing with ECDSA-SHA256 (default).
	AKECC AKAlg = "ecc"
	// AKRSA is an RSA 2048 key signing with RSASSA-PKCS1-v1_5-SHA256.
	AKRSA AKAlg = "rsa"
)

// Hierarchy selects the hierarchy the AK is created under.
type Hierarchy string

// Hierarchies an AK may be created under.
const (
	Endorsement Hierarchy = "endorsement" // default
	Owner       Hierarchy = "owner"
)

type config struct {
	timeout      time.Duration
	akAlg        AKAlg
	akHierarchy  Hierarchy
	akHandle     uint32
	eventLogPath string
	hierAuth     []byte
}

// Option configures Open.
type Option func(*config)

// WithTimeout bounds every TPM command (default DefaultTimeout). A TPM that
// does not answer in time gives an error wrapping ErrTimeout and the Device
// becomes unusable.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithAKAlg selects the kind of AK created for quotes (default AKECC).
func WithAKAlg(a AKAlg) Option { return func(c *config) { c.akAlg = a } }

// WithAKHierarchy selects the hierarchy the AK is created under (default
// Endorsement). The AK is a primary key, so the same TPM and template always
// give the same AK.
func WithAKHierarchy(h Hierarchy) Option { return func(c *config) { c.akHierarchy = h } }

// WithHierarchyAuth sets the authorization value of the AK's hierarchy
// (empty by default).
func WithHierarchyAuth(auth []byte) Option { return func(c *config) { c.hierAuth = auth } }

// WithAKHandle makes quotes use the restricted signing key at this
// persistent handle (0x81xxxxxx, empty authorization) instead of creating one.
func WithAKHandle(h uint32) Option { return func(c *config) { c.akHandle = h } }

// WithEventLog sets where the firmware event log is read from (default
// DefaultEventLog); "" disables it.
func WithEventLog(path string) Option { return func(c *config) { c.eventLogPath = path } }

// Device is a TPM 2.0. It is safe for concurrent use (commands are
// serialised).
type Device struct {
	cfg  config
	spec string
	c    *conn

	mu    sync.Mutex
	banks []mr.Alg
}

var _ mr.Device = (*Device)(nil)
var _ mr.Attester = (*Device)(nil)

// Open connects to the TPM that spec names: "" or "tpm" (DefaultDevice, or
// /dev/tpm0 when only that exists), a
// device path, tcp://HOST:PORT (swtpm's --server type=tcp port) or unix:PATH.
// A leading "tpm:" is accepted and ignored. Open sends no command.
func Open(ctx context.Context, spec string, opts ...Option) (*Device, error) {
	cfg := config{
		timeout:      DefaultTimeout,
		akAlg:        AKECC,
		akHierarchy:  Endorsement,
		eventLogPath: DefaultEventLog,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.timeout <= 0 {
		return nil, fmt.Errorf("tpm: timeout must be positive, got %v", cfg.timeout)
	}
	switch cfg.akAlg {
	case AKECC, AKRSA:
	default:
		return nil, fmt.Errorf("%w: AK algorithm %q (want ecc or rsa)", mr.ErrUnsupported, cfg.akAlg)
	}
	switch cfg.akHierarchy {
	case Endorsement, Owner:
	default:
		return nil, fmt.Errorf("%w: AK hierarchy %q (want endorsement or owner)", mr.ErrUnsupported, cfg.akHierarchy)
	}
	if cfg.akHandle != 0 && cfg.akHandle>>24 != 0x81 {
		return nil, fmt.Errorf("%w: AK handle 0x%08x is not a persistent handle (0x81xxxxxx)", mr.ErrMalformed, cfg.akHandle)
	}
	spec = strings.TrimPrefix(spec, "tpm:")
	if spec == "tpm" {
		spec = ""
	}
	c, err := dial(ctx, spec, cfg.timeout)
	if err != nil {
		return nil, err
	}
	return &Device{cfg: cfg, spec: c.what, c: c}, nil
}

// Probe reports whether a TPM device file is present (DefaultDevice or
// /dev/tpm0), for auto-detection. It sends no command.
func Probe(ctx context.Context) bool {
	for _, p := range []string{DefaultDevice, "/dev/tpm0"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeDevice != 0 {
			return true
		}
	}
	return false
}

// Kind returns "tpm".
func (d *Device) Kind() string { return "tpm" }

// Spec returns the device path or address in use.
func (d *Device) Spec() string { return d.spec }

// Close releases the connection.
func (d *Device) Close() error { return d.c.Close() }

// op runs fn with ctx governing every command fn sends.
func (d *Device) op(ctx context.Context, fn func() error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.c.ctx = ctx
	defer func() { d.c.ctx = nil }()
	return fn()
}

// Startup sends TPM2_Startup(CLEAR), what firmware does at boot. Only a
// simulator needs it; a TPM that has been started answers TPM_RC_INITIALIZE,
// which Startup ignores.
func (d *Device) Startup(ctx context.Context) error {
	return d.op(ctx, func() error {
		_, err := tpm2.Startup{StartupType: tpm2.TPMSUClear}.Execute(d.c)
		if err != nil && !errors.Is(err, tpm2.TPMRCInitialize) {
			return fmt.Errorf("tpm: TPM2_Startup: %w", err)
		}
		return nil
	})
}

// Banks returns the allocated PCR banks, in the order the TPM lists them,
// that ccmr can hash with. Banks of unknown algorithms are left out.
func (d *Device) Banks(ctx context.Context) ([]mr.Alg, error) {
	var out []mr.Alg
	err := d.op(ctx, func() error {
		b, err := d.banksLocked()
		out = b
		return err
	})
	return append([]mr.Alg(nil), out...), err
}

func (d *Device) banksLocked() ([]mr.Alg, error) {
	if d.banks != nil {
		return d.banks, nil
	}
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapPCRs, PropertyCount: 1}.Execute(d.c)
	if err != nil {
		return nil, fmt.Errorf("tpm: reading allocated PCR banks (TPM2_GetCapability): %w", err)
	}
	sel, err := rsp.CapabilityData.Data.AssignedPCR()
	if err != nil {
		return nil, fmt.Errorf("tpm: %w: TPM_CAP_PCRS: %v", ErrBadResponse, err)
	}
	var banks []mr.Alg
	for _, s := range sel.PCRSelections {
		a := mr.Alg(s.Hash)
		if !a.Valid() || !anySet(s.PCRSelect) {
			continue
		}
		banks = append(banks, a)
	}
	if len(banks) == 0 {
		return nil, fmt.Errorf("%w: the TPM has no allocated PCR bank ccmr can use", mr.ErrUnsupported)
	}
	d.banks = banks
	return banks, nil
}

func anySet(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return true
		}
	}
	return false
}

// Registers lists pcr0..pcr23 once per allocated bank.
func (d *Device) Registers(ctx context.Context) ([]mr.Register, error) {
	banks, err := d.Banks(ctx)
	if err != nil {
		return nil, err
	}
	var regs []mr.Register
	for i := 0; i < NumPCRs; i++ {
		for _, a := range banks {
			regs = append(regs, pcrRegister(i, a))
		}
	}
	return regs, nil
}

func pcrRegister(i int, a mr.Alg) mr.Register {
	f := mr.Readable | mr.Reported
	if mr.TPMExtendable(i) {
		f |= mr.Extendable
	}
	return mr.Register{
		Name:  "pcr" + strconv.Itoa(i),
		Alg:   a,
		Size:  a.Size(),
		Flags: f,
		Index: i,
	}
}

// extendablePCR parses name and checks it can be extended at locality 0.
func extendablePCR(name string) (int, error) {
	i, err := tpmverify.ParsePCRName(name)
	if err != nil {
		return 0, err
	}
	if !mr.TPMExtendable(i) {
		return 0, fmt.Errorf("%w: %s is extended only from localities 1..4 (dynamic root of trust), not by software at locality 0", mr.ErrNotExtendable, name)
	}
	return i, nil
}

// Read returns the named PCRs (every allocated bank of each, banks in the
// TPM's order) or, with no names, all PCRs 0..23 of every bank. The values
// are one consistent snapshot: they are read with as few TPM2_PCR_Read
// commands as the TPM allows (at most 8 digests come back per command) and
// read again if the PCR update counter moved in between.
func (d *Device) Read(ctx context.Context, names ...string) ([]mr.Value, error) {
	var idx []int
	if len(names) == 0 {
		for i := 0; i < NumPCRs; i++ {
			idx = append(idx, i)
		}
	}
	for _, n := range names {
		i, err := tpmverify.ParsePCRName(n)
		if err != nil {
			return nil, err
		}
		idx = append(idx, i)
	}
	var out []mr.Value
	err := d.op(ctx, func() error {
		banks, err := d.banksLocked()
		if err != nil {
			return err
		}
		vals, _, err := d.readLocked(banks, idx)
		if err != nil {
			return err
		}
		for _, i := range idx {
			for _, a := range banks {
				out = append(out, mr.Value{Register: pcrRegister(i, a), Digest: mr.Digest{Alg: a, Bytes: vals[a][i]}})
			}
		}
		return nil
	})
	return out, err
}

// pcrValues maps bank → PCR index → value.
type pcrValues map[mr.Alg]map[int][]byte

// readLocked reads PCRs idx of banks, retrying when the update counter
// changes between commands. It returns the values and the update counter.
func (d *Device) readLocked(banks []mr.Alg, idx []int) (pcrValues, uint32, error) {
	const attempts = 5
	for attempt := 0; attempt < attempts; attempt++ {
		vals := pcrValues{}
		want := map[mr.Alg][]byte{}
		for _, a := range banks {
			vals[a] = map[int][]byte{}
			want[a] = make([]byte, 3)
			for _, i := range idx {
				want[a][i/8] |= 1 << (i % 8)
			}
		}
		var counter uint32
		first, moved := true, false
		for {
			var sel tpm2.TPMLPCRSelection
			for _, a := range banks {
				if anySet(want[a]) {
					sel.PCRSelections = append(sel.PCRSelections, tpm2.TPMSPCRSelection{
						Hash: tpm2.TPMIAlgHash(a), PCRSelect: append([]byte(nil), want[a]...)})
				}
			}
			if len(sel.PCRSelections) == 0 {
				break
			}
			rsp, err := tpm2.PCRRead{PCRSelectionIn: sel}.Execute(d.c)
			if err != nil {
				return nil, 0, fmt.Errorf("tpm: TPM2_PCR_Read: %w", err)
			}
			if first {
				counter, first = rsp.PCRUpdateCounter, false
			} else if rsp.PCRUpdateCounter != counter {
				moved = true
				break
			}
			k, got := 0, 0
			for _, s := range rsp.PCRSelectionOut.PCRSelections {
				a := mr.Alg(s.Hash)
				w, ok := want[a]
				if !ok {
					return nil, 0, fmt.Errorf("tpm: %w: TPM2_PCR_Read returned bank %v, not asked for", ErrBadResponse, a)
				}
				for i := 0; i < 8*len(s.PCRSelect); i++ {
					if s.PCRSelect[i/8]&(1<<(i%8)) == 0 {
						continue
					}
					if i >= NumPCRs || w[i/8]&(1<<(i%8)) == 0 {
						return nil, 0, fmt.Errorf("tpm: %w: TPM2_PCR_Read returned PCR %d of %v, not asked for", ErrBadResponse, i, a)
					}
					if k >= len(rsp.PCRValues.Digests) {
						return nil, 0, fmt.Errorf("tpm: %w: TPM2_PCR_Read selection lists more PCRs than values", ErrBadResponse)
					}
					v := rsp.PCRValues.Digests[k].Buffer
					k++
					if len(v) != a.Size() {
						return nil, 0, fmt.Errorf("tpm: %w: PCR %d of %v has %d bytes", ErrBadResponse, i, a, len(v))
					}
					vals[a][i] = v
					w[i/8] &^= 1 << (i % 8)
					got++
				}
			}
			if k != len(rsp.PCRValues.Digests) {
				return nil, 0, fmt.Errorf("tpm: %w: TPM2_PCR_Read returned %d values for %d selected PCRs", ErrBadResponse, len(rsp.PCRValues.Digests), k)
			}
			if got == 0 {
				// The TPM returns nothing for a PCR it does not have.
				for _, a := range banks {
					for i := 0; i < NumPCRs; i++ {
						if want[a][i/8]&(1<<(i%8)) != 0 {
							return nil, 0, fmt.Errorf("%w: the TPM returns no value for pcr%d in bank %v", mr.ErrUnknownRegister, i, a)
						}
					}
				}
			}
		}
		if !moved {
			return vals, counter, nil
		}
	}
	return nil, 0, fmt.Errorf("tpm: PCRs kept changing while being read (%d attempts)", attempts)
}

func pcrAuth(i int) tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: tpm2.TPMHandle(i), Auth: tpm2.PasswordAuth(nil)}
}

// Extend extends bank dg.Alg of PCR name with the digest dg.
func (d *Device) Extend(ctx context.Context, name string, dg mr.Digest) error {
	i, err := extendablePCR(name)
	if err != nil {
		return err
	}
	return d.op(ctx, func() error {
		banks, err := d.banksLocked()
		if err != nil {
			return err
		}
		found := false
		for _, a := range banks {
			found = found || a == dg.Alg
		}
		if !found {
			return fmt.Errorf("%w: %s has no %v bank on this TPM (banks: %v)", mr.ErrUnknownRegister, name, dg.Alg, banks)
		}
		if len(dg.Bytes) != dg.Alg.Size() {
			return fmt.Errorf("%w: %s in %v needs %d bytes, got %d", mr.ErrDigestSize, name, dg.Alg, dg.Alg.Size(), len(dg.Bytes))
		}
		_, err = tpm2.PCRExtend{
			PCRHandle: pcrAuth(i),
			Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMIAlgHash(dg.Alg), Digest: dg.Bytes}}},
		}.Execute(d.c)
		if err != nil {
			return fmt.Errorf("tpm: TPM2_PCR_Extend %s %v: %w", name, dg.Alg, err)
		}
		return nil
	})
}

// ExtendData extends every allocated bank of PCR name with that bank's hash
// of data, in one TPM2_PCR_Extend.
func (d *Device) ExtendData(ctx context.Context, name string, data []byte) error {
	return d.extendBanks(ctx, name, func(banks []mr.Alg) ([]mr.Digest, error) {
		ds := make([]mr.Digest, len(banks))
		for i, a := range banks {
			ds[i] = a.Sum(data)
		}
		return ds, nil
	})
}
