package verifier

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/cvmreport"
	"github.com/ccmr-dev/ccmr/verifier/simverify"
	"github.com/ccmr-dev/ccmr/verifier/snpverify"
	"github.com/ccmr-dev/ccmr/verifier/tdxverify"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
)

// ---- layer 0: evidence -------------------------------------------------

func (r *run) evidence(ctx context.Context, l *LayerResult) error {
	ev, err := r.b.MREvidence()
	if err != nil {
		return err
	}
	// The expected nonce is checked against what the hardware signed (a
	// quote's qualifying data, a report's REPORTDATA), never against the
	// bundle's own nonce field: that field is the importer's reading of
	// the evidence, and only reports (see checkBundleNonce).
	want := r.opts.Nonce
	if want == nil && r.opts.Policy != nil {
		want = r.opts.Policy.Nonce
	}
	switch r.b.Platform {
	case mr.PlatformSim:
		if err := r.simEvidence(ev, l); err != nil {
			return err
		}
		// The sim statement signs the bundle's nonce.
		if want != nil && !bytes.Equal(want, r.b.Nonce) {
			return &failError{&Failure{Record: -1, Reason: "nonce differs from the expected one", Expected: hex.EncodeToString(want), Computed: hex.EncodeToString(r.b.Nonce)}}
		}
	case mr.PlatformTPM:
		if err := r.tpmEvidence(ev, l, want); err != nil {
			return err
		}
	case mr.PlatformTDX:
		if err := r.tdxEvidence(l, want); err != nil {
			return err
		}
	case mr.PlatformSNP:
		if err := r.snpEvidence(l, want); err != nil {
			return err
		}
	default:
		return fail("%s evidence: verification is not implemented in this build", r.b.Platform)
	}
	if err := r.platformSectionsJudged(); err != nil {
		return err
	}
	if want == nil {
		if r.opts.RequireNonce {
			return fail("no expected nonce, and one is required (--require-nonce): freshness not proven")
		}
		r.weaken(l, noNonce)
	} else {
		l.Checked = append(l.Checked, "nonce matches the expected nonce")
	}
	// Claimed values of real registers must be what the evidence proves.
	for _, c := range r.b.Registers {
		if mr.IsVirtualName(c.Name) {
			continue
		}
		got, ok := r.trusted[regKey{c.Name, c.Digest.Alg}]
		if !ok {
			// A claim the evidence does not cover proves nothing; say so
			// rather than let a reader of the bundle take it as checked.
			l.NotChecked = append(l.NotChecked, fmt.Sprintf("claimed value of %s (%v) is not covered by the evidence: not trusted", c.Name, c.Digest.Alg))
			continue
		}
		if !got.Equal(c.Digest) {
			return &failError{&Failure{Record: -1, Register: c.Name, Reason: "claimed register value differs from the evidence",
				Expected: got.String(), Computed: c.Digest.String()}}
		}
	}
	return nil
}

func (r *run) simEvidence(ev *mr.Evidence, l *LayerResult) error {
	if !r.opts.AllowSim {
		return fail("sim evidence (a software device) is never trusted without --allow-sim")
	}
	if len(r.opts.SimKeys) == 0 {
		return fail("sim evidence needs a pinned sim key (--trust-sim-key FILE); --trust-ak keys are TPM AKs and never vouch for sim statements")
	}
	var st *simverify.Statement
	var lastErr error
	for _, k := range r.opts.SimKeys {
		s, err := simverify.VerifyEvidence(ev, k)
		if err == nil {
			st = s
			break
		}
		lastErr = err
	}
	if st == nil {
		return fail("sim evidence: %v", lastErr)
	}
	for _, v := range st.Values {
		r.trusted[regKey{v.Register.Name, v.Digest.Alg}] = v.Digest
	}
	l.Checked = append(l.Checked, "sim statement signature (ECDSA P-384) by the pinned key", fmt.Sprintf("%d register values signed", len(st.Values)))
	return nil
}

