package verifier

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/snpverify"
	"github.com/ccmr-dev/ccmr/verifier/tdxverify"
)

// Platform policy: the "snp" and "tdx" sections of a policy file
// (docs/policy.md) judge a hardware report's platform fields in layer 0,
// where the report is verified: a debug guest, a VMPL, a TCB below a
// minimum, a launch measurement that is not a reference value. Every member
// given is judged; an SNP guest that allows debugging is refused unless the
// policy allows it, as a debug TD is.

// SNPPolicy judges an SNP report (policy section "snp").
type SNPPolicy struct {
	// AllowDebug accepts a guest whose policy allows debugging (bit 19).
	AllowDebug bool `json:"allow_debug"`
	// VMPL is the VMPL the report must come from (0 for the guest's
	// most privileged level).
	VMPL *uint32 `json:"vmpl"`
	// MinTCB is the minimum reported TCB, per SVN.
	MinTCB *SNPTCB `json:"min_tcb"`
	// PolicySet and PolicyClear are guest-policy bits (hex, e.g.
	// "0x30000") that must be set, and clear.
	PolicySet   string `json:"policy_set"`
	PolicyClear string `json:"policy_clear"`
	// Measurement, HostData, FamilyID and ImageID list the allowed values
	// (hex): MEASUREMENT (48 bytes), HOST_DATA (32), FAMILY_ID and
	// IMAGE_ID (16).
	Measurement []string `json:"measurement"`
	HostData    []string `json:"host_data"`
	FamilyID    []string `json:"family_id"`
	ImageID     []string `json:"image_id"`
}

// SNPTCB is a minimum per SVN of SNP's REPORTED_TCB.
type SNPTCB struct {
	Bootloader uint8 `json:"bootloader"`
	TEE        uint8 `json:"tee"`
	SNP        uint8 `json:"snp"`
	Microcode  uint8 `json:"microcode"`
}

// TDXPolicy judges a TDX quote (policy section "tdx").
type TDXPolicy struct {
	// AllowDebug accepts a debug TD (TDATTRIBUTES.DEBUG).
	AllowDebug bool `json:"allow_debug"`
	// TDAttributes and XFAM list the allowed values (hex, 8 bytes).
	TDAttributes []string `json:"td_attributes"`
	XFAM         []string `json:"xfam"`
	// MRTD, MRConfigID, MROwner, MROwnerConfig and RTMR0..3 list the
	// allowed values (hex, 48 bytes).
	MRTD          []string `json:"mrtd"`
	MRConfigID    []string `json:"mrconfigid"`
	MROwner       []string `json:"mrowner"`
	MROwnerConfig []string `json:"mrownerconfig"`
	RTMR0         []string `json:"rtmr0"`
	RTMR1         []string `json:"rtmr1"`
	RTMR2         []string `json:"rtmr2"`
	RTMR3         []string `json:"rtmr3"`
	// MinTEETCBSVN is the minimum TEE_TCB_SVN (hex, 16 bytes), compared
	// byte by byte (each byte is an SVN).
	MinTEETCBSVN string `json:"min_tee_tcb_svn"`
	// AllowedTCBStatuses are TCB statuses trusted besides UpToDate (with
	// those of --allow-tcb).
	AllowedTCBStatuses []string `json:"allowed_tcb_statuses"`
}

// check reports the first malformed member, so that a policy that cannot
// be judged is refused when it is read, not passed.
func (p *SNPPolicy) check() error {
	for _, h := range []struct {
		name string
		v    string
	}{{"policy_set", p.PolicySet}, {"policy_clear", p.PolicyClear}} {
		if h.v != "" {
			if _, err := parseBits(h.v); err != nil {
				return fmt.Errorf("snp.%s: %w", h.name, err)
			}
		}
	}
	for _, l := range []struct {
		name string
		vals []string
		size int
	}{{"measurement", p.Measurement, 48}, {"host_data", p.HostData, 32}, {"family_id", p.FamilyID, 16}, {"image_id", p.ImageID, 16}} {
		if err := checkHexList("snp."+l.name, l.vals, l.size); err != nil {
			return err
		}
	}
	return nil
}

func (p *TDXPolicy) check() error {
	for _, l := range []struct {
		name string
		vals []string
		size int
	}{{"td_attributes", p.TDAttributes, 8}, {"xfam", p.XFAM, 8}, {"mrtd", p.MRTD, 48}, {"mrconfigid", p.MRConfigID, 48},
		{"mrowner", p.MROwner, 48}, {"mrownerconfig", p.MROwnerConfig, 48},
		{"rtmr0", p.RTMR0, 48}, {"rtmr1", p.RTMR1, 48}, {"rtmr2", p.RTMR2, 48}, {"rtmr3", p.RTMR3, 48}} {
		if err := checkHexList("tdx."+l.name, l.vals, l.size); err != nil {
			return err
		}
	}
	if p.MinTEETCBSVN != "" {
		if err := checkHexList("tdx.min_tee_tcb_svn", []string{p.MinTEETCBSVN}, 16); err != nil {
			return err
		}
	}
	if _, err := tdxverify.AllowedStatuses(p.AllowedTCBStatuses); err != nil {
		return fmt.Errorf("tdx.allowed_tcb_statuses: %w", err)
	}
	return nil
}

