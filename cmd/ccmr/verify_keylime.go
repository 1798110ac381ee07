package main

import (
	"fmt"
	"os"

	"github.com/ccmr-dev/ccmr/verifier"
)

// loadPolicyKeylimeKey reads the policy with `--keylime-key`: its Keylime
// runtime policy must be a DSSE envelope that key signed.
func loadPolicyKeylimeKey(policyFile, keyFile string) (*verifier.Policy, error) {
	if policyFile == "" {
		return nil, fmt.Errorf("--keylime-key needs --policy (the policy whose runtime policy it signed)")
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("--keylime-key: %w", err)
	}
	return verifier.LoadPolicyKeylimeKey(policyFile, key)
}
