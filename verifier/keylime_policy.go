package verifier

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/ccmr-dev/ccmr/mr"
)

// LoadPolicyKeylimeKey reads a policy file whose Keylime runtime policy is
// a DSSE envelope signed by keyPEM (`ccmr verify --keylime-key`): the
// envelope is verified before the policy is used, and a runtime policy
// that is not signed is refused.
func LoadPolicyKeylimeKey(path string, keyPEM []byte) (*Policy, error) {
	if len(keyPEM) == 0 {
		return nil, fmt.Errorf("%w: the Keylime runtime policy signing key is empty", mr.ErrMalformed)
	}
	return loadPolicy(path, keyPEM)
}

// parseKeylimeMember reads the verification policy's Keylime runtime
// policy (ima.runtime_policy or ima.keylime). With a signing key (the
// CLI's, or the file ima.runtime_policy_key names, relative to dir; not
// both) it must be a DSSE envelope that key signed; without one it must
// not be an envelope. allowViolations is ima.allow_violations.
func parseKeylimeMember(raw []byte, keyFile string, allowViolations bool, dir string, cliKey []byte) (*RuntimePolicy, error) {
	key := cliKey
	if keyFile != "" {
		if cliKey != nil {
			return nil, fmt.Errorf("%w: policy ima.runtime_policy_key and a Keylime signing key on the command line are both given", mr.ErrMalformed)
		}
		if !filepath.IsAbs(keyFile) {
			keyFile = filepath.Join(dir, keyFile)
		}
		var err error
		if key, err = os.ReadFile(keyFile); err != nil {
			return nil, fmt.Errorf("policy ima.runtime_policy_key: %w", err)
		}
	}
	var rp *RuntimePolicy
	if key != nil {
		k, err := ParseDSSEKey(key)
		if err != nil {
			return nil, err
		}
		if rp, err = ParseSignedRuntimePolicy(raw, k); err != nil {
			return nil, err
		}
	} else {
		var err error
		if rp, err = ParseRuntimePolicy(raw); err != nil {
			return nil, err
		}
	}
	rp.allowViolations = allowViolations
	return rp, nil
}

// checkKeylimeOnly refuses the Keylime members of the verification policy
// (and a signing key) when there is no runtime policy: they would judge
// nothing.
func checkKeylimeOnly(keyFile string, allowViolations, haveRuntime bool, cliKey []byte) error {
	if haveRuntime {
		return nil
	}
	switch {
	case keyFile != "":
		return fmt.Errorf("%w: policy ima.runtime_policy_key without a runtime policy", mr.ErrMalformed)
	case allowViolations:
		return fmt.Errorf("%w: policy ima.allow_violations without a runtime policy", mr.ErrMalformed)
	case cliKey != nil:
		return fmt.Errorf("%w: a Keylime runtime policy signing key is given, but the policy has no runtime policy", mr.ErrMalformed)
	}
	return nil
}
