package verifier

import (
	"crypto"
	"errors"

	"github.com/ccmr-dev/ccmr/verifier/azure"
	"github.com/ccmr-dev/ccmr/verifier/snpverify"
)

// trustAKByHCL trusts the TPM AK of an Azure confidential VM through its HCL
// report: hardware report (SNP report with the bundle's VCEK/VLEK, or TD
// report bound by the TD quote in evidence.report) → report data =
// hash(HCL runtime data) → HCLAkPub → the AK. Every link verified or not
// is listed in layer 0; the first that breaks is named in the failure. The
// hardware report's values (SNP measurement, TDX mrtd/rtmrs, ...) become
// trusted registers for the policy.
//
// The path is taken only when asked for (Options.AzureHCL): any SNP or TDX
// guest chooses its report data, so it can wrap a software AK of its own
// in runtime data. The hardware report must therefore come from the launch
// the policy names (snp.measurement, at VMPL 0 and without debugging; or
// tdx.mrtd and tdx.rtmr0..rtmr3), judged here before the AK is trusted.
func (r *run) trustAKByHCL(ak crypto.PublicKey) (string, error) {
	l := &r.rep.Layers[LayerEvidence]
	coll := r.opts.TDXCollateral
	if coll == nil && r.b.Collateral != nil {
		coll = r.b.Collateral.TDX
	}
	res, err := azure.Verify(r.b.Evidence.AzureHCLReport, ak, azure.Options{
		At:            r.opts.At,
		Certificates:  r.b.Evidence.Certificates,
		TDQuote:       r.b.Evidence.Report,
		TDXCollateral: coll,
		AllowedTCB:    r.allowedTCB(),
		SNP:           snpverify.Options{CRL: r.opts.SNPCRL},
	})
	if res != nil {
		l.Checked = append(l.Checked, res.Checked...)
		l.NotChecked = append(l.NotChecked, res.NotChecked...)
	}
	if err != nil {
		var ce *azure.ChainError
		if errors.As(err, &ce) {
			return "", fail("%v", err)
		}
		// The bundle was readable; an HCL report that does not parse fails
		// layer 0 like a quote that does not parse.
		return "", fail("Azure HCL report: %v", err)
	}
	switch {
	case res.SNP != nil:
		r.snpRevocation(res.SNP, l)
		if err := r.judgeSNP(res.SNP, l, true); err != nil {
			return "", err
		}
	case res.TDX != nil:
		if err := r.needCollateral(coll, l); err != nil {
			return "", err
		}
		r.tcbStatus(res.TDX, l)
		if err := r.judgeTDX(&res.TDX.Body, l, true); err != nil {
			return "", err
		}
	default:
		return "", fail("Azure HCL report: no verified hardware report")
	}
	for _, v := range res.Registers {
		r.trusted[regKey{v.Register.Name, v.Digest.Alg}] = v.Digest
	}
	return "AK is HCLAkPub of the Azure HCL report, bound to the verified " + string(res.Platform) + " hardware report", nil
}
