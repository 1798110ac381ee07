package main

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/eventlog/logfile"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier"
)

// trustFlags are the trust options of `ccmr verify` that `evidence show`
// and `policy create --from` take to verify a bundle before they print or
// pin what it proves: the same names, meanings and checks.
type trustFlags struct {
	nonceHex, at, roots, collateral, snpCRL, policyFile string
	trustKeys, simKeys, allowTCB                        []string
	opts                                                verifier.Options
}

func (t *trustFlags) add(fl *pflag.FlagSet, withPolicy bool) {
	if withPolicy {
		fl.StringVar(&t.policyFile, "policy", "", "policy file (docs/policy.md) judged while verifying (its snp/tdx section is needed with --azure-hcl)")
	}
	fl.StringVar(&t.nonceHex, "nonce", "", "expected nonce (hex)")
	fl.StringVar(&t.at, "at", "", "time for certificate and collateral validity (RFC 3339; default now)")
	fl.StringArrayVar(&t.trustKeys, "trust-ak", nil, "pinned TPM AK public key, PEM (repeatable); never vouches for sim evidence")
	fl.StringArrayVar(&t.simKeys, "trust-sim-key", nil, "pinned sim device key, PEM from ccmr key on the sim (repeatable); with --allow-sim")
	fl.BoolVar(&t.opts.AllowSim, "allow-sim", false, "trust sim evidence signed by a key pinned with --trust-sim-key")
	fl.StringVar(&t.roots, "ak-roots", "", "CA certificates (PEM) for AK certificates")
	fl.StringVar(&t.collateral, "collateral", "", "TDX collateral (Intel PCS, QuoteCollateralV3 JSON) instead of the bundle's")
	fl.StringSliceVar(&t.allowTCB, "allow-tcb", nil, "TDX TCB statuses to trust besides UpToDate (e.g. SWHardeningNeeded)")
	fl.StringVar(&t.snpCRL, "snp-crl", "", "AMD CRL (DER or PEM) of the SNP report's product line")
	fl.BoolVar(&t.opts.AllowMissingCollateral, "allow-missing-collateral", false, "let a TDX quote without collateral pass, weakened")
	fl.BoolVar(&t.opts.AzureHCL, "azure-hcl", false, "trust the TPM AK through the bundle's Azure HCL report (needs --policy with the launch measurement)")
	fl.BoolVar(&t.opts.AcceptUnverifiedHistory, "accept-unverified-history", false, "accept a runtime log that starts at a value nothing proves (weakened)")
	fl.BoolVar(&t.opts.AllowUnquotedLogRegisters, "allow-unquoted-log-registers", false, "accept firmware/CC log events on registers the evidence does not cover (weakened)")
}

// files are the files the flags name, for requireInputFiles.
func (t *trustFlags) files() []string {
	fs := append(append([]string(nil), t.trustKeys...), t.simKeys...)
	for _, f := range []string{t.roots, t.collateral, t.snpCRL, t.policyFile} {
		if f != "" {
			fs = append(fs, f)
		}
	}
	return fs
}

// options reads and checks what the flags name, as verify does: a file that
// holds no key, no certificate or no collateral is refused (exit 2), never
// verified without.
func (t *trustFlags) options(name string) (verifier.Options, error) {
	o := t.opts
	o.Name = name
	var err error
	if t.policyFile != "" {
		if o.Policy, err = verifier.LoadPolicy(t.policyFile); err != nil {
			return o, &exitError{code: exitUsage, err: err}
		}
	}
	if t.nonceHex != "" {
		if o.Nonce, err = hex.DecodeString(t.nonceHex); err != nil {
			return o, usageError("--nonce %q: want hex digits", t.nonceHex)
		}
	}
	if t.at != "" {
		if o.At, err = time.Parse(time.RFC3339, t.at); err != nil {
			return o, usageError("--at %q: want RFC 3339 time", t.at)
		}
	}
	if err := loadTrust(&o, t.trustKeys, t.simKeys, t.snpCRL, t.roots); err != nil {
		return o, err
	}
	err = loadTDXTrust(&o, t.collateral, t.allowTCB)
	return o, err
}

