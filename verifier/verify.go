package verifier

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/backend/snp"
	"github.com/ccmr-dev/ccmr/backend/tdx"
	"github.com/ccmr-dev/ccmr/backend/tpm"
	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/dstack"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/eventlog/tcg"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/snpverify"
	"github.com/ccmr-dev/ccmr/verifier/tdxverify"
)

// Options configure Verify.
type Options struct {
	// Name names the bundle in the report.
	Name string
	// AllowSim lets sim evidence be trusted (with a pinned sim key).
	AllowSim bool
	// TrustedKeys are pinned TPM AK public keys (PEM). They never vouch
	// for sim statements: a software key must not pass as a TPM's.
	TrustedKeys [][]byte
	// AKRoots are CA certificates for AK certificates in the bundle.
	AKRoots *x509.CertPool
	// Nonce is the expected nonce; nil leaves it to the policy, else
	// the report says it was not checked.
	Nonce []byte
	// At is the time for certificate validity; zero means now.
	At time.Time
	// Policy is judged in layer 4; nil means no policy.
	Policy *Policy
	// TDXCollateral replaces the bundle's TDX collateral (QuoteCollateralV3
	// JSON), e.g. from --collateral.
	TDXCollateral []byte
	// AllowedTCB are TDX TCB statuses trusted besides UpToDate.
	AllowedTCB []string
	// SimKeys are pinned sim device keys (PEM, `ccmr key` of a sim device):
	// the only keys that vouch for sim statements, and never for a TPM
	// quote (hardware.go).
	SimKeys [][]byte
	// RequireNonce makes a verification without an expected nonce fail
	// instead of passing weakened.
	RequireNonce bool
	// AllowMissingCollateral lets a TDX quote without Intel collateral
	// pass, weakened: its TCB level, QE identity and revocation are then
	// not checked.
	AllowMissingCollateral bool
	// AzureHCL trusts a TPM AK through an Azure HCL report (azure.go); the
	// policy must then give the launch measurement to compare.
	AzureHCL bool
	// SNPCRL is AMD's CRL (DER or PEM) for the SNP report's product line;
	// without it revocation is not checked and the verdict says so.
	SNPCRL []byte
	// Monitor, when set, is the monitor state: the bundle is verified from
	// where its machine's last verified bundle stopped, and on success the
	// state is advanced (the caller saves it).
	Monitor *MonitorState
	// Machine names the machine in Monitor; default MachineID(bundle),
	// which TDX and SNP evidence does not give (Verify then fails with
	// ErrNoMachine).
	Machine string
	// AppLogs are application logs checked in layer 3 against their
	// virtual registers (a container's mr_ctr.<id>): one event per line,
	// record i of the register must be sha384 of line i, its LF included
	// (as `ccmr extend mr_ctr.x --data EVENTFILE` of a one-line file).
	// The other registers' logs are not needed: their records in the
	// shared runtime log are opaque digests.
	AppLogs map[string][]byte
	// AcceptUnverifiedHistory accepts a runtime log whose first segment
	// starts (INIT, or a snapshot) at a value nothing in the bundle or the
	// monitor state proves: the verdict is weakened, naming the registers
	// whose history before that point was never judged.
	AcceptUnverifiedHistory bool
	// AllowUnquotedLogRegisters accepts firmware and CC log events on
	// registers the evidence does not cover (a TPM quote of some PCRs):
	// the verdict is weakened, naming the registers whose events nothing
	// proves (coverage.go).
	AllowUnquotedLogRegisters bool
}

type regKey struct {
	name string
	alg  mr.Alg
}