func parseBits(s string) (uint64, error) {
	v, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(s), "0x"), 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q is not a hex number", mr.ErrMalformed, s)
	}
	return v, nil
}

func checkHexList(name string, vals []string, size int) error {
	if vals != nil && len(vals) == 0 {
		return fmt.Errorf("%w: policy %s: an empty list allows nothing; leave the member out", mr.ErrMalformed, name)
	}
	for _, v := range vals {
		b, err := hex.DecodeString(v)
		if err != nil || len(b) != size {
			return fmt.Errorf("%w: policy %s: %q is not %d bytes of hex", mr.ErrMalformed, name, v, size)
		}
	}
	return nil
}

// oneOf judges a field against a list of allowed hex values; an absent
// list is not judged.
func oneOf(name string, got []byte, allowed []string, l *LayerResult) error {
	if allowed == nil {
		return nil
	}
	for _, a := range allowed {
		if b, _ := hex.DecodeString(a); bytes.Equal(b, got) {
			l.Checked = append(l.Checked, fmt.Sprintf("policy %s: %s is a reference value", name, hex.EncodeToString(got)))
			return nil
		}
	}
	return &failError{&Failure{Record: -1, Register: name, Expected: allowed[0], Computed: hex.EncodeToString(got),
		Reason: fmt.Sprintf("%s %s is not a reference value of the policy", name, hex.EncodeToString(got))}}
}

// judgeSNP judges a verified SNP report by the policy's snp section. For
// the Azure HCL path (hcl), VMPL 0 and no debugging are required whatever
// the policy says, and a MEASUREMENT reference value must be given: the AK
// it vouches for is only as good as the launch measurement.
func (r *run) judgeSNP(res *snpverify.Result, l *LayerResult, hcl bool) error {
	var p SNPPolicy
	if r.opts.Policy != nil && r.opts.Policy.SNP != nil {
		p = *r.opts.Policy.SNP
	}
	r.markJudged("snp")
	r.platform.snp = provenSNP(res)
	if hcl {
		if p.Measurement == nil {
			return fail("Azure HCL: the policy gives no snp.measurement: the HCL report's AK is trusted only for a launch measurement the policy names")
		}
		p.AllowDebug = false
		zero := uint32(0)
		p.VMPL = &zero
	}
	if res.DebugAllowed {
		if !p.AllowDebug {
			return fail("SNP guest policy allows debugging (bit 19): the host can read and change the guest's memory (a policy may accept it with snp.allow_debug)")
		}
		l.Checked = append(l.Checked, "SNP guest allows debugging, accepted by the policy (snp.allow_debug)")
	}
	if p.VMPL != nil {
		if res.VMPL != *p.VMPL {
			return fail("SNP report from VMPL %d, the policy wants VMPL %d", res.VMPL, *p.VMPL)
		}
		l.Checked = append(l.Checked, fmt.Sprintf("policy snp.vmpl: report from VMPL %d", res.VMPL))
	}
	if m := p.MinTCB; m != nil {
		t := res.ReportedTCBParts
		for _, c := range []struct {
			name      string
			got, want uint8
		}{{"bootloader", t.BlSpl, m.Bootloader}, {"tee", t.TeeSpl, m.TEE}, {"snp", t.SnpSpl, m.SNP}, {"microcode", t.UcodeSpl, m.Microcode}} {
			if c.got < c.want {
				return fail("SNP reported TCB %s SVN %d is below the policy's minimum %d", c.name, c.got, c.want)
			}
		}
		l.Checked = append(l.Checked, fmt.Sprintf("policy snp.min_tcb: reported TCB (bootloader %d, TEE %d, SNP %d, microcode %d) meets the minimum", t.BlSpl, t.TeeSpl, t.SnpSpl, t.UcodeSpl))
	}
	if p.PolicySet != "" || p.PolicyClear != "" {
		set, _ := parseBits(orZero(p.PolicySet))
		clear, _ := parseBits(orZero(p.PolicyClear))
		if res.Policy&set != set || res.Policy&clear != 0 {
			return fail("SNP guest policy %#x: the policy wants bits %#x set and %#x clear", res.Policy, set, clear)
		}
		l.Checked = append(l.Checked, fmt.Sprintf("policy snp.policy_set/policy_clear: guest policy %#x", res.Policy))
	}
	for _, f := range []struct {
		name    string
		got     []byte
		allowed []string
	}{{"snp.measurement", res.Measurement[:], p.Measurement}, {"snp.host_data", res.HostData[:], p.HostData},
		{"snp.family_id", res.FamilyID[:], p.FamilyID}, {"snp.image_id", res.ImageID[:], p.ImageID}} {
		if err := oneOf(f.name, f.got, f.allowed, l); err != nil {
			return err
		}
	}
	return nil
}

