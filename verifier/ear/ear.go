// Package ear writes the verifier's verdict as an EAT Attestation Result
// (EAR, IETF RATS draft-fv-rats-ear, the form Veraison and Trustee emit): a
// JWT whose one submodule carries ear.status, the AR4SI trustworthiness
// vector that ccmr's layers support, the appraisal policy's digest and, as
// the extension ear.ccmr.verify-report, the whole ccmr-verify-report/v1.
//
// The mapping from layers to claims is in docs/interop.md ("EAR"). It claims
// only what a passed layer proved: a claim the verifier cannot support is
// left out (AR4SI's "no claim"), never given a hopeful value.
package ear

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier"
)

// Profile is the EAT profile of the results: the one draft-fv-rats-ear
// defines and Veraison's ear library (and so Trustee) checks.
const Profile = "tag:github.com,2023:veraison/ear"

// ReportClaim is the claim of an appraisal that carries ccmr's own report
// (layers checked, not checked, the failure): a ccmr extension, as the
// draft's ear.veraison.* claims are Veraison's.
const ReportClaim = "ear.ccmr.verify-report"

// Status is an appraisal's ear.status: the AR4SI trust tier.
type Status string

// Trust tiers, as the draft names them.
const (
	StatusNone            Status = "none"
	StatusAffirming       Status = "affirming"
	StatusWarning         Status = "warning"
	StatusContraindicated Status = "contraindicated"
)

// Claim is one trustworthiness claim's value (AR4SI §2.3): 0 is no claim,
// 2..31 affirming, 32..95 warning, 96..127 contraindicated.
type Claim int8

// The claim values ccmr gives, with AR4SI's meanings.
const (
	NoClaim Claim = 0
	// Affirming values: for instance-identity a recognized instance, for
	// configuration an approved one, for executables an approved boot-
	// and run-time, for hardware genuine, for runtime-opaque encrypted
	// memory.
	Affirming Claim = 2
	// ApprovedBoot (executables): only approved executables were loaded
	// during boot; nothing is said of run time.
	ApprovedBoot Claim = 3
	// UnsafeHardware (hardware): genuine, but with known vulnerabilities
	// (a TCB status other than UpToDate was allowed).
	UnsafeHardware Claim = 32
	// Contraindicated: for configuration unsupportable, for executables
	// contraindicated run-time (a value the policy does not allow).
	Contraindicated Claim = 96
	// CryptoFailed: cryptographic validation of the evidence failed.
	CryptoFailed Claim = 99
)

// TrustVector is ear.trustworthiness-vector. Claims ccmr never makes
// (file-system, storage-opaque, sourced-data) are absent.
type TrustVector struct {
	InstanceIdentity Claim `json:"instance-identity,omitempty"`
	Configuration    Claim `json:"configuration,omitempty"`
	Executables      Claim `json:"executables,omitempty"`
	Hardware         Claim `json:"hardware,omitempty"`
	RuntimeOpaque    Claim `json:"runtime-opaque,omitempty"`
}

// VerifierID is ear.verifier-id (AR4SI §2.2.2).
type VerifierID struct {
	Build     string `json:"build"`
	Developer string `json:"developer"`
}

// Appraisal is one submodule's result.
type Appraisal struct {
	Status      Status      `json:"ear.status"`
	TrustVector TrustVector `json:"ear.trustworthiness-vector"`
	// PolicyID names the policy the appraisal judged against:
	// "sha256:HEX", the policy's digest (verifier.Policy.Digest).
	PolicyID string           `json:"ear.appraisal-policy-id,omitempty"`
	Report   *verifier.Report `json:"ear.ccmr.verify-report"`
}

// Result is the EAR claims set: the JWT's payload.
type Result struct {
	Profile    string     `json:"eat_profile"`
	IssuedAt   int64      `json:"iat"`
	VerifierID VerifierID `json:"ear.verifier-id"`
	// Nonce is the verified nonce, base64url without padding, present
	// only when layer 0 proved the evidence binds it and it has EAT's 8
	// to 64 bytes.
	Nonce   string                `json:"eat_nonce,omitempty"`
	Submods map[string]*Appraisal `json:"submods"`
}

// Developer is the ear.verifier-id developer of every ccmr result.
const Developer = "https://github.com/ccmr-dev/ccmr"

// New maps a verification to an EAR. b is the bundle verified, opts the
// options it was verified with, build the ccmr build (its version), and
// now the issuing time. The submodule is named for the platform.
func New(b *bundle.Bundle, rep *verifier.Report, opts verifier.Options, build string, now time.Time) (*Result, error) {
	if rep == nil || b == nil {
		return nil, errors.New("ear: no report to state")
	}
	if len(rep.Layers) != verifier.LayerPolicy+1 {
		// The mapping is by layer number: a report of another shape
		// would be stated wrong, so none is made.
		return nil, fmt.Errorf("ear: report has %d layers, want %d", len(rep.Layers), verifier.LayerPolicy+1)
	}
	a := &Appraisal{Status: status(rep), TrustVector: vector(b, rep, opts), Report: rep}
	if p := opts.Policy; p != nil && !p.Digest.IsZero() {
		a.PolicyID = p.Digest.String()
	}
	res := &Result{
		Profile:    Profile,
		IssuedAt:   now.Unix(),
		VerifierID: VerifierID{Build: "ccmr " + build, Developer: Developer},
		Submods:    map[string]*Appraisal{submod(rep.Platform): a},
	}
	if rep.Layers[verifier.LayerEvidence].Status == verifier.Pass {
		// EAT's nonce is 8 to 64 bytes, base64url in JSON; one outside
		// those bounds is not stated (Veraison's library refuses the
		// token), and the relying party that sent it must not find it.
		if n := nonce(opts); len(n) >= 8 && len(n) <= 64 {
			res.Nonce = base64.RawURLEncoding.EncodeToString(n)
		}
	}
	return res, nil
}

