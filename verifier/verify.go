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
	"github.com/ccmr-dev/ccmr/log"
	"github.com/ccmr-dev/ccmr/log/dstack"
	"github.com/ccmr-dev/ccmr/log/ima"
	"github.com/ccmr-dev/ccmr/log/tcg"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/snpverify"
	"github.com/ccmr-dev/ccmr/verifier/tdxverify"
)

// Options configure Verify.
type Options struct {
	// Name names the bundle in the report.
	Name string
	// AllowSim lets sim evidence be trusted (with a pinned key).
	AllowSim bool
	// TrustedKeys are pinned public keys (PEM): TPM AKs, the sim key.
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
	// AllowedTCB are the TDX TCB statuses trusted; default UpToDate only.
	AllowedTCB []string
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

	// Monitor state (--state): what was verified before (nil when the
	// machine's entry is not used), and what this verification adds,
	// saved when the bundle is trusted; mon decides (monitor_run.go).
	state *MachineState
	next  *MachineState
	mon   *monitorRun
	// imaStart is where layer 3 starts: the entries and the mr_ima value a
	// monitor state already proved (zero without one).
	imaStart imaPoint
}

// Verify checks a bundle layer by layer. It returns an error only for input
// it cannot use at all; every failed check is a verdict in the report.
func Verify(ctx context.Context, b *Bundle, opts Options) (*Report, error) {
	if opts.At.IsZero() {
		opts.At = time.Now()
	}
	r := &run{b: b, opts: opts, rep: newReport(b, opts.Name), trusted: map[regKey]mr.Digest{},
		virtual: map[string]mr.Digest{}, records: map[string][]mr.Digest{}, proven: -1}
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
	r.rep.Trusted = true
	r.rep.Verdict = r.rep.VerdictLine()
	if opts.Monitor != nil {
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
	var mm *log.Mismatch
	var le *log.Error
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
	want := r.opts.Nonce
	if want == nil && r.opts.Policy != nil {
		want = r.opts.Policy.Nonce
	}
	if want == nil {
		r.weaken(l, "no expected nonce: freshness not proven")
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
		if ok && !got.Equal(c.Digest) {
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
	if len(r.opts.TrustedKeys) == 0 {
		return fail("sim evidence needs a pinned key (--trust-ak FILE)")
	}
	var st *sim.Statement
	var lastErr error
	for _, k := range r.opts.TrustedKeys {
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
	for _, k := range r.opts.TrustedKeys {
		pk, err := tpm.ParseAKPublic(k)
		if err == nil {
			if e, ok := pk.(equaler); ok && e.Equal(ak) {
				return "AK is the pinned key", nil
			}
		}
	}
	if len(r.b.Evidence.AzureHCLReport) > 0 {
		return r.trustAKByHCL(ak)
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
			return "AK certificate chains to the AK roots", nil
		}
	}
	return "", fail("AK is not trusted: pin it with --trust-ak or give an AK certificate and --ak-roots")
}

// ---- layer 1: firmware and runtime logs --------------------------------

func (r *run) logs(ctx context.Context, l *LayerResult) error {
	runtimeRegs := map[string]bool{}
	for _, lg := range r.b.Logs {
		if lg.Format == string(log.FormatRuntime) || lg.Format == string(log.FormatAAELText) {
			runtimeRegs[lg.Register] = true
		}
	}
	chains := map[string][]segment{}
	var order []string
	for i := range r.b.Logs {
		lg := &r.b.Logs[i]
		name := logName(i, lg)
		switch log.Format(lg.Format) {
		case log.FormatTCG2, log.FormatCCEL:
			if err := r.firmwareLog(name, lg, runtimeRegs, l); err != nil {
				return err
			}
		case log.FormatRuntime, log.FormatAAELText:
			if lg.Register == "" {
				return fail("%s: runtime log names no backing register", name)
			}
			if chains[lg.Register] == nil {
				order = append(order, lg.Register)
			}
			chains[lg.Register] = append(chains[lg.Register], segment{name: name, log: lg})
		case log.FormatDstackJSON:
			res, err := dstack.Replay(dstack.NewReader(bytes.NewReader(lg.Data), name), name, nil)
			if err != nil {
				return failFrom(name, err)
			}
			if err := r.compareReplay(name, res, runtimeRegs, l); err != nil {
				return err
			}
		case log.FormatIMABinary, log.FormatIMAASCII:
			if r.imaLog != nil {
				return fail("the bundle holds two IMA lists")
			}
			r.imaLog = lg
		default:
			l.NotChecked = append(l.NotChecked, fmt.Sprintf("%s: format %q is not replayed by the verifier", name, lg.Format))
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
	return nil
}

func logName(i int, lg *Log) string {
	n := fmt.Sprintf("logs[%d] (%s", i, lg.Format)
	if lg.Register != "" {
		n += " on " + lg.Register
	}
	return n + ")"
}

func (r *run) firmwareLog(name string, lg *Log, skip map[string]bool, l *LayerResult) error {
	fl, err := tcg.Parse(name, lg.Data, log.Format(lg.Format))
	if err != nil {
		return failFrom(name, err)
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
	return r.compareReplay(name, res, skip, l)
}

// compareReplay compares every register a log's replay gives with its
// trusted value (registers with a runtime log of their own excepted).
func (r *run) compareReplay(name string, res *log.Replay, skip map[string]bool, l *LayerResult) error {
	n := 0
	for _, v := range res.Registers {
		if skip[v.Register.Name] {
			continue
		}
		want, ok := r.trusted[regKey{v.Register.Name, v.Digest.Alg}]
		if !ok {
			l.NotChecked = append(l.NotChecked, fmt.Sprintf("%s: %s %v is not in the evidence", name, v.Register.Name, v.Digest.Alg))
			continue
		}
		if !want.Equal(v.Digest) {
			return &failError{&Failure{Log: name, Record: -1, Register: v.Register.Name, Expected: want.String(), Computed: v.Digest.String(),
				Reason: fmt.Sprintf("replay of %s does not give the quoted %s", name, v.Register.Name)}}
		}
		n++
	}
	l.Checked = append(l.Checked, fmt.Sprintf("%s: %d events replay to %d quoted register values", name, res.Events, n))
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
	if r.imaLog.Format == string(log.FormatIMAASCII) {
		return ima.NewASCIIReader(bytes.NewReader(data), ima.Options{File: "ima list"})
	}
	return ima.NewBinaryReader(bytes.NewReader(data), ima.Options{File: "ima list"})
}

// shiftIMA turns a failure in the resumed IMA list into whole-list terms.
func (r *run) shiftIMA(err error) error {
	var mm *log.Mismatch
	var le *log.Error
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

// bootAggregate checks the IMA list's boot_aggregate entry against the
// quoted PCRs (TPM only: the kernel takes it from the TPM's PCR 0-9, or 0-7
// before Linux 5.8).
func (r *run) bootAggregate(l *LayerResult) error {
	if r.b.Platform != mr.PlatformTPM || r.imaStart.entries > 0 {
		return nil
	}
	e, err := r.imaReader().Next()
	if err != nil || e.FileName() != ima.BootAggregateName {
		return nil
	}
	pcrs := map[mr.Alg]map[int]mr.Digest{}
	for k, v := range r.trusted {
		var i int
		if _, err := fmt.Sscanf(k.name, "pcr%d", &i); err == nil {
			if pcrs[k.alg] == nil {
				pcrs[k.alg] = map[int]mr.Digest{}
			}
			pcrs[k.alg][i] = v
		}
	}
	rule, err := ima.CheckBootAggregate("ima list", e, pcrs)
	switch {
	case err == nil:
		l.Checked = append(l.Checked, fmt.Sprintf("boot_aggregate matches the quoted PCRs (%v)", rule))
	case errors.Is(err, mr.ErrUnsupported):
		l.NotChecked = append(l.NotChecked, "boot_aggregate: "+err.Error())
	default:
		return failFrom("ima list", err)
	}
	return nil
}

func (r *run) imaLayer(ctx context.Context, l *LayerResult) error {
	if r.imaLog != nil {
		if err := r.bootAggregate(l); err != nil {
			return err
		}
	}
	if r.imaLog == nil {
		if _, ok := r.virtual[ima.VirtualName]; ok {
			l.NotChecked = append(l.NotChecked, "mr_ima has records but the bundle holds no IMA list")
		} else {
			l.NotChecked = append(l.NotChecked, "no IMA list in the bundle")
		}
		return nil
	}
	const name = "ima list"
	if recs, ok := r.records[ima.VirtualName]; ok || r.imaStart.entries > 0 {
		if r.imaStart.offset > int64(len(r.imaLog.Data)) {
			return &failError{&Failure{Log: name, Record: -1, Reason: fmt.Sprintf("the IMA list is %d bytes, shorter than the %d the monitor state proved: rewritten, or a new boot", len(r.imaLog.Data), r.imaStart.offset)}}
		}
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
		if res.Unproven > 0 {
			l.NotChecked = append(l.NotChecked, fmt.Sprintf("%d IMA entries after the last mr_ima record are not proven (not judged by policy)", res.Unproven))
		}
		if r.next != nil {
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
			r.next.IMA = &IMAState{Entries: r.imaStart.entries + res.Events, Offset: off, Value: r.virtual[ima.VirtualName]}
		}
		return nil
	}
	var expect []mr.Value
	for k, v := range r.trusted {
		if k.name == "pcr10" {
			expect = append(expect, mr.Value{Register: mr.Register{Name: "pcr10", Alg: k.alg}, Digest: v})
		}
	}
	if len(expect) == 0 {
		return fail("an IMA list is in the bundle but neither mr_ima nor PCR 10 is trusted to replay it against")
	}
	sort.Slice(expect, func(i, j int) bool { return expect[i].Digest.Alg < expect[j].Digest.Alg })
	res, err := ima.Replay(ctx, r.imaReader(), ima.ReplayOptions{File: name, Expect: expect})
	if err != nil {
		return failFrom(name, err)
	}
	r.proven = res.Events
	l.Checked = append(l.Checked, fmt.Sprintf("%d IMA entries replay to the quoted PCR 10 (%d banks)", res.Events, len(expect)))
	return nil
}

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
		if r.imaLog == nil || r.proven < 0 {
			return fail("the policy gives IMA signature keys but no IMA entry is proven")
		}
		rep, err := ima.CheckSignatures(r.imaReader(), "ima list", p.IMAKeys, r.proven, p.RequireSignatures)
		if err != nil {
			return failFrom("ima list", r.shiftIMA(err))
		}
		l.Checked = append(l.Checked, fmt.Sprintf("IMA signatures: %d verified with the policy's keys, %d entries unsigned", rep.Verified, rep.Unsigned))
	}
	if !p.Aggregate.IsZero() {
		if r.imaLog == nil || r.proven < 0 {
			return fail("the policy names an IMA aggregate but no IMA entry is proven")
		}
		src := ima.NewBinaryReader(bytes.NewReader(r.imaLog.Data), ima.Options{File: "ima list"})
		if r.imaLog.Format == string(log.FormatIMAASCII) {
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
	if r.imaLog == nil || r.proven < 0 {
		l.NotChecked = append(l.NotChecked, "runtime policy: no proven IMA entries to judge")
		return nil
	}
	src := r.imaReader()
	judged, excluded := 0, 0
	for n := 0; n < r.proven; n++ {
		e, err := src.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return failFrom("ima list", err)
		}
		path := e.FileName()
		if rp.Excluded(path) {
			excluded++
			continue
		}
		_, d, ok := e.FileDigest()
		if !ok {
			continue // ima-buf and other entries without a file digest
		}
		if e.IsViolation() {
			return &failError{&Failure{Log: "ima list", Record: r.imaStart.entries + e.Index, Offset: r.imaStart.offset + e.Offset, Reason: fmt.Sprintf("IMA violation entry for %q", path)}}
		}
		if !rp.Allowed(path, hex.EncodeToString(d)) {
			reason := fmt.Sprintf("file %q has digest %x, not a reference digest of the runtime policy", path, d)
			if _, listed := rp.allowed[path]; !listed {
				reason = fmt.Sprintf("file %q is not in the runtime policy (digest %x)", path, d)
			}
			return &failError{&Failure{Log: "ima list", Record: r.imaStart.entries + e.Index, Offset: r.imaStart.offset + e.Offset, Reason: reason}}
		}
		judged++
	}
	l.Checked = append(l.Checked, fmt.Sprintf("runtime policy: %d files match reference digests, %d excluded", judged, excluded))
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
	res, err := tdxverify.Verify(r.b.Evidence.Report, coll, tdxverify.Options{At: r.opts.At, AllowedTCB: r.opts.AllowedTCB})
	if err != nil {
		var cc, nc []string
		if res != nil {
			cc, nc = res.Checked, res.NotChecked
		}
		return hardwareFailure("TDX quote", err, cc, nc, l)
	}
	l.Checked = append(l.Checked, res.Checked...)
	l.NotChecked = append(l.NotChecked, res.NotChecked...)
	if res.TCBStatus != "" {
		l.Checked = append(l.Checked, fmt.Sprintf("TCB status %s %v", res.TCBStatus, res.Advisories))
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
	res, err := snpverify.Verify(r.b.Evidence.Report, r.b.Evidence.Certificates, snpverify.Options{At: r.opts.At})
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
	if want := snp.ReportData(r.b.Nonce); res.ReportData != want {
		return &failError{&Failure{Record: -1, Reason: "the report's REPORT_DATA is not the bundle's nonce", Expected: hex.EncodeToString(want[:]), Computed: hex.EncodeToString(res.ReportData[:])}}
	}
	l.Checked = append(l.Checked, "REPORT_DATA binds the bundle's nonce")
	for _, v := range res.Registers {
		r.trusted[regKey{v.Register.Name, v.Digest.Alg}] = v.Digest
	}
	return nil
}