func (r *run) tpmEvidence(ev *mr.Evidence, l *LayerResult, want []byte) error {
	if len(ev.TPMQuotes) == 0 {
		return fail("tpm evidence holds no quote")
	}
	ak, err := tpmverify.ParseAKPublic(ev.PublicKey)
	if err != nil {
		return fail("tpm AK public key: %v", err)
	}
	how, err := r.trustAK(ak, ev.Certificates)
	if err != nil {
		return err
	}
	l.Checked = append(l.Checked, how)
	if len(ev.TPMQuotes) > 1 {
		l.Checked = append(l.Checked, fmt.Sprintf("%d quotes, one per bank, of one boot (resetCount, restartCount, firmware version)", len(ev.TPMQuotes)))
	}
	if err := sameBoot(ev.TPMQuotes); err != nil {
		return err
	}
	for _, q := range ev.TPMQuotes {
		// Every quote must carry the bundle's nonce as qualifying data (a
		// bundle whose nonce field disagrees with what the TPM signed is
		// refused), and the expected nonce when one is given: the
		// documented rule is qualifying data = n.
		if err := tpmverify.VerifyQuote(ak, q, ev.Nonce); err != nil {
			return fail("tpm quote of the %v bank: %v", q.Alg, err)
		}
		if want != nil && !bytes.Equal(want, ev.Nonce) {
			return &failError{&Failure{Record: -1, Reason: fmt.Sprintf("nonce differs from the expected one: the %v quote's qualifying data is not the expected nonce", q.Alg),
				Expected: hex.EncodeToString(want), Computed: hex.EncodeToString(ev.Nonce)}}
		}
		for i, v := range q.PCRs {
			r.trusted[regKey{fmt.Sprintf("pcr%d", i), q.Alg}] = mr.Digest{Alg: q.Alg, Bytes: v}
		}
		l.Checked = append(l.Checked, fmt.Sprintf("TPM2_Quote of %d %v PCRs: signature, nonce as qualifying data, PCR digest", len(q.PCRs), q.Alg))
	}
	return nil
}

// trustAK accepts an AK that is pinned, or certified by a certificate in the
// bundle that chains to the AK roots.
func (r *run) trustAK(ak any, certs [][]byte) (string, error) {
	type equaler interface{ Equal(x crypto.PublicKey) bool }
	if err := r.notSimKey(ak); err != nil {
		return "", err
	}
	// An HCL report (and the TD quote beside it) is verified whenever the
	// bundle carries one: left unread next to a TRUSTED verdict, it would be
	// hardware evidence nobody checked.
	if len(r.b.Evidence.AzureHCLReport) > 0 {
		if !r.opts.AzureHCL {
			return "", fail("AK is not trusted: the bundle's Azure HCL report vouches for it only with --azure-hcl and the launch measurement in the policy, and a bundle that carries one is verified through it (never left unread beside a verdict, even for a pinned AK)")
		}
		return r.trustAKByHCL(ak)
	}
	for _, k := range r.opts.TrustedKeys {
		pk, err := tpmverify.ParseAKPublic(k)
		if err == nil {
			if e, ok := pk.(equaler); ok && e.Equal(ak) {
				return "AK is the pinned key", nil
			}
		}
	}
	if r.opts.AKRoots != nil {
		for _, der := range certs {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				continue
			}
			if e, ok := c.PublicKey.(equaler); !ok || !e.Equal(ak) {
				continue
			}
			// The TCG profile's critical SAN (GCE's AK certificates) is
			// one x509 cannot read; it is accepted in that form only, and
			// any other unhandled critical extension still refuses.
			tpmID, err := tpmverify.AcceptTCGSubjectAltName(c)
			if err != nil {
				return "", fail("AK certificate %q: %v", c.Subject.CommonName, err)
			}
			inter := x509.NewCertPool()
			for _, d2 := range certs {
				if c2, err := x509.ParseCertificate(d2); err == nil {
					inter.AddCert(c2)
				}
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: r.opts.AKRoots, Intermediates: inter, CurrentTime: r.opts.At,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				return "", fail("AK certificate does not chain to the AK roots: %v", err)
			}
			if err := akProfile(c); err != nil {
				return "", fail("AK certificate %q chains to the AK roots but is not an AK certificate: %v", c.Subject.CommonName, err)
			}
			how := "AK certificate chains to the AK roots and has an AK profile (signing key, not a CA, no web usage)"
			if tpmID != nil {
				how += "; its critical TCG subject alternative name names " + tpmID.String()
			}
			return how, nil
		}
	}
	if len(r.b.Evidence.AzureHCLReport) > 0 {
		return "", fail("AK is not trusted: the bundle's Azure HCL report vouches for it only with --azure-hcl and the launch measurement in the policy; or pin it with --trust-ak, or give an AK certificate and --ak-roots")
	}
	return "", fail("AK is not trusted: pin it with --trust-ak or give an AK certificate and --ak-roots")
}

// ---- layer 0 for TDX and SNP ----------------------------------------------

// hardwareFailure turns a verification error into a failure of layer 0. A
// quote that does not parse fails here too: the bundle itself was readable
// (exit 2 is only for input that cannot be read at all).
func hardwareFailure(what string, err error, checked, notChecked []string, l *LayerResult) error {
	l.Checked = append(l.Checked, checked...)
	l.NotChecked = append(l.NotChecked, notChecked...)
	return fail("%s: %v%s", what, err, atHint(err))
}

