package main

import (
	"crypto/x509"
	"os"

	"github.com/ccmr-dev/ccmr/verifier"
	"github.com/ccmr-dev/ccmr/verifier/simverify"
	"github.com/ccmr-dev/ccmr/verifier/snpverify"
	"github.com/ccmr-dev/ccmr/verifier/tdxverify"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
)

// loadTrust reads the trust material verify, evidence show and policy
// create name (--trust-ak, --trust-sim-key, --snp-crl, --ak-roots) into o.
// A file that holds no key, no CRL or no certificate would pin nothing:
// it is refused (exit 2) rather than verified without.
func loadTrust(o *verifier.Options, trustKeys, simKeys []string, snpCRL, roots string) error {
	for _, k := range trustKeys {
		pem, err := os.ReadFile(k)
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		if err := onePEMKey(pem, tpmverify.ParseAKPublic); err != nil {
			return usageError("--trust-ak %s: %v", k, err)
		}
		o.TrustedKeys = append(o.TrustedKeys, pem)
	}
	for _, k := range simKeys {
		pem, err := os.ReadFile(k)
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		if err := onePEMKey(pem, func(b []byte) (any, error) { return simverify.ParsePublicKey(b) }); err != nil {
			return usageError("--trust-sim-key %s: %v", k, err)
		}
		o.SimKeys = append(o.SimKeys, pem)
	}
	if snpCRL != "" {
		var err error
		if o.SNPCRL, err = os.ReadFile(snpCRL); err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		if _, err := snpverify.ParseCRL(o.SNPCRL); err != nil {
			return usageError("--snp-crl %s: %v", snpCRL, err)
		}
	}
	if roots != "" {
		pem, err := os.ReadFile(roots)
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		o.AKRoots = x509.NewCertPool()
		if !o.AKRoots.AppendCertsFromPEM(pem) {
			// Google publishes its EK/AK CA certificates as DER.
			c, err := x509.ParseCertificate(pem)
			if err != nil {
				return usageError("--ak-roots %s: no PEM certificate, nor one DER certificate: %v", roots, err)
			}
			o.AKRoots.AddCert(c)
		}
	}
	return nil
}

// loadTDXTrust reads --collateral (Intel PCS QuoteCollateralV3 JSON, checked
// to parse) into o and checks the --allow-tcb statuses, as every command
// that takes them does.
func loadTDXTrust(o *verifier.Options, collateral string, allowTCB []string) error {
	if collateral != "" {
		var err error
		if o.TDXCollateral, err = os.ReadFile(collateral); err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		if _, err := tdxverify.ParseCollateral(o.TDXCollateral); err != nil {
			return usageError("--collateral %s: %v", collateral, err)
		}
	}
	if _, err := tdxverify.AllowedStatuses(allowTCB); err != nil {
		return usageError("--allow-tcb: %v", err)
	}
	o.AllowedTCB = allowTCB
	return nil
}
