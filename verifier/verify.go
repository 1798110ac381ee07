package verifier

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/tcg"
	"github.com/ccmr-dev/ccmr/mr"
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
	// fwLogs are the firmware logs parsed once (layer 1, coverage and the
	// measured_boot policy read the same ones).
	fwLogs  map[*bundle.Log]*tcg.Log
	b       *bundle.Bundle
	opts    Options
	rep     *Report
	trusted map[regKey]mr.Digest
	virtual map[string]mr.Digest
	// records are the records of each virtual register an application
	// log is checked against (Options.AppLogs); counts the records of
	// every virtual register this run replayed. mr_ima's records are not
	// held: they flow, as layer 1 replays them, to the IMA list's replay
	// (feed), so that memory does not grow with the number of entries.
	records map[string][]mr.Digest
	counts  map[string]int
	feed    *imaFeed
	ctx     context.Context
	proven  int // IMA entries proven by layer 3; -1 for none
	imaLog  *bundle.Log
	// otherIMA are the bundle's other per-bank IMA lists (addIMALog).
	otherIMA []*bundle.Log
	ima      imaFacts // what layer 3 learned about the IMA list

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
	// platform are the fields of the verified hardware report (proven.go).
	platform provenPlatform
}

// atTolerance is how far Options.At may be from the verifier's clock before
// the verdict says it was judged at another time.
const atTolerance = 5 * time.Minute

// Verify checks a bundle layer by layer. It returns an error only for input
// it cannot use at all; every failed check is a verdict in the report.
func Verify(ctx context.Context, b *bundle.Bundle, opts Options) (*Report, error) {
	// A log in a format the verifier cannot check is unusable input (exit 2),
	// never a verdict.
	if err := checkLogFormats(b); err != nil {
		return nil, fmt.Errorf("%s: %w", opts.Name, err)
	}
	now := time.Now()
	// A verdict judged at another time than now (--at) did not consider
	// what happened since: revocations, TCB levels gone out of date.
	pastAt := !opts.At.IsZero() && (opts.At.Before(now.Add(-atTolerance)) || opts.At.After(now.Add(atTolerance)))
	if opts.At.IsZero() {
		opts.At = now
	}
	r := &run{b: b, opts: opts, rep: newReport(b, opts.Name), trusted: map[regKey]mr.Digest{},
		virtual: map[string]mr.Digest{}, records: map[string][]mr.Digest{}, counts: map[string]int{}, ctx: ctx, proven: -1, starts: map[regKey]chainStart{}}
	defer r.stopFeed() // a layer failed before layer 3 took its result
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
			r.fillProven()
			return r.rep, nil
		}
	}
	if pastAt {
		r.weaken(&r.rep.Layers[LayerEvidence], "judged at "+opts.At.UTC().Format(time.RFC3339)+", not now: later revocations and TCB changes not considered")
	}
	r.rep.Trusted = true
	r.rep.Verdict = r.rep.VerdictLine()
	r.fillProven()
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
