package verifier

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/mr"
)

// Policy is what layer 4 judges against (docs/policy.md).
type Policy struct {
	// Registers maps a register name (rtmr1, pcr7, mr_ima) to the values it
	// may hold; a TPM PCR may be given in several banks.
	Registers map[string][]mr.Digest
	// Nonce is the expected nonce, when the policy fixes one.
	Nonce []byte
	// Runtime is Keylime's runtime policy: file reference digests and
	// excluded paths, checked against every proven IMA entry.
	Runtime *RuntimePolicy
	// Aggregate is the expected order-independent aggregate of the proven
	// IMA entries (ima.Aggregate, `ccmr ima aggregate`).
	Aggregate mr.Digest
	// IMAKeys verify the signatures of proven IMA entries (ima-sig,
	// ima-modsig); RequireSignatures makes an unsigned file entry fail.
	IMAKeys           []ima.Key
	RequireSignatures bool
	// AllowDuplicateSeparator accepts a firmware log with a second
	// EV_SEPARATOR on one register (some OVMF builds write one); by
	// default it fails layer 1.
	AllowDuplicateSeparator bool
	// SNP and TDX judge the hardware report's platform fields in layer 0
	// (platform_policy.go).
	SNP *SNPPolicy
	TDX *TDXPolicy
	// MeasuredBoot lists the allowed firmware events per register,
	// judged in layer 4 (policy_boot.go).
	MeasuredBoot *MeasuredBootPolicy
	// Digest is the SHA-256 of the policy and every file it references,
	// set by ParsePolicy; a monitor state binds its entries to it.
	Digest mr.Digest
}

type policyJSON struct {
	Registers map[string]json.RawMessage `json:"registers"`
	Nonce     string                     `json:"nonce"`
	IMA       *struct {
		// RuntimePolicy is a Keylime runtime-policy file, relative to the
		// policy file.
		RuntimePolicy string          `json:"runtime_policy"`
		Keylime       json.RawMessage `json:"keylime"`
		Aggregate     string          `json:"aggregate"`
		// Keys are files (relative to the policy file) of public keys or
		// certificates for ima-sig signatures.
		Keys              []string `json:"keys"`
		RequireSignatures bool     `json:"require_signatures"`
		// RuntimePolicyKey and AllowViolations: keylime_policy.go.
		RuntimePolicyKey string `json:"runtime_policy_key"`
		AllowViolations  bool   `json:"allow_violations"`
	} `json:"ima"`
	AllowDuplicateSeparator bool `json:"allow_duplicate_separator"`

	// Platform sections, judged in layer 0 (platform_policy.go).
	SNP *SNPPolicy `json:"snp"`
	TDX *TDXPolicy `json:"tdx"`

	// MeasuredBoot is judged in layer 4 (policy_boot.go).
	MeasuredBoot *MeasuredBootPolicy `json:"measured_boot"`
}

// LoadPolicy reads a policy file.
func LoadPolicy(path string) (*Policy, error) {
	return loadPolicy(path, nil)
}

func loadPolicy(path string, keylimeKey []byte) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := parsePolicy(b, filepath.Dir(path), keylimeKey)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// ParsePolicy parses a policy; dir resolves a relative runtime_policy path.
func ParsePolicy(b []byte, dir string) (*Policy, error) {
	return parsePolicy(b, dir, nil)
}

func parsePolicy(b []byte, dir string, keylimeKey []byte) (*Policy, error) {
	var pj policyJSON
	if err := strictJSONValue(b, &pj, "policy"); err != nil {
		return nil, err
	}
	p := &Policy{Registers: map[string][]mr.Digest{}, AllowDuplicateSeparator: pj.AllowDuplicateSeparator}
	p.SNP, p.TDX = pj.SNP, pj.TDX
	if err := p.checkPlatform(); err != nil {
		return nil, err
	}
	if p.MeasuredBoot = pj.MeasuredBoot; p.MeasuredBoot != nil {
		if err := p.MeasuredBoot.check(); err != nil {
			return nil, err
		}
	}
	for name, raw := range pj.Registers {
		var list []string
		var one string
		if err := json.Unmarshal(raw, &one); err == nil {
			list = []string{one}
		} else if err := json.Unmarshal(raw, &list); err != nil {
			return nil, fmt.Errorf("%w: policy register %s: want \"ALG:HEX\" or a list of them", mr.ErrMalformed, name)
		}
		if len(list) == 0 {
			// An empty list would judge nothing and pass.
			return nil, fmt.Errorf("%w: policy register %s lists no value", mr.ErrMalformed, name)
		}
		for _, s := range list {
			d, err := mr.ParseDigest(s)
			if err != nil {
				return nil, fmt.Errorf("policy register %s: %w", name, err)
			}
			p.Registers[name] = append(p.Registers[name], d)
		}
	}
	if pj.Nonce != "" {
		n, err := hex.DecodeString(pj.Nonce)
		if err != nil {
			return nil, fmt.Errorf("%w: policy nonce: %v", mr.ErrMalformed, err)
		}
		p.Nonce = n
	}
	if pj.IMA != nil && pj.IMA.RequireSignatures && len(pj.IMA.Keys) == 0 {
		// Without keys no signature is checked: the member would judge nothing.
		return nil, fmt.Errorf("%w: policy ima.require_signatures needs ima.keys", mr.ErrMalformed)
	}
	if pj.IMA != nil && len(pj.IMA.Keys) > 0 {
		var files []string
		for _, k := range pj.IMA.Keys {
			if !filepath.IsAbs(k) {
				k = filepath.Join(dir, k)
			}
			files = append(files, k)
		}
		keys, err := ima.LoadKeys(files...)
		if err != nil {
			return nil, fmt.Errorf("policy ima keys: %w", err)
		}
		p.IMAKeys, p.RequireSignatures = keys, pj.IMA.RequireSignatures
	}
	if pj.IMA != nil && pj.IMA.Aggregate != "" {
		d, err := mr.ParseDigest(pj.IMA.Aggregate)
		if err != nil {
			return nil, fmt.Errorf("policy ima aggregate: %w", err)
		}
		p.Aggregate = d
	}
	if pj.IMA != nil {
		raw := []byte(pj.IMA.Keylime)
		if raw != nil && pj.IMA.RuntimePolicy != "" {
			return nil, fmt.Errorf("%w: policy ima: runtime_policy and keylime are both given", mr.ErrMalformed)
		}
		if pj.IMA.RuntimePolicy != "" {
			f := pj.IMA.RuntimePolicy
			if !filepath.IsAbs(f) {
				f = filepath.Join(dir, f)
			}
			var err error
			if raw, err = os.ReadFile(f); err != nil {
				return nil, fmt.Errorf("policy runtime_policy: %w", err)
			}
		}
		if raw != nil {
			// A keylime member that is null or not an object is refused
			// by ParseRuntimePolicy, never read as an empty policy.
			rp, err := parseKeylimeMember(raw, pj.IMA.RuntimePolicyKey, pj.IMA.AllowViolations, dir, keylimeKey)
			if err != nil {
				return nil, err
			}
			p.Runtime = rp
		}
		if err := checkKeylimeOnly(pj.IMA.RuntimePolicyKey, pj.IMA.AllowViolations, raw != nil, keylimeKey); err != nil {
			return nil, err
		}
	} else if err := checkKeylimeOnly("", false, false, keylimeKey); err != nil {
		return nil, err
	}
	d, err := policyDigest(b, dir, &pj)
	if err != nil {
		return nil, err
	}
	p.Digest = d
	return p, nil
}
