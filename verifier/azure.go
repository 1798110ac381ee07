package verifier

import "crypto"

// trustAKByHCL trusts the TPM AK of an Azure confidential VM through its HCL
// report: hardware report → report data = sha256(HCL runtime data) →
// HCLAkPub → the AK. Not implemented yet: it fails, naming the gap.
func (r *run) trustAKByHCL(ak crypto.PublicKey) (string, error) {
	return "", fail("Azure HCL report: the vTPM-on-CVM chain is not verified by this build")
}