// status maps the verdict: TRUSTED is affirming, a weakened TRUSTED a
// warning (a check did not prove what it normally proves), anything else
// contraindicated. A report that says trusted with a failed layer is
// contradictory and states contraindicated.
func status(rep *verifier.Report) Status {
	switch {
	case !rep.Trusted || rep.FailedLayer() >= 0:
		return StatusContraindicated
	case len(rep.Weakened) > 0:
		return StatusWarning
	default:
		return StatusAffirming
	}
}

// confidential says whether layer 0 verified confidential-computing
// hardware: a TDX quote, an SNP report, or a TPM whose AK an Azure HCL
// report vouches for (the verifier verifies a bundle's HCL report whenever
// it carries one, or fails).
func confidential(b *bundle.Bundle, platform string) bool {
	switch mr.Platform(platform) {
	case mr.PlatformTDX, mr.PlatformSNP:
		return true
	case mr.PlatformTPM:
		return len(b.Evidence.AzureHCLReport) > 0
	}
	return false
}

// vector maps the layers to AR4SI claims (docs/interop.md, "EAR").
func vector(b *bundle.Bundle, rep *verifier.Report, opts verifier.Options) TrustVector {
	var v TrustVector
	l0 := rep.Layers[verifier.LayerEvidence]
	hw := confidential(b, rep.Platform)
	// instance-identity: only a key that belongs to one machine (a pinned
	// TPM AK, an AK certificate, a pinned sim key) names an instance; a
	// TDX or SNP signing key is the platform's, shared by its guests.
	instance := mr.Platform(rep.Platform) == mr.PlatformTPM || mr.Platform(rep.Platform) == mr.PlatformSim
	switch l0.Status {
	case verifier.Fail:
		if instance {
			v.InstanceIdentity = CryptoFailed
		}
		if hw {
			v.Hardware = CryptoFailed
		}
		if !instance && !hw {
			v.Hardware = CryptoFailed
		}
		return v
	case verifier.Skip:
		return v
	}
	if instance {
		v.InstanceIdentity = Affirming
	}
	if hw {
		v.Hardware = Affirming
		if tcbAllowed(rep) {
			v.Hardware = UnsafeHardware
		}
		v.RuntimeOpaque = Affirming
	}
	if p := opts.Policy; p != nil && (p.SNP != nil || p.TDX != nil) {
		// Layer 0 judged the platform fields (debug, VMPL, TCB SVNs,
		// attributes) against the policy's snp or tdx section.
		v.Configuration = Affirming
	}
	for _, n := range []int{verifier.LayerLogs, verifier.LayerVirtual, verifier.LayerApp} {
		if rep.Layers[n].Status == verifier.Fail {
			// A log that does not replay to the signed registers:
			// what ran cannot be validated.
			v.Executables = CryptoFailed
			return v
		}
	}
	switch rep.Layers[verifier.LayerPolicy].Status {
	case verifier.Fail:
		v.Executables = Contraindicated
	case verifier.Pass:
		if !logsWeakened(rep) {
			v.Executables = executables(opts.Policy)
		}
	}
	return v
}

// logsWeakened says whether layer 1, 2 or 3 passed only weakened (history
// never judged, a resettable register, events taken on trust): what ran
// was then not all seen, so no executables claim is supported.
func logsWeakened(rep *verifier.Report) bool {
	for _, n := range []int{verifier.LayerLogs, verifier.LayerVirtual, verifier.LayerApp} {
		for _, c := range rep.Layers[n].NotChecked {
			if strings.HasPrefix(c, "weakened: ") {
				return true
			}
		}
	}
	return false
}

// executables is the claim a passed policy layer supports: approved run
// time when the policy judged what ran after boot (IMA entries, virtual
// registers, the IMA or runtime registers), approved boot when it pinned
// only other registers, no claim without a policy.
func executables(p *verifier.Policy) Claim {
	if p == nil {
		return NoClaim
	}
	if p.Runtime != nil || len(p.IMAKeys) > 0 || !p.Aggregate.IsZero() {
		return Affirming
	}
	if len(p.Registers) == 0 {
		return NoClaim
	}
	for name := range p.Registers {
		if runtimeRegister(name) {
			return Affirming
		}
	}
	return ApprovedBoot
}

// runtimeRegister says whether a register holds measurements made after
// boot: a virtual register, TPM PCR 10 (IMA), TDX RTMR3 (the runtime
// register the kernel and ccmr extend).
func runtimeRegister(name string) bool {
	return mr.IsVirtualName(name) || name == "pcr10" || name == "rtmr3"
}

// tcbAllowed says whether the verdict was weakened by an allowed TCB status
// below UpToDate (verifier/hardware.go's tcbStatus).
func tcbAllowed(rep *verifier.Report) bool {
	for _, w := range rep.Weakened {
		if len(w) >= len(tcbPrefix) && w[:len(tcbPrefix)] == tcbPrefix {
			return true
		}
	}
	return false
}

const tcbPrefix = "TDX TCB status "

func nonce(opts verifier.Options) []byte {
	if len(opts.Nonce) > 0 {
		return opts.Nonce
	}
	if opts.Policy != nil {
		return opts.Policy.Nonce
	}
	return nil
}

// submod names the appraisal after the platform; a report without one
// (which the verifier does not make) is "ccmr".
func submod(platform string) string {
	if platform == "" {
		return "ccmr"
	}
	return platform
}