// verifyBundle opens a bundle (a file, or "-" for standard input) and
// verifies it with the trust flags.
func verifyBundle(ctx context.Context, stdin io.Reader, arg string, t *trustFlags) (*verifier.Report, *bundle.Bundle, error) {
	if err := requireInputFiles(t.files()...); err != nil {
		return nil, nil, err
	}
	name := arg
	var b *bundle.Bundle
	var err error
	if arg == "-" {
		name = "standard input"
		b, err = readStdinBundle(ctx, stdin)
	} else {
		if err := requireRegular(arg); err != nil {
			return nil, nil, err
		}
		b, err = bundle.Open(ctx, arg)
	}
	if err != nil {
		return nil, nil, err
	}
	o, err := t.options(name)
	if err != nil {
		b.Close()
		return nil, nil, err
	}
	rep, err := verifier.Verify(ctx, b, o)
	if err != nil {
		b.Close()
		return nil, nil, err
	}
	return rep, b, nil
}

func newPolicyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Write verification policies from known-good evidence, IMA lists, file trees and firmware logs",
	}
	cmd.AddCommand(newPolicyCreateCmd(g))
	return cmd
}

// policyCreate are the flags of `policy create`.
type policyCreate struct {
	out       string
	from      string
	trust     trustFlags
	registers string
	banks     []string
	platform  string

	runtime             bool
	imaList, dir        string
	algo, logHashAlg    string
	excludes, skipPaths []string
	keyrings, imaBuf    bool
	ignoredKeyrings     []string
	measuredBoot        bool
	fwLog, fwFormat     string
}

