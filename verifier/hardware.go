package verifier

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"

	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/simverify"
	"github.com/ccmr-dev/ccmr/verifier/snpverify"
	"github.com/ccmr-dev/ccmr/verifier/tdxverify"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
)

// Layer-0 checks shared by the TPM path: which keys may vouch for a TPM
// quote, what an AK certificate must look like, and that the quotes of one
// bundle come from one boot.

// notSimKey refuses a TPM AK that is one of the pinned sim keys: a sim
// device's key is a software key whose holder can sign any TPMS_ATTEST, so
// it never vouches for a TPM quote.
func (r *run) notSimKey(ak crypto.PublicKey) error {
	type equaler interface{ Equal(x crypto.PublicKey) bool }
	e, ok := ak.(equaler)
	if !ok {
		return nil
	}
	for _, k := range r.opts.SimKeys {
		if sk, err := simverify.ParsePublicKey(k); err == nil && e.Equal(sk) {
			return fail("the TPM quote's AK is a pinned sim key: a software key never vouches for a TPM quote")
		}
	}
	return nil
}

// TCG key purposes (TCG EK Credential Profile, TCG AK certificate
// profile): every extended key usage of an AK certificate must be one of
// them. GCE's AK certificates carry tcg-kp-EKCertificate (2.23.133.8.1);
// the AK profile's own is tcg-kp-AIKCertificate (2.23.133.8.3).
var tcgKeyPurpose = asn1.ObjectIdentifier{2, 23, 133, 8}

// akProfile checks that a certificate that chains to the AK roots certifies
// an attestation key, not any key a broad CA bundle vouches for: it is not
// a CA, its key usage allows signing (digitalSignature) and not certificate
// signing, and its extended key usages, if any, are TCG key purposes only
// (no TLS server or client, code signing, e-mail or any-purpose usage).
func akProfile(c *x509.Certificate) error {
	if c.BasicConstraintsValid && c.IsCA {
		return errors.New("it is a CA certificate")
	}
	if c.KeyUsage == 0 {
		return errors.New("it has no key usage (an AK certificate has digitalSignature)")
	}
	if c.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return errors.New("its key usage does not include digitalSignature")
	}
	if c.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		return errors.New("its key usage includes certificate or CRL signing")
	}
	if len(c.ExtKeyUsage) > 0 {
		return fmt.Errorf("it has the extended key usage %v, not a TCG key purpose", c.ExtKeyUsage)
	}
	for _, o := range c.UnknownExtKeyUsage {
		if len(o) <= len(tcgKeyPurpose) || !o[:len(tcgKeyPurpose)].Equal(tcgKeyPurpose) {
			return fmt.Errorf("it has the extended key usage %v, not a TCG key purpose (2.23.133.8.*)", o)
		}
	}
	return nil
}

// sameBoot requires the quotes of one bundle to be one per bank and from
// one boot of one TPM: equal resetCount, restartCount and firmware version
// (TPMS_CLOCK_INFO, TPMS_ATTEST). Otherwise a sha1 quote of one boot and a
// sha256 quote of the next, same AK and nonce, would make one verdict over
// registers that never held together.
func sameBoot(quotes []mr.TPMQuote) error {
	var first *tpmverify.QuoteInfo
	banks := map[mr.Alg]bool{}
	for _, q := range quotes {
		if banks[q.Alg] {
			return fail("two TPM quotes of the %v bank: one quote per bank", q.Alg)
		}
		banks[q.Alg] = true
		info, err := tpmverify.ParseQuoteInfo(q.Attest)
		if err != nil {
			return fail("tpm quote of the %v bank: %v", q.Alg, err)
		}
		if first == nil {
			first = info
			continue
		}
		if info.ResetCount != first.ResetCount || info.RestartCount != first.RestartCount || info.FirmwareVersion != first.FirmwareVersion {
			return fail("TPM quotes from different boots: the %v quote has resetCount %d, restartCount %d, firmware %#x; the %v quote %d, %d, %#x",
				q.Alg, info.ResetCount, info.RestartCount, info.FirmwareVersion, quotes[0].Alg, first.ResetCount, first.RestartCount, first.FirmwareVersion)
		}
	}
	return nil
}

// needCollateral fails a TDX quote verified without Intel's collateral:
// without it the platform's TCB level, the QE identity and revocation are
// unknown, and a platform below every TCB level would pass. An explicit
// opt-in makes it a weakened pass.
func (r *run) needCollateral(coll []byte, l *LayerResult) error {
	if len(coll) > 0 {
		return nil
	}
	if !r.opts.AllowMissingCollateral {
		return fail("TDX quote without TCB collateral (--collateral, or the bundle's): its TCB level, QE identity and revocation cannot be checked (--allow-missing-collateral accepts it, weakened)")
	}
	r.weaken(l, "no TCB collateral: TCB level, QE identity and revocation not checked")
	return nil
}

// snpRevocation says on the verdict when an SNP report's chain was not
// checked against AMD's CRL (--snp-crl): the VCEK's TCB is judged against
// the report either way, but a revoked ASK or VCEK would pass.
func (r *run) snpRevocation(res *snpverify.Result, l *LayerResult) {
	if !res.RevocationChecked {
		r.weaken(l, "no AMD CRL: revocation of the AMD intermediate and the "+res.Signer+" not checked")
	}
}

// tcbStatus says on the verdict when a TDX platform passed with a TCB
// status other than UpToDate, allowed by --allow-tcb or the policy's
// tdx.allowed_tcb_statuses: the platform then lacks fixes Intel lists.
func (r *run) tcbStatus(res *tdxverify.Result, l *LayerResult) {
	if res.TCBStatus == "" || res.TCBStatus == tdxverify.StatusUpToDate {
		return
	}
	why := "TDX TCB status " + res.TCBStatus + " allowed (--allow-tcb or the policy)"
	if len(res.Advisories) > 0 {
		why += ", advisories " + strings.Join(res.Advisories, ",")
	}
	r.weaken(l, why)
}