func orZero(s string) string {
	if s == "" {
		return "0"
	}
	return s
}

// tdxPolicy is the policy's tdx section, empty without one.
func (r *run) tdxPolicy() TDXPolicy {
	if r.opts.Policy != nil && r.opts.Policy.TDX != nil {
		return *r.opts.Policy.TDX
	}
	return TDXPolicy{}
}

// allowedTCB are the TDX TCB statuses trusted besides UpToDate: the
// options' (--allow-tcb) and the policy's.
func (r *run) allowedTCB() []string {
	return append(append([]string(nil), r.opts.AllowedTCB...), r.tdxPolicy().AllowedTCBStatuses...)
}

// judgeTDX judges a verified TDX quote body by the policy's tdx section.
// For the Azure HCL path (hcl), MRTD and RTMR0..3 reference values must be
// given: the AK the TD vouches for is only as good as its launch
// measurement.
func (r *run) judgeTDX(b *tdxverify.TDReport, l *LayerResult, hcl bool) error {
	r.markJudged("tdx")
	r.platform.tdx = provenTDX(b)
	p := r.tdxPolicy()
	if hcl && (p.MRTD == nil || p.RTMR0 == nil || p.RTMR1 == nil || p.RTMR2 == nil || p.RTMR3 == nil) {
		return fail("Azure HCL: the policy does not give tdx.mrtd and tdx.rtmr0..rtmr3: the HCL report's AK is trusted only for a launch measurement the policy names")
	}
	if p.MinTEETCBSVN != "" {
		min, _ := hex.DecodeString(p.MinTEETCBSVN)
		for i, m := range min {
			if b.TeeTCBSVN[i] < m {
				return fail("TDX TEE_TCB_SVN %x: byte %d is %d, below the policy's minimum %x", b.TeeTCBSVN, i, b.TeeTCBSVN[i], min)
			}
		}
		l.Checked = append(l.Checked, fmt.Sprintf("policy tdx.min_tee_tcb_svn: TEE_TCB_SVN %x meets the minimum", b.TeeTCBSVN))
	}
	for _, f := range []struct {
		name    string
		got     []byte
		allowed []string
	}{{"tdx.td_attributes", b.TDAttributes[:], p.TDAttributes}, {"tdx.xfam", b.XFAM[:], p.XFAM}, {"tdx.mrtd", b.MRTD[:], p.MRTD},
		{"tdx.mrconfigid", b.MRConfigID[:], p.MRConfigID}, {"tdx.mrowner", b.MROwner[:], p.MROwner}, {"tdx.mrownerconfig", b.MROwnerConfig[:], p.MROwnerConfig},
		{"tdx.rtmr0", b.RTMR[0][:], p.RTMR0}, {"tdx.rtmr1", b.RTMR[1][:], p.RTMR1}, {"tdx.rtmr2", b.RTMR[2][:], p.RTMR2}, {"tdx.rtmr3", b.RTMR[3][:], p.RTMR3}} {
		if err := oneOf(f.name, f.got, f.allowed, l); err != nil {
			return err
		}
	}
	return nil
}

// checkPlatform refuses a malformed snp or tdx section when the policy is
// read.
func (p *Policy) checkPlatform() error {
	if p.SNP != nil {
		if err := p.SNP.check(); err != nil {
			return err
		}
	}
	if p.TDX != nil {
		if err := p.TDX.check(); err != nil {
			return err
		}
	}
	return nil
}

func (r *run) markJudged(section string) {
	if r.judged == nil {
		r.judged = map[string]bool{}
	}
	r.judged[section] = true
}

// platformSectionsJudged fails when the policy has an snp or tdx section
// that the evidence gave nothing to judge (a TDX quote against an snp
// section, a pinned AK that short-cut the Azure HCL report): a policy
// member that cannot be evaluated never passes.
func (r *run) platformSectionsJudged() error {
	p := r.opts.Policy
	if p == nil {
		return nil
	}
	if p.SNP != nil && !r.judged["snp"] {
		return fail("the policy has an snp section but no SNP report was verified to judge it")
	}
	if p.TDX != nil && !r.judged["tdx"] {
		return fail("the policy has a tdx section but no TDX quote was verified to judge it")
	}
	return nil
}