// run carries what one verification learns from layer to layer.
type run struct {
	b       *Bundle
	opts    Options
	rep     *Report
	trusted map[regKey]mr.Digest
	virtual map[string]mr.Digest
	records map[string][]mr.Digest // records of each virtual register
	proven  int                    // IMA entries proven by layer 3; -1 for none
	imaLog  *Log
	ima     imaFacts // what layer 3 learned about the IMA list

	// Monitor state (--state): what was verified before (nil when the
	// machine's entry is not used), and what this verification adds,
	// saved when the bundle is trusted; mon decides (monitor_run.go).
	state *MachineState
	next  *MachineState
	mon   *monitorRun
	// imaStart is where layer 3 starts: the entries and the mr_ima value a
	// monitor state already proved (zero without one).
	imaStart imaPoint
	// starts are the values firmware and dstack logs replay the backing
	// registers of runtime logs to: where their first segments must start.
	starts map[regKey]chainStart
	// unjudged is set when a runtime log's history was accepted unproven
	// (AcceptUnverifiedHistory): the monitor state is then not advanced.
	unjudged bool
	// explained are the quoted registers a log of the bundle replayed
	// (coverage.go), with the log's name.
	explained map[regKey]string

	// judged records which platform sections of the policy layer 0 judged
	// (platform_policy.go): a section that judged nothing fails.
	judged map[string]bool
}

// atTolerance is how far Options.At may be from the verifier's clock before
// the verdict says it was judged at another time.
const atTolerance = 5 * time.Minute

// Verify checks a bundle layer by layer. It returns an error only for input
// it cannot use at all; every failed check is a verdict in the report.
func Verify(ctx context.Context, b *Bundle, opts Options) (*Report, error) {
	now := time.Now()
	// A verdict judged at another time than now (--at) did not consider
	// what happened since: revocations, TCB levels gone out of date.
	pastAt := !opts.At.IsZero() && (opts.At.Before(now.Add(-atTolerance)) || opts.At.After(now.Add(atTolerance)))
	if opts.At.IsZero() {
		opts.At = now
	}
	r := &run{b: b, opts: opts, rep: newReport(b, opts.Name), trusted: map[regKey]mr.Digest{},
		virtual: map[string]mr.Digest{}, records: map[string][]mr.Digest{}, proven: -1, starts: map[regKey]chainStart{}}
	if opts.Monitor != nil {
		if err := r.beginMonitor(); err != nil {
			return nil, err
		}
	}
	// resumeLogs and resumeAppLogs are layers 1 and 3 (logs, appLogs)
	// with the monitor state's checks before them (monitor_run.go).
	layers := []func(context.Context, *LayerResult) error{r.evidence, r.resumeLogs, r.virtualRegs, r.resumeAppLogs, r.policy}
	for i, f := range layers {
		l := &r.rep.Layers[i]
		l.Status = Pass
		if err := f(ctx, l); err != nil {
			var fe *failError
			if !errors.As(err, &fe) {
				return nil, err
			}
			l.Status = Fail
			l.Failure = fe.f
			r.rep.Weakened = nil
			r.rep.Verdict = r.rep.VerdictLine()
			return r.rep, nil
		}
	}
	if pastAt {
		r.weaken(&r.rep.Layers[LayerEvidence], "judged at "+opts.At.UTC().Format(time.RFC3339)+", not now: later revocations and TCB changes not considered")
	}
	r.rep.Trusted = true
	r.rep.Verdict = r.rep.VerdictLine()
	if opts.Monitor != nil && r.unjudged {
		r.rep.Layers[LayerEvidence].NotChecked = append(r.rep.Layers[LayerEvidence].NotChecked, "monitor state of "+r.mon.machine+" not advanced: a runtime log's history was accepted unproven")
	} else if opts.Monitor != nil {
		if err := r.advanceMonitor(); err != nil {
			return nil, err
		}
	}
	return r.rep, nil
}

// weaken records that a check did not prove what it normally proves, in the
// layer's not-checked list and on the verdict line: a bundle that passes
// anyway is TRUSTED (weakened: why), never a plain TRUSTED.
func (r *run) weaken(l *LayerResult, why string) {
	l.NotChecked = append(l.NotChecked, "weakened: "+why)
	r.rep.Weakened = append(r.rep.Weakened, why)
}

// failError carries a layer's failure through the layer function.
type failError struct{ f *Failure }

func (e *failError) Error() string { return e.f.Reason }

func fail(format string, a ...any) error {
	return &failError{&Failure{Record: -1, Reason: fmt.Sprintf(format, a...)}}
}