// atHint suggests --at for a certificate, CRL or collateral not valid at
// the verification time: evidence kept for later checking is judged at the
// time it was made, which the verdict then marks as weakened.
func atHint(err error) string {
	m := err.Error()
	if strings.Contains(m, "expired or is not yet valid") || strings.Contains(m, "not valid at") {
		return " (to judge the evidence as at the time it was made, give --at RFC3339: the verdict is then weakened)"
	}
	return ""
}

func (r *run) tdxEvidence(l *LayerResult, want []byte) error {
	coll := r.opts.TDXCollateral
	if coll == nil && r.b.Collateral != nil {
		coll = r.b.Collateral.TDX
	}
	res, err := tdxverify.Verify(r.b.Evidence.Report, coll, tdxverify.Options{At: r.opts.At, AllowedTCB: r.allowedTCB(), AllowDebug: r.tdxPolicy().AllowDebug})
	if err != nil {
		var cc, nc []string
		if res != nil {
			cc, nc = res.Checked, res.NotChecked
		}
		return hardwareFailure("TDX quote", err, cc, nc, l)
	}
	l.Checked = append(l.Checked, res.Checked...)
	l.NotChecked = append(l.NotChecked, res.NotChecked...)
	if err := r.needCollateral(coll, l); err != nil {
		return err
	}
	// tdxverify said "TCB status S is allowed"; the advisories, when
	// there are any, are said here (no empty "[]").
	if res.TCBStatus != "" && len(res.Advisories) > 0 {
		l.Checked = append(l.Checked, fmt.Sprintf("TCB status %s with advisories %s", res.TCBStatus, strings.Join(res.Advisories, ", ")))
	}
	r.tcbStatus(res, l)
	if err := r.judgeTDX(&res.Body, l, false); err != nil {
		return err
	}
	if err := r.reportNonce("the quote's REPORTDATA", res.ReportData, want, l); err != nil {
		return err
	}
	for _, v := range res.Registers {
		r.trusted[regKey{v.Register.Name, v.Digest.Alg}] = v.Digest
	}
	return nil
}

func (r *run) snpEvidence(l *LayerResult, want []byte) error {
	res, err := snpverify.Verify(r.b.Evidence.Report, r.b.Evidence.Certificates, snpverify.Options{At: r.opts.At, CRL: r.opts.SNPCRL})
	if err != nil {
		var cc, nc []string
		if res != nil {
			cc, nc = res.Checked, res.NotChecked
		}
		return hardwareFailure("SNP report", err, cc, nc, l)
	}
	l.Checked = append(l.Checked, res.Checked...)
	l.NotChecked = append(l.NotChecked, res.NotChecked...)
	// snpverify's "reported TCB … is the VCEK's TCB" line already names
	// the reported TCB: no second "reported TCB" line.
	r.snpRevocation(res, l)
	if err := r.judgeSNP(res, l, false); err != nil {
		return err
	}
	if err := r.reportNonce("the report's REPORT_DATA", res.ReportData, want, l); err != nil {
		return err
	}
	for _, v := range res.Registers {
		r.trusted[regKey{v.Register.Name, v.Digest.Alg}] = v.Digest
	}
	return nil
}

// reportNonce applies the documented nonce rule of TDX and SEV-SNP
// (docs/tdx-snp-verification.md): the expected nonce n is proven fresh when
// the signed report data is cvmreport.ReportData(n), n zero-padded to 64
// bytes (sha512 of a longer n), whatever nonce the bundle stored. The
// bundle's nonce only reports; one that is present and is not what the
// report data binds is refused: a bundle that misstates its own evidence
// is not read further (fail closed), and a verifier that trusted the field
// would take a copied report with a rewritten nonce as fresh.
func (r *run) reportNonce(what string, rd [64]byte, want []byte, l *LayerResult) error {
	if len(r.b.Nonce) > 0 {
		if b := cvmreport.ReportData(r.b.Nonce); b != rd {
			return &failError{&Failure{Record: -1, Reason: fmt.Sprintf("the bundle's nonce is not what %s binds (bundle nonce zero-padded to 64 bytes, or its sha512)", what),
				Expected: hex.EncodeToString(b[:]), Computed: hex.EncodeToString(rd[:])}}
		}
		l.Checked = append(l.Checked, what+" binds the bundle's nonce")
	}
	if want == nil {
		return nil
	}
	if w := cvmreport.ReportData(want); w != rd {
		return &failError{&Failure{Record: -1, Reason: fmt.Sprintf("nonce differs from the expected one: %s is not the expected nonce zero-padded to 64 bytes (or its sha512 when longer)", what),
			Expected: hex.EncodeToString(w[:]), Computed: hex.EncodeToString(rd[:])}}
	}
	if len(want) > 64 {
		l.Checked = append(l.Checked, what+" is the sha512 of the expected nonce")
	} else {
		l.Checked = append(l.Checked, what+" is the expected nonce zero-padded to 64 bytes")
	}
	return nil
}