func newPolicyCreateCmd(g *globals) *cobra.Command {
	var pc policyCreate
	cmd := &cobra.Command{
		Use:   "create (--from BUNDLE | --runtime (--ima LIST | --dir ROOT) | --measured-boot --log FIRMWARE_LOG) [-O FILE]",
		Short: "Create a policy: what a known-good bundle proves, a Keylime runtime policy, or a measured-boot reference",
		Long: `Create a policy (docs/policy.md) instead of reading failures.

--from BUNDLE verifies the bundle with verify's trust flags (it must be TRUSTED,
weakened or not) and pins what it proves: the registers (--registers all|none|LIST,
default all real registers; virtual registers by name; --banks to choose banks) and
the platform fields of the snp/tdx section (--platform-fields all|none|LIST). The
policy is checked against its own bundle before it is written.

--runtime writes a Keylime runtime policy (schema version 1, as keylime-policy
create runtime does) from an IMA list (--ima, binary or ascii) or a file tree
(--dir ROOT, paths relative to ROOT, /sys /run /proc /dev /tmp /var … skipped as
Keylime skips them). It is loaded back before it is written.

--measured-boot --log FILE writes a measured_boot section: the events of every
register of a known-good TCG2 log or CCEL (--registers LIST to choose).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			modes := 0
			for _, m := range []bool{pc.from != "", pc.runtime, pc.measuredBoot} {
				if m {
					modes++
				}
			}
			if modes != 1 {
				return usageError("policy create: give exactly one of --from BUNDLE, --runtime, --measured-boot")
			}
			var doc any
			var err error
			switch {
			case pc.from != "":
				doc, err = pc.fromBundle(cmd.Context(), cmd.InOrStdin(), g)
			case pc.runtime:
				doc, err = pc.runtimePolicy(cmd.Context(), g)
			default:
				doc, err = pc.measuredBootPolicy()
			}
			if err != nil {
				return err
			}
			js, err := json.MarshalIndent(doc, "", "  ")
			if err != nil {
				return err
			}
			js = append(js, '\n')
			if pc.out == "" || pc.out == "-" {
				_, err = g.stdout.Write(js)
				return err
			}
			return writeOutput(pc.out, 0o644, func(w io.Writer) error {
				_, err := w.Write(js)
				return err
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&pc.out, "out", "O", "", "write the policy to FILE (default standard output)")
	fl.StringVar(&pc.from, "from", "", "known-good bundle (file or -) whose proven values the policy pins")
	pc.trust.add(fl, true)
	fl.StringVar(&pc.registers, "registers", "", "registers to pin: all (default: every proven real register), none, or a comma-separated list (virtual registers too); with --measured-boot, the registers whose events to list")
	fl.StringSliceVar(&pc.banks, "banks", nil, "banks to pin (default every proven bank), e.g. sha256")
	fl.StringVar(&pc.platform, "platform-fields", "all", "snp/tdx fields to pin: all, none, or a comma-separated list (tdx: mrtd, rtmr0..rtmr3, mrconfigid, mrowner, mrownerconfig, td_attributes, xfam, min_tee_tcb_svn; snp: measurement, host_data, family_id, image_id, vmpl, policy, min_tcb)")
	fl.BoolVar(&pc.runtime, "runtime", false, "write a Keylime runtime policy (schema version 1)")
	fl.StringVar(&pc.imaList, "ima", "", "with --runtime: IMA list (binary or ascii) whose file digests the policy allows")
	fl.StringVar(&pc.dir, "dir", "", "with --runtime: file tree whose files' digests the policy allows (paths relative to it)")
	fl.StringVar(&pc.algo, "algo", "sha256", "with --runtime --dir: file digest algorithm (sha1, sha256, sha384, sha512)")
	fl.StringVar(&pc.logHashAlg, "log-hash-alg", "sha1", "with --runtime: the policy's ima.log_hash_alg, the template-hash algorithm")
	fl.StringArrayVar(&pc.excludes, "exclude", nil, "with --runtime: an excludes entry (Python regular expression, repeatable)")
	fl.StringArrayVar(&pc.skipPaths, "skip-path", nil, "with --runtime --dir: a directory to skip, relative to ROOT (repeatable)")
	fl.BoolVar(&pc.keyrings, "keyrings", false, "with --runtime --ima: allow the keys the list's ima-buf entries loaded (keyrings)")
	fl.BoolVar(&pc.imaBuf, "ima-buf", false, "with --runtime --ima: allow the list's other ima-buf entries (ima-buf)")
	fl.StringArrayVar(&pc.ignoredKeyrings, "ignored-keyring", nil, "with --runtime: ima.ignored_keyrings entry (repeatable)")
	fl.BoolVar(&pc.measuredBoot, "measured-boot", false, "write a measured_boot section from a known-good firmware log")
	fl.StringVar(&pc.fwLog, "log", "", "with --measured-boot: the TCG2 log or CCEL")
	fl.StringVar(&pc.fwFormat, "format", "auto", "with --measured-boot: the log's format (tcg2, ccel, auto)")
	return cmd
}

// ---- --from BUNDLE ------------------------------------------------------

// fromPolicy is the policy `create --from` writes (docs/policy.md).
type fromPolicy struct {
	Registers map[string][]mr.Digest `json:"registers,omitempty"`
	TDX       *verifier.TDXPolicy    `json:"tdx,omitempty"`
	SNP       *verifier.SNPPolicy    `json:"snp,omitempty"`
}

// MarshalJSON leaves out the members of the platform sections that are not
// pinned (null lists, empty strings): the file says what it judges.
func (p fromPolicy) MarshalJSON() ([]byte, error) {
	out := map[string]any{}
	if p.Registers != nil {
		out["registers"] = p.Registers
	}
	for name, sec := range map[string]any{"tdx": p.TDX, "snp": p.SNP} {
		if sec == (*verifier.TDXPolicy)(nil) || sec == (*verifier.SNPPolicy)(nil) {
			continue
		}
		b, err := json.Marshal(sec)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, err
		}
		for k, v := range m {
			if v == nil || v == "" {
				delete(m, k)
			}
		}
		out[name] = m
	}
	return json.Marshal(out)
}

var tdxFields = []string{"td_attributes", "xfam", "mrtd", "mrconfigid", "mrowner", "mrownerconfig", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "min_tee_tcb_svn"}
var snpFields = []string{"measurement", "host_data", "family_id", "image_id", "vmpl", "policy", "min_tcb"}

func (pc *policyCreate) fromBundle(ctx context.Context, stdin io.Reader, g *globals) (any, error) {
	rep, b, err := verifyBundle(ctx, stdin, pc.from, &pc.trust)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	if !rep.Trusted {
		// A policy pins a known-good machine: a bundle that does not
		// verify is not one.
		return nil, g.withReport(rep, &exitError{code: exitFail, err: fmt.Errorf("%s: not trusted (layer %d failed): no policy written", pc.from, rep.FailedLayer())})
	}
	if len(rep.Weakened) > 0 {
		g.warn(fmt.Sprintf("%s is %s: the policy pins its values all the same", pc.from, rep.Verdict))
	}
	p := rep.Proven
	out := fromPolicy{Registers: map[string][]mr.Digest{}}
	banks := map[string]bool{}
	for _, b := range pc.banks {
		a, err := mr.ParseAlg(b)
		if err != nil {
			return nil, usageError("--banks %q: %v", b, err)
		}
		banks[a.String()] = true
	}
	inBanks := func(d mr.Digest) bool { return len(banks) == 0 || banks[d.Alg.String()] }
	switch pc.registers {
	case "", "all":
		for _, r := range p.Registers {
			if inBanks(r.Digest) {
				out.Registers[r.Name] = append(out.Registers[r.Name], r.Digest)
			}
		}
	case "none":
	default:
		for _, n := range strings.Split(pc.registers, ",") {
			n = strings.TrimSpace(n)
			found := false
			for _, r := range append(append([]verifier.ProvenRegister(nil), p.Registers...), p.Virtual...) {
				if r.Name == n && inBanks(r.Digest) {
					out.Registers[n] = append(out.Registers[n], r.Digest)
					found = true
				}
			}
			if !found {
				return nil, usageError("--registers: %s has no proven value (in the banks asked) in %s", n, pc.from)
			}
		}
	}
	if len(out.Registers) == 0 {
		out.Registers = nil
	}
	fields, err := pc.platformFields(p)
	if err != nil {
		return nil, err
	}
	if p.TDX != nil && len(fields) > 0 {
		out.TDX = tdxSection(p.TDX, fields)
	}
	if p.SNP != nil && len(fields) > 0 {
		out.SNP = snpSection(p.SNP, fields)
	}
	if out.Registers == nil && out.TDX == nil && out.SNP == nil {
		return nil, usageError("policy create --from %s: nothing to pin (no register or platform field chosen)", pc.from)
	}
	// The policy must pass on its own bundle: read it back as a policy
	// file is read, and verify again.
	js, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	pol, err := verifier.ParsePolicy(js, ".")
	if err != nil {
		return nil, fmt.Errorf("the created policy does not read back: %w", err)
	}
	o, err := pc.trust.options(rep.Bundle)
	if err != nil {
		return nil, err
	}
	o.Policy = pol
	again, err := verifier.Verify(ctx, b, o)
	if err != nil {
		return nil, err
	}
	if !again.Trusted {
		return nil, g.withReport(again, fmt.Errorf("the created policy does not pass on %s (layer %d failed): no policy written", pc.from, again.FailedLayer()))
	}
	return out, nil
}

// platformFields resolves --platform-fields for the platform the bundle
// proved (none when it proved no TDX or SNP fields).
func (pc *policyCreate) platformFields(p *verifier.Proven) (map[string]bool, error) {
	var known []string
	switch {
	case p.TDX != nil:
		known = tdxFields
	case p.SNP != nil:
		known = snpFields
	}
	sel := map[string]bool{}
	switch pc.platform {
	case "none":
		return sel, nil
	case "all", "":
		for _, f := range known {
			sel[f] = true
		}
		return sel, nil
	}
	for _, f := range strings.Split(pc.platform, ",") {
		f = strings.TrimSpace(f)
		if !contains(known, f) {
			if known == nil {
				return nil, usageError("--platform-fields %s: %s proves no TDX or SNP fields", f, pc.from)
			}
			return nil, usageError("--platform-fields %q: not one of %s", f, strings.Join(known, ", "))
		}
		sel[f] = true
	}
	return sel, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func tdxSection(t *verifier.ProvenTDX, sel map[string]bool) *verifier.TDXPolicy {
	// A debug TD in a trusted bundle was accepted by the --policy given:
	// the pinned policy accepts it too, or it would not pass its bundle.
	p := &verifier.TDXPolicy{AllowDebug: t.Debug}
	one := func(name, v string) []string {
		if sel[name] {
			return []string{v}
		}
		return nil
	}
	p.TDAttributes, p.XFAM, p.MRTD = one("td_attributes", t.TDAttributes), one("xfam", t.XFAM), one("mrtd", t.MRTD)
	p.MRConfigID, p.MROwner, p.MROwnerConfig = one("mrconfigid", t.MRConfigID), one("mrowner", t.MROwner), one("mrownerconfig", t.MROwnerConfig)
	p.RTMR0, p.RTMR1, p.RTMR2, p.RTMR3 = one("rtmr0", t.RTMR0), one("rtmr1", t.RTMR1), one("rtmr2", t.RTMR2), one("rtmr3", t.RTMR3)
	if sel["min_tee_tcb_svn"] {
		p.MinTEETCBSVN = t.TEETCBSVN
	}
	return p
}

func snpSection(s *verifier.ProvenSNP, sel map[string]bool) *verifier.SNPPolicy {
	p := &verifier.SNPPolicy{AllowDebug: s.Debug}
	one := func(name, v string) []string {
		if sel[name] {
			return []string{v}
		}
		return nil
	}
	p.Measurement, p.HostData = one("measurement", s.Measurement), one("host_data", s.HostData)
	p.FamilyID, p.ImageID = one("family_id", s.FamilyID), one("image_id", s.ImageID)
	if sel["vmpl"] {
		v := s.VMPL
		p.VMPL = &v
	}
	if sel["policy"] {
		// The guest policy exactly: its set bits set, every other bit
		// clear.
		var v uint64
		fmt.Sscanf(strings.TrimPrefix(s.Policy, "0x"), "%x", &v)
		p.PolicySet = fmt.Sprintf("0x%x", v)
		p.PolicyClear = fmt.Sprintf("0x%x", ^v)
	}
	if sel["min_tcb"] {
		t := s.ReportedTCBParts
		p.MinTCB = &t
	}
	return p
}

// ---- --runtime ------------------------------------------------------------

// keylimeRuntimePolicy is a Keylime runtime policy, schema version 1, with
// every member Keylime's RUNTIME_POLICY_SCHEMA requires (keylime/ima/ima.py
// EMPTY_RUNTIME_POLICY): what keylime-policy create runtime writes.
type keylimeRuntimePolicy struct {
	Meta struct {
		Version   int    `json:"version"`
		Generator int    `json:"generator"`
		Timestamp string `json:"timestamp"`
	} `json:"meta"`
	Release  int                 `json:"release"`
	Digests  map[string][]string `json:"digests"`
	Excludes []string            `json:"excludes"`
	Keyrings map[string][]string `json:"keyrings"`
	IMA      struct {
		IgnoredKeyrings []string  `json:"ignored_keyrings"`
		LogHashAlg      string    `json:"log_hash_alg"`
		DMPolicy        *struct{} `json:"dm_policy"`
	} `json:"ima"`
	IMABuf           map[string][]string `json:"ima-buf"`
	VerificationKeys string              `json:"verification-keys"`
}

// keylimeLegacyAllowList is RUNTIME_POLICY_GENERATOR.LegacyAllowList, the
// generator keylime-policy create runtime records.
const keylimeLegacyAllowList = 3

// keylimeExcludedDirs are the directories keylime-policy create runtime
// skips in a file tree (BASE_EXCLUDE_DIRS).
var keylimeExcludedDirs = []string{"/sys", "/run", "/proc", "/lost+found", "/dev", "/media", "/snap", "/mnt", "/var", "/tmp"}

func (pc *policyCreate) runtimePolicy(ctx context.Context, g *globals) (any, error) {
	if (pc.imaList == "") == (pc.dir == "") {
		return nil, usageError("policy create --runtime: give one of --ima LIST or --dir ROOT")
	}
	switch pc.logHashAlg {
	case "sha1", "sha256", "sha384", "sha512":
	default:
		return nil, usageError("--log-hash-alg %q: want sha1, sha256, sha384 or sha512 (Keylime's schema)", pc.logHashAlg)
	}
	rp := &keylimeRuntimePolicy{Digests: map[string][]string{}, Keyrings: map[string][]string{}, IMABuf: map[string][]string{}, Excludes: []string{}}
	rp.Meta.Version, rp.Meta.Generator = 1, keylimeLegacyAllowList
	rp.Meta.Timestamp = time.Now().UTC().Format("2006-01-02 15:04:05.000000")
	rp.IMA.LogHashAlg = pc.logHashAlg
	rp.IMA.IgnoredKeyrings = append([]string{}, pc.ignoredKeyrings...)
	rp.Excludes = append(rp.Excludes, pc.excludes...)
	var err error
	if pc.imaList != "" {
		if pc.skipPaths != nil {
			return nil, usageError("--skip-path is for --dir")
		}
		err = pc.digestsFromIMA(ctx, g, rp)
	} else {
		if pc.keyrings || pc.imaBuf {
			return nil, usageError("--keyrings and --ima-buf read an IMA list (--ima)")
		}
		err = pc.digestsFromDir(ctx, rp)
	}
	if err != nil {
		return nil, err
	}
	for _, m := range []map[string][]string{rp.Digests, rp.Keyrings, rp.IMABuf} {
		for k, v := range m {
			m[k] = uniqueSorted(v)
		}
	}
	rp.Excludes = uniqueSorted(rp.Excludes)
	rp.IMA.IgnoredKeyrings = uniqueSorted(rp.IMA.IgnoredKeyrings)
	if len(rp.Digests) == 0 && len(rp.Keyrings) == 0 && len(rp.IMABuf) == 0 {
		return nil, usageError("policy create --runtime: no file digest found: the policy would allow nothing")
	}
	// Loaded back as ccmr loads it: what is written is what verify reads.
	js, err := json.Marshal(rp)
	if err != nil {
		return nil, err
	}
	if _, err := verifier.ParseRuntimePolicy(js); err != nil {
		return nil, fmt.Errorf("the created runtime policy does not load: %w", err)
	}
	return rp, nil
}

func uniqueSorted(l []string) []string {
	sort.Strings(l)
	out := l[:0]
	for i, s := range l {
		if i == 0 || s != l[i-1] {
			out = append(out, s)
		}
	}
	return out
}

func (pc *policyCreate) digestsFromIMA(ctx context.Context, g *globals, rp *keylimeRuntimePolicy) error {
	if err := requireRegular(pc.imaList); err != nil {
		return err
	}
	rd, c, err := ima.OpenFile(pc.imaList, eventlog.FormatAuto, ima.Options{File: pc.imaList})
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	defer c.Close()
	violations, n := 0, 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		n++
		if e.IsViolation() {
			// Its digest field is zeros: allowing a zero digest would
			// allow nothing real and hide the violation.
			violations++
			continue
		}
		name := e.FileName()
		switch e.TemplateName {
		case "ima", "ima-ng", "ima-sig", "ima-modsig":
			_, d, ok := e.FileDigest()
			if !ok {
				return usageError("%s entry %d (byte %d): no file digest", pc.imaList, e.Index, e.Offset)
			}
			rp.Digests[name] = append(rp.Digests[name], hex.EncodeToString(d))
		case "ima-buf":
			_, d, ok := e.FileDigest()
			if !ok {
				return usageError("%s entry %d (byte %d): no buffer digest", pc.imaList, e.Index, e.Offset)
			}
			if _, err := x509.ParseCertificate(e.Buf()); err == nil {
				if pc.keyrings && !contains(rp.IMA.IgnoredKeyrings, name) && !contains(rp.IMA.IgnoredKeyrings, "*") {
					rp.Keyrings[name] = append(rp.Keyrings[name], hex.EncodeToString(d))
				}
			} else if pc.imaBuf {
				rp.IMABuf[name] = append(rp.IMABuf[name], hex.EncodeToString(d))
			}
		default:
			g.warn(fmt.Sprintf("%s entry %d: template %s is not read for a runtime policy (as keylime-policy skips it)", pc.imaList, e.Index, e.TemplateName))
		}
	}
	if violations > 0 {
		g.warn(fmt.Sprintf("%s: %d violations (all-zero template hash) left out: their files are not allowed", pc.imaList, violations))
	}
	if n == 0 {
		return usageError("%s: no IMA entry", pc.imaList)
	}
	return nil
}

func (pc *policyCreate) digestsFromDir(ctx context.Context, rp *keylimeRuntimePolicy) error {
	alg, err := mr.ParseAlg(pc.algo)
	if err != nil {
		return usageError("--algo %q: %v", pc.algo, err)
	}
	switch alg {
	case mr.SHA1, mr.SHA256, mr.SHA384, mr.SHA512:
	default:
		return usageError("--algo %s: want sha1, sha256, sha384 or sha512", pc.algo)
	}
	root, err := filepath.Abs(pc.dir)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	if st, err := os.Stat(root); err != nil || !st.IsDir() {
		return usageError("--dir %s: not a directory", pc.dir)
	}
	skip := map[string]bool{}
	for _, d := range append(append([]string(nil), keylimeExcludedDirs...), pc.skipPaths...) {
		skip["/"+strings.Trim(filepath.ToSlash(d), "/")] = true
	}
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		key := "/" + filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if d.IsDir() {
			if skip[key] {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			// Symbolic links, sockets, devices: as keylime-policy, only
			// regular files (a FIFO would block the read).
			return nil
		}
		data, err := readInputFile(ctx, path)
		if err != nil {
			return err
		}
		// IMA writes a space in a name as "_"; so does keylime-policy.
		key = strings.ReplaceAll(key, " ", "_")
		rp.Digests[key] = append(rp.Digests[key], alg.Sum(data).Hex())
		return nil
	})
}

// ---- --measured-boot --------------------------------------------------------

func (pc *policyCreate) measuredBootPolicy() (any, error) {
	if pc.fwLog == "" {
		return nil, usageError("policy create --measured-boot: --log FIRMWARE_LOG is required")
	}
	f, err := logfile.ParseFormat(pc.fwFormat)
	if err != nil {
		return nil, usageError("--format: %v", err)
	}
	if f != eventlog.FormatAuto && f != eventlog.FormatTCG2 && f != eventlog.FormatCCEL {
		return nil, usageError("--format %s: a measured-boot reference is read from a tcg2 log or a ccel", f)
	}
	lf, err := logfile.Open(pc.fwLog, f)
	if err != nil {
		return nil, &exitError{code: exitUsage, err: err}
	}
	defer lf.Close()
	if lf.Format != eventlog.FormatTCG2 && lf.Format != eventlog.FormatCCEL {
		return nil, usageError("%s is a %s log, not a TCG2 log or CCEL", pc.fwLog, lf.Format)
	}
	fl, err := logfile.ParseFirmware(lf)
	if err != nil {
		return nil, &exitError{code: exitUsage, err: err}
	}
	var regs []string
	if pc.registers != "" && pc.registers != "all" {
		for _, r := range strings.Split(pc.registers, ",") {
			regs = append(regs, strings.TrimSpace(r))
		}
	}
	mb, err := verifier.MeasuredBootFrom(fl, regs)
	if err != nil {
		return nil, &exitError{code: exitUsage, err: err}
	}
	doc := map[string]any{"measured_boot": mb}
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	if _, err := verifier.ParsePolicy(js, "."); err != nil {
		return nil, fmt.Errorf("the created measured_boot section does not read back: %w", err)
	}
	return doc, nil
}