// failFrom turns a log error or mismatch into a located failure.
func failFrom(logName string, err error) error {
	f := &Failure{Log: logName, Record: -1, Reason: err.Error()}
	var mm *eventlog.Mismatch
	var le *eventlog.Error
	switch {
	case errors.As(err, &mm):
		f.Record, f.Offset, f.Register = mm.Record, mm.Offset, mm.Register
		if !mm.Expected.IsZero() {
			f.Expected = mm.Expected.String()
		}
		if !mm.Computed.IsZero() {
			f.Computed = mm.Computed.String()
		}
		if mm.Reason != "" {
			f.Reason = mm.Reason
		}
	case errors.As(err, &le):
		f.Record, f.Offset = le.Record, le.Offset
		f.Reason = le.Err.Error()
	}
	return &failError{f}
}

// ---- layer 0: evidence -------------------------------------------------

func (r *run) evidence(ctx context.Context, l *LayerResult) error {
	ev, err := r.b.mrEvidence()
	if err != nil {
		return err
	}
	switch r.b.Platform {
	case mr.PlatformSim:
		if err := r.simEvidence(ev, l); err != nil {
			return err
		}
	case mr.PlatformTPM:
		if err := r.tpmEvidence(ev, l); err != nil {
			return err
		}
	case mr.PlatformTDX:
		if err := r.tdxEvidence(l); err != nil {
			return err
		}
	case mr.PlatformSNP:
		if err := r.snpEvidence(l); err != nil {
			return err
		}
	default:
		return fail("%s evidence: verification is not implemented in this build", r.b.Platform)
	}
	if err := r.platformSectionsJudged(); err != nil {
		return err
	}
	want := r.opts.Nonce
	if want == nil && r.opts.Policy != nil {
		want = r.opts.Policy.Nonce
	}
	if want == nil {
		if r.opts.RequireNonce {
			return fail("no expected nonce, and one is required (--require-nonce): freshness not proven")
		}
		r.weaken(l, noNonce)
	} else if !bytes.Equal(want, r.b.Nonce) {
		return &failError{&Failure{Record: -1, Reason: "nonce differs from the expected one", Expected: hex.EncodeToString(want), Computed: hex.EncodeToString(r.b.Nonce)}}
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
	var st *sim.Statement
	var lastErr error
	for _, k := range r.opts.SimKeys {
		s, err := sim.VerifyEvidence(ev, k)
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

func (r *run) tpmEvidence(ev *mr.Evidence, l *LayerResult) error {
	if len(ev.TPMQuotes) == 0 {
		return fail("tpm evidence holds no quote")
	}
	ak, err := tpm.ParseAKPublic(ev.PublicKey)
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
		if err := tpm.VerifyQuote(ak, q, ev.Nonce); err != nil {
			return fail("tpm quote of the %v bank: %v", q.Alg, err)
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
		pk, err := tpm.ParseAKPublic(k)
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
			return "AK certificate chains to the AK roots and has an AK profile (signing key, not a CA, no web usage)", nil
		}
	}
	if len(r.b.Evidence.AzureHCLReport) > 0 {
		return "", fail("AK is not trusted: the bundle's Azure HCL report vouches for it only with --azure-hcl and the launch measurement in the policy; or pin it with --trust-ak, or give an AK certificate and --ak-roots")
	}
	return "", fail("AK is not trusted: pin it with --trust-ak or give an AK certificate and --ak-roots")
}

// ---- layer 1: firmware and runtime logs --------------------------------

func (r *run) logs(ctx context.Context, l *LayerResult) error {
	runtimeRegs := r.runtimeRegs()
	chains := map[string][]segment{}
	var order []string
	for i := range r.b.Logs {
		lg := &r.b.Logs[i]
		name := logName(i, lg)
		switch eventlog.Format(lg.Format) {
		case eventlog.FormatTCG2, eventlog.FormatCCEL:
			if err := r.firmwareLog(name, lg, runtimeRegs, l); err != nil {
				return err
			}
		case eventlog.FormatRuntime, eventlog.FormatAAELText:
			if lg.Register == "" {
				return fail("%s: runtime log names no backing register", name)
			}
			if chains[lg.Register] == nil {
				order = append(order, lg.Register)
			}
			chains[lg.Register] = append(chains[lg.Register], segment{name: name, log: lg})
		case eventlog.FormatDstackJSON:
			counts := map[string]int{}
			boot := 0
			res, err := dstack.Replay(dstack.NewReader(bytes.NewReader(lg.Data), name), name, func(e *dstack.Event) error {
				counts[dstack.Register(e.IMR)]++
				if !e.Recomputed() {
					boot++
				}
				return nil
			})
			if err != nil {
				return failFrom(name, err)
			}
			if boot > 0 {
				// Their digests are replayed; what the JSON says they
				// measured is not bound by them.
				l.NotChecked = append(l.NotChecked, fmt.Sprintf("%s: %d boot events on rtmr0-2 are replayed by digest only: their names and payloads are not checked (the firmware log, not dstack's JSON, holds what they hash)", name, boot))
			}
			if err := r.compareReplay(name, res, counts, runtimeRegs, nil, l); err != nil {
				return err
			}
		case eventlog.FormatIMABinary, eventlog.FormatIMAASCII:
			if r.imaLog != nil {
				return fail("the bundle holds two IMA lists")
			}
			r.imaLog = lg
		case eventlog.FormatCELJSON, eventlog.FormatCELTLV:
			if err := r.celLog(ctx, name, lg, l); err != nil {
				return err
			}
		default:
			return logFormatError(i, lg) // unusable input: a log nothing reads never rides along
		}
	}
	for _, reg := range order {
		if err := r.runtimeChain(reg, chains[reg], l); err != nil {
			return err
		}
	}
	if len(l.Checked) == 0 {
		l.NotChecked = append(l.NotChecked, "no firmware or runtime log in the bundle")
	}
	return r.coverage(l)
}

func logName(i int, lg *Log) string {
	n := fmt.Sprintf("logs[%d] (%s", i, lg.Format)
	if lg.Register != "" {
		n += " on " + lg.Register
	}
	return n + ")"
}

func (r *run) firmwareLog(name string, lg *Log, runtimeRegs map[regKey]bool, l *LayerResult) error {
	fl, err := tcg.Parse(name, lg.Data, eventlog.Format(lg.Format))
	if err != nil {
		return failFrom(name, err)
	}
	// A record without a digest for a declared bank makes Replay leave the
	// bank out: refuse the log rather than compare what remains.
	if rec, bank, ok, err := fl.MissingDigest(); err != nil {
		return failFrom(name, err)
	} else if ok {
		return &failError{&Failure{Log: name, Record: rec, Offset: fl.Events[rec].Offset,
			Reason: fmt.Sprintf("record %d carries no %v digest, a bank the log declares: the bank cannot be replayed", rec, bank)}}
	}
	if err := r.firmwareData(name, fl, l); err != nil {
		return err
	}
	// A second EV_SEPARATOR on a register lets firmware measure more
	// after it declared the pre-OS phase over; refuse it unless the
	// policy accepts it. Other problems (event data that does not hash to
	// its digest) do not change the replay, which uses the digests.
	for ev := range fl.Show() {
		for _, p := range ev.Problems {
			if strings.HasPrefix(p, "duplicate EV_SEPARATOR") {
				if r.opts.Policy == nil || !r.opts.Policy.AllowDuplicateSeparator {
					return &failError{&Failure{Log: name, Record: ev.Index, Offset: ev.Offset, Register: ev.Register,
						Reason: p + " (a policy may allow it with allow_duplicate_separator)"}}
				}
				l.NotChecked = append(l.NotChecked, fmt.Sprintf("%s record %d: %s, allowed by the policy", name, ev.Index, p))
			} else {
				l.NotChecked = append(l.NotChecked, fmt.Sprintf("%s record %d: %s", name, ev.Index, p))
			}
		}
	}
	res, err := fl.Replay()
	if err != nil {
		return failFrom(name, err)
	}
	return r.compareReplay(name, res, firmwareCounts(fl), runtimeRegs, firmwareStartProblems(name, eventlog.Format(lg.Format), fl, runtimeRegs), l)
}

// compareReplay compares every register a log's replay gives with its
// trusted value. A register with a runtime log of its own (in the bank of
// that log) is where the runtime log must start: runtimeChain compares it.
// counts are the log's events per register, for the report of what is not
// checked. unproven marks the registers whose replay does not prove the
// runtime log's start (firmwareStartProblems). A log whose replay checks
// no quoted register proves nothing and fails.
func (r *run) compareReplay(name string, res *eventlog.Replay, counts map[string]int, runtimeRegs map[regKey]bool, unproven map[string]chainStart, l *LayerResult) error {
	n, starts := 0, 0
	var absent []mr.Value // registers and banks the evidence does not cover
	for _, v := range res.Registers {
		k := regKey{v.Register.Name, v.Digest.Alg}
		if runtimeRegs[k] {
			cs := unproven[k.name]
			cs.value, cs.from = v.Digest, name
			if err := r.setStart(k, cs); err != nil {
				return err
			}
			r.explain(k, name)
			starts++
			continue
		}
		want, ok := r.trusted[k]
		if !ok {
			absent = append(absent, v)
			continue
		}
		if !want.Equal(v.Digest) {
			return &failError{&Failure{Log: name, Record: -1, Register: v.Register.Name, Expected: want.String(), Computed: v.Digest.String(),
				Reason: fmt.Sprintf("replay of %s does not give the quoted %s", name, v.Register.Name)}}
		}
		r.explain(k, name)
		n++
	}
	if n+starts == 0 {
		return &failError{&Failure{Log: name, Record: -1,
			Reason: fmt.Sprintf("%s: its %d events replay to no quoted register value: the log proves nothing", name, res.Events)}}
	}
	if err := r.uncovered(name, absent, counts, runtimeRegs, l); err != nil {
		return err
	}
	msg := fmt.Sprintf("%s: %d events replay to %d quoted register values", name, res.Events, n)
	if starts > 0 {
		msg += fmt.Sprintf(" and to the start of %d runtime logs", starts)
	}
	l.Checked = append(l.Checked, msg)
	return nil
}

// ---- layer 2: virtual registers ------------------------------------------

func (r *run) virtualRegs(ctx context.Context, l *LayerResult) error {
	names := make([]string, 0, len(r.virtual))
	for n := range r.virtual {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		l.Checked = append(l.Checked, fmt.Sprintf("%s = %v (%d records)", n, r.virtual[n], len(r.records[n])))
	}
	for _, c := range r.b.Registers {
		if !mr.IsVirtualName(c.Name) {
			continue
		}
		got, ok := r.virtual[c.Name]
		if !ok {
			return &failError{&Failure{Record: -1, Register: c.Name, Computed: c.Digest.String(), Reason: "claimed virtual register has no records in any trusted runtime log"}}
		}
		if !got.Equal(c.Digest) {
			return &failError{&Failure{Record: -1, Register: c.Name, Expected: got.String(), Computed: c.Digest.String(), Reason: "claimed virtual register value differs from the one derived from the runtime log"}}
		}
	}
	if len(names) == 0 {
		l.NotChecked = append(l.NotChecked, "no virtual registers")
	}
	return nil
}

// ---- layer 3: the IMA list -----------------------------------------------

// imaReader reads the IMA list from where the monitor state stopped (its
// start without a state).
func (r *run) imaReader() *ima.Reader {
	data := r.imaLog.Data[r.imaStart.offset:]
	if r.imaLog.Format == string(eventlog.FormatIMAASCII) {
		return ima.NewASCIIReader(bytes.NewReader(data), ima.Options{File: "ima list"})
	}
	return ima.NewBinaryReader(bytes.NewReader(data), ima.Options{File: "ima list"})
}

// shiftIMA turns a failure in the resumed IMA list into whole-list terms.
func (r *run) shiftIMA(err error) error {
	var mm *eventlog.Mismatch
	var le *eventlog.Error
	if errors.As(err, &mm) && mm.Record >= 0 {
		mm.Record += r.imaStart.entries
		if mm.Offset >= 0 {
			mm.Offset += r.imaStart.offset
		}
	} else if errors.As(err, &le) {
		le.Record += r.imaStart.entries
		le.Offset += r.imaStart.offset
	}
	return err
}

func (r *run) appLogs(ctx context.Context, l *LayerResult) error {
	names := make([]string, 0, len(r.opts.AppLogs))
	for n := range r.opts.AppLogs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := r.appLog(n, r.opts.AppLogs[n], l); err != nil {
			return err
		}
	}
	return r.imaLayer(ctx, l)
}

// appLog checks one application log against its virtual register's records.
func (r *run) appLog(reg string, data []byte, l *LayerResult) error {
	name := "application log of " + reg
	recs := r.records[reg]
	if _, ok := r.virtual[reg]; !ok {
		return &failError{&Failure{Log: name, Record: -1, Register: reg, Reason: reg + " has no records in any trusted runtime log"}}
	}
	if r.state != nil {
		l.NotChecked = append(l.NotChecked, name+": checked against the records since the monitor state only")
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	if n := len(lines); n > 0 && len(lines[n-1]) == 0 {
		lines = lines[:n-1]
	}
	var off int64
	for i, ln := range lines {
		d := mr.SHA384.Sum(ln)
		if i >= len(recs) {
			return &failError{&Failure{Log: name, Record: i, Offset: off, Register: reg, Computed: d.String(),
				Reason: fmt.Sprintf("event %d has no record in %s (%d records)", i, reg, len(recs))}}
		}
		if !d.Equal(recs[i]) {
			return &failError{&Failure{Log: name, Record: i, Offset: off, Register: reg, Expected: recs[i].String(), Computed: d.String(),
				Reason: fmt.Sprintf("event %d does not match record %d of %s", i, i, reg)}}
		}
		off += int64(len(ln))
	}
	if len(lines) < len(recs) {
		return &failError{&Failure{Log: name, Record: len(lines), Register: reg, Expected: recs[len(lines)].String(),
			Reason: fmt.Sprintf("record %d of %s has no event in the application log", len(lines), reg)}}
	}
	l.Checked = append(l.Checked, fmt.Sprintf("%s: %d events match the records of %s", name, len(lines), reg))
	return nil
}

func (r *run) imaLayer(ctx context.Context, l *LayerResult) error {
	if r.imaLog == nil {
		if _, ok := r.virtual[ima.VirtualName]; ok {
			l.NotChecked = append(l.NotChecked, "mr_ima has records but the bundle holds no IMA list")
		} else {
			l.NotChecked = append(l.NotChecked, "no IMA list in the bundle")
		}
		return nil
	}
	const name = "ima list"
	if r.imaStart.offset > int64(len(r.imaLog.Data)) {
		return &failError{&Failure{Log: name, Record: -1, Reason: fmt.Sprintf("the IMA list is %d bytes, shorter than the %d the monitor state proved: rewritten, or a new boot", len(r.imaLog.Data), r.imaStart.offset)}}
	}
	if err := r.checkIMAEntries(l); err != nil {
		return err
	}
	// A monitor state's IMA point is a value of mr_ima: the entries after
	// it are proven only against mr_ima's value this run proves (a trusted
	// runtime log carries it). Without one they are proven by nothing, and
	// a policy would judge none of them: fail, as the same bundle fails
	// without the state.
	mrIMA, haveMRIMA := r.virtual[ima.VirtualName]
	if r.imaResumed() && !haveMRIMA {
		return &failError{&Failure{Log: name, Record: -1, Register: ima.VirtualName, Expected: r.imaStart.value.String(),
			Reason: fmt.Sprintf("the monitor state of %s proved %d IMA entries up to an mr_ima value, but this bundle proves no value of mr_ima (no trusted runtime log carries it): the entries after them can be neither proven nor judged", stateTime(r.state), r.imaStart.entries)}}
	}
	if recs, ok := r.records[ima.VirtualName]; ok || r.imaResumed() {
		if recs == nil {
			recs = []mr.Digest{} // no new record: every new entry is unproven
		}
		res, err := ima.ReplayVirtual(ctx, r.imaReader(), ima.VirtualOptions{File: name, Records: recs, Expect: r.virtual[ima.VirtualName], Start: r.imaStart.value})
		if err != nil {
			return failFrom(name, r.shiftIMA(err))
		}
		r.proven = res.Events
		l.Checked = append(l.Checked, fmt.Sprintf("%d IMA entries match the %d records of mr_ima", res.Events, len(recs)))
		if r.imaStart.entries > 0 {
			l.Checked = append(l.Checked, fmt.Sprintf("entries 0..%d were proven by the monitor state", r.imaStart.entries-1))
		}
		if r.imaPCRsQuoted() {
			// The quoted PCRs cover every entry, forwarded or not: the
			// whole list must replay to them, and all of it is judged.
			if err := r.replayPCRs(ctx, l); err != nil {
				return err
			}
			if err := r.mrIMAProves(res.Events, l); err != nil {
				return err
			}
			if res.Unproven > 0 {
				l.Checked = append(l.Checked, fmt.Sprintf("%d IMA entries after the last mr_ima record are proven by the quoted PCRs (judged by policy)", res.Unproven))
			}
		} else if res.Unproven > 0 {
			r.ima.unprovenTail = res.Unproven
			l.NotChecked = append(l.NotChecked, fmt.Sprintf("%d IMA entries after the last mr_ima record are not proven (not judged by policy)", res.Unproven))
		}
		if r.next != nil && haveMRIMA && mrIMA.Alg.Valid() && len(mrIMA.Bytes) == mrIMA.Alg.Size() {
			// Never an IMA point without a value of mr_ima.
			off := int64(len(r.imaLog.Data))
			if res.Unproven > 0 {
				rd := r.imaReader()
				for i := 0; i < res.Events; i++ {
					if _, err := rd.Next(); err != nil {
						return failFrom(name, err)
					}
				}
				off = r.imaStart.offset + rd.Offset()
			}
			r.next.IMA = &IMAState{Entries: r.imaStart.entries + res.Events, Offset: off, Value: mrIMA}
		}
		return r.bootAggregate(l)
	}
	if err := r.replayPCRs(ctx, l); err != nil {
		return err
	}
	return r.bootAggregate(l)
}

// imaResumed reports whether layer 3 resumes a monitor state's IMA point.
func (r *run) imaResumed() bool { return r.state != nil && r.state.IMA != nil }

// ---- layer 4: policy -----------------------------------------------------

func (r *run) policy(ctx context.Context, l *LayerResult) error {
	p := r.opts.Policy
	if p == nil {
		l.NotChecked = append(l.NotChecked, "no policy given: register values and files not judged")
		return nil
	}
	names := make([]string, 0, len(p.Registers))
	for n := range p.Registers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := r.judgeRegister(n, p.Registers[n]); err != nil {
			return err
		}
		l.Checked = append(l.Checked, fmt.Sprintf("%s is a reference value", n))
	}
	if p.Runtime != nil {
		if err := r.judgeFiles(ctx, p.Runtime, l); err != nil {
			return err
		}
	}
	if len(p.IMAKeys) > 0 {
		if err := r.imaJudgeable("the policy gives IMA signature keys"); err != nil {
			return err
		}
		rep, err := ima.CheckSignatures(r.imaReader(), "ima list", p.IMAKeys, r.proven, p.RequireSignatures)
		if err != nil {
			return failFrom("ima list", r.shiftIMA(err))
		}
		l.Checked = append(l.Checked, fmt.Sprintf("IMA signatures: %d verified with the policy's keys, %d entries unsigned", rep.Verified, rep.Unsigned))
	}
	if !p.Aggregate.IsZero() {
		if err := r.imaJudgeable("the policy names an IMA aggregate"); err != nil {
			return err
		}
		src := ima.NewBinaryReader(bytes.NewReader(r.imaLog.Data), ima.Options{File: "ima list"})
		if r.imaLog.Format == string(eventlog.FormatIMAASCII) {
			src = ima.NewASCIIReader(bytes.NewReader(r.imaLog.Data), ima.Options{File: "ima list"})
		}
		got, n, err := ima.Aggregate(ctx, src, r.imaStart.entries+r.proven)
		if err != nil {
			return failFrom("ima list", err)
		}
		if !got.Equal(p.Aggregate) {
			return &failError{&Failure{Log: "ima list", Record: -1, Expected: p.Aggregate.String(), Computed: got.String(),
				Reason: fmt.Sprintf("the aggregate of the %d distinct measurements is not the policy's", n)}}
		}
		l.Checked = append(l.Checked, fmt.Sprintf("IMA aggregate of %d distinct measurements is the policy's", n))
	}
	return nil
}

func (r *run) judgeRegister(name string, allowed []mr.Digest) error {
	byAlg := map[mr.Alg][]mr.Digest{}
	for _, d := range allowed {
		byAlg[d.Alg] = append(byAlg[d.Alg], d)
	}
	for alg, ds := range byAlg {
		var got mr.Digest
		var ok bool
		if mr.IsVirtualName(name) {
			got, ok = r.virtual[name]
			ok = ok && got.Alg == alg
		} else {
			got, ok = r.trusted[regKey{name, alg}]
		}
		if !ok {
			return &failError{&Failure{Record: -1, Register: name, Expected: ds[0].String(), Reason: fmt.Sprintf("policy names %s (%v) but no trusted value exists", name, alg)}}
		}
		match := false
		for _, d := range ds {
			match = match || d.Equal(got)
		}
		if !match {
			return &failError{&Failure{Record: -1, Register: name, Expected: ds[0].String(), Computed: got.String(), Reason: fmt.Sprintf("%s is not a reference value of the policy", name)}}
		}
	}
	return nil
}

func (r *run) judgeFiles(ctx context.Context, rp *RuntimePolicy, l *LayerResult) error {
	if err := r.imaJudgeable("the policy gives a runtime policy"); err != nil {
		return err
	}
	src := r.imaReader()
	count := map[string]int{}
	for n := 0; n < r.proven; n++ {
		e, err := src.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return failFrom("ima list", err)
		}
		what, err := r.judgeEntry(rp, e)
		if err != nil {
			return &failError{&Failure{Log: "ima list", Record: r.imaStart.entries + e.Index, Offset: r.imaStart.offset + e.Offset, Reason: err.Error()}}
		}
		count[what]++
	}
	l.Checked = append(l.Checked, fmt.Sprintf("runtime policy: %d entries match reference digests, %d excluded, %d keys of ignored keyrings", count["judged"], count["excluded"], count["ignored"]))
	if r.ima.unprovenTail > 0 {
		l.NotChecked = append(l.NotChecked, fmt.Sprintf("runtime policy: %d IMA entries after the last mr_ima record are not proven, not judged", r.ima.unprovenTail))
	}
	return nil
}

// ---- layer 0 for TDX and SNP ----------------------------------------------

// hardwareFailure turns a verification error into a failure of layer 0. A
// quote that does not parse fails here too: the bundle itself was readable
// (exit 2 is only for input that cannot be read at all).
func hardwareFailure(what string, err error, checked, notChecked []string, l *LayerResult) error {
	l.Checked = append(l.Checked, checked...)
	l.NotChecked = append(l.NotChecked, notChecked...)
	return fail("%s: %v", what, err)
}

func (r *run) tdxEvidence(l *LayerResult) error {
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
	if res.TCBStatus != "" {
		l.Checked = append(l.Checked, fmt.Sprintf("TCB status %s %v", res.TCBStatus, res.Advisories))
	}
	r.tcbStatus(res, l)
	if err := r.judgeTDX(&res.Body, l, false); err != nil {
		return err
	}
	if want := tdx.ReportData(r.b.Nonce); res.ReportData != want {
		return &failError{&Failure{Record: -1, Reason: "the quote's REPORTDATA is not the bundle's nonce", Expected: hex.EncodeToString(want[:]), Computed: hex.EncodeToString(res.ReportData[:])}}
	}
	l.Checked = append(l.Checked, "REPORTDATA binds the bundle's nonce")
	for _, v := range res.Registers {
		r.trusted[regKey{v.Register.Name, v.Digest.Alg}] = v.Digest
	}
	return nil
}

func (r *run) snpEvidence(l *LayerResult) error {
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
	l.Checked = append(l.Checked, fmt.Sprintf("reported TCB 0x%016x", res.ReportedTCB))
	r.snpRevocation(res, l)
	if err := r.judgeSNP(res, l, false); err != nil {
		return err
	}
	if want := snp.ReportData(r.b.Nonce); res.ReportData != want {
		return &failError{&Failure{Record: -1, Reason: "the report's REPORT_DATA is not the bundle's nonce", Expected: hex.EncodeToString(want[:]), Computed: hex.EncodeToString(res.ReportData[:])}}
	}
	l.Checked = append(l.Checked, "REPORT_DATA binds the bundle's nonce")
	for _, v := range res.Registers {
		r.trusted[regKey{v.Register.Name, v.Digest.Alg}] = v.Digest
	}
	return nil
}
