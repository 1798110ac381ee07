package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier"
)

func newVerifyCmd(g *globals) *cobra.Command {
	v := &verifyCmd{g: g}
	cmd := &cobra.Command{
		Use:   "verify BUNDLE|-",
		Short: "Verify an evidence bundle layer by layer; exit 0 trusted, 1 not trusted, 2 unusable input",
		Args:  cobra.ExactArgs(1),
		// Every file verify reads whole must be a bounded regular file: a
		// FIFO blocks in open beyond SIGTERM, /dev/zero fills memory.
		PreRunE: func(cmd *cobra.Command, args []string) error {
			// Flags other commits add (--snp-crl, --trust-sim-key,
			// --state-key) are checked once they exist.
			files := flagFiles(cmd, "policy", "trust-ak", "trust-sim-key", "ak-roots", "snp-crl", "collateral", "state", "state-key", "ear-key", "keylime-key")
			if err := requireInputFiles(files...); err != nil {
				return err
			}
			// The bundle is not read whole (a v2 bundle's logs stay in
			// the file), so it has its own bound (bundle.MaxArchive), not
			// maxInput; standard input ("-") is copied to a temporary file.
			if args[0] == "-" {
				return nil
			}
			return requireRegular(args[0])
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return v.run(cmd.Context(), cmd.InOrStdin(), args[0])
		},
	}
	opts := &v.opts
	fl := cmd.Flags()
	fl.StringVar(&v.policyFile, "policy", "", "policy file (docs/policy.md)")
	fl.StringVar(&v.keylimeKey, "keylime-key", "", "PEM EC public key or certificate that signed the policy's Keylime runtime policy (a DSSE envelope, as keylime-policy sign writes); verified before use")
	fl.StringVar(&v.nonceHex, "nonce", "", "expected nonce (hex)")
	fl.StringVar(&v.at, "at", "", "time for certificate and collateral validity (RFC 3339; default now)")
	fl.StringArrayVar(&v.trustKeys, "trust-ak", nil, "pinned TPM AK public key, PEM (repeatable); never vouches for sim evidence")
	fl.StringArrayVar(&v.simKeys, "trust-sim-key", nil, "pinned sim device key, PEM from ccmr key on the sim (repeatable); with --allow-sim, and never vouches for a TPM quote")
	fl.BoolVar(&opts.RequireNonce, "require-nonce", false, "fail when no expected nonce is given (--nonce or the policy's)")
	fl.BoolVar(&opts.AllowMissingCollateral, "allow-missing-collateral", false, "let a TDX quote without collateral pass, weakened (TCB level, QE identity, revocation not checked)")
	fl.BoolVar(&opts.AzureHCL, "azure-hcl", false, "trust the TPM AK through the bundle's Azure HCL report (the policy's snp/tdx section must give the launch measurement)")
	fl.StringVar(&v.snpCRL, "snp-crl", "", "AMD CRL (DER or PEM) of the SNP report's product line: revocation of the ASK/ASVK and VCEK/VLEK")
	fl.StringVar(&v.roots, "ak-roots", "", "CA certificates (PEM) for AK certificates")
	fl.BoolVar(&opts.AllowSim, "allow-sim", false, "trust sim evidence signed by a key pinned with --trust-sim-key")
	fl.StringArrayVar(&v.appLogs, "app-log", nil, "application log mr_NAME=FILE checked against its virtual register: record i = sha384(line i with its LF) (repeatable)")
	fl.StringVar(&v.stateFile, "state", "", "monitor state file: verify from where this machine's last trusted bundle stopped, and advance it")
	fl.StringVar(&opts.Machine, "machine", "", "machine name in the monitor state (default: from the TPM AK or sim key; required for TDX and SNP)")
	fl.StringVar(&v.printSince, "print-since", "", "with --state, after a TRUSTED verdict: write the machine's since file (ccmr-since/v1) to FILE, for quote --since")
	fl.StringVar(&v.stateKeyFile, "state-key", "", "secret key file (at least 16 bytes): the monitor state carries an HMAC-SHA256 under it, checked on load")
	fl.StringVar(&v.collateral, "collateral", "", "TDX collateral (Intel PCS, QuoteCollateralV3 JSON) instead of the bundle's")
	fl.StringSliceVar(&v.allowTCB, "allow-tcb", nil, "TDX TCB statuses to trust besides UpToDate (e.g. SWHardeningNeeded)")
	fl.BoolVar(&opts.AcceptUnverifiedHistory, "accept-unverified-history", false, "accept a runtime log that starts (INIT or snapshot) at a value nothing proves; the verdict says TRUSTED (weakened: ...) naming the history never judged")
	v.earOut.register(fl)
	fl.BoolVar(&opts.AllowUnquotedLogRegisters, "allow-unquoted-log-registers", false, "accept firmware/CC log events on registers the evidence does not cover (a TPM quote of some PCRs); the verdict says TRUSTED (weakened: ...) naming them")
	return cmd
}

// verifyCmd holds ccmr verify's flags and runs it.
type verifyCmd struct {
	g *globals

	policyFile string
	keylimeKey string // the Keylime runtime policy's DSSE signing key
	nonceHex   string
	at         string

	trustKeys, simKeys []string
	snpCRL             string
	roots              string
	collateral         string
	allowTCB           []string
	appLogs            []string

	stateFile, stateKeyFile, printSince string

	opts   verifier.Options
	earOut earOutput
}

// run verifies the bundle arg ("-": standard input) as the flags say.
func (v *verifyCmd) run(ctx context.Context, stdin io.Reader, arg string) error {
	if err := v.earOut.load(ctx, v.g); err != nil {
		return err
	}
	var b *bundle.Bundle
	var err error
	if arg == "-" {
		b, err = readStdinBundle(ctx, stdin)
	} else {
		b, err = bundle.Open(ctx, arg)
	}
	if err != nil {
		return notABundle(arg, err)
	}
	defer b.Close()
	v.opts.Name = arg
	if arg == "-" {
		v.opts.Name = "standard input"
	}
	for _, load := range []func(context.Context) error{v.loadPolicy, v.loadKeys, v.loadCollateral, v.loadAppLogs} {
		if err := load(ctx); err != nil {
			return err
		}
	}
	stateKey, unlock, err := v.loadState(ctx, b)
	if unlock != nil {
		defer unlock()
	}
	if err != nil {
		return err
	}
	m, show := v.g.meter("verify (logs read)", attachedBytes(b))
	if show {
		meterLogs(b, m)
	}
	rep, err := verifier.Verify(ctx, b, v.opts)
	m.Done()
	if err != nil {
		return err
	}
	return v.finish(b, rep, stateKey, arg)
}

// loadPolicy reads --policy (checked with --keylime-key when given),
// --nonce and --at.
func (v *verifyCmd) loadPolicy(context.Context) error {
	opts := &v.opts
	var err error
	if v.policyFile != "" && v.keylimeKey == "" {
		if opts.Policy, err = verifier.LoadPolicy(v.policyFile); err != nil {
			return &exitError{code: exitUsage, err: err}
		}
	}
	if v.keylimeKey != "" {
		if opts.Policy, err = loadPolicyKeylimeKey(v.policyFile, v.keylimeKey); err != nil {
			return &exitError{code: exitUsage, err: err}
		}
	}
	if v.nonceHex != "" {
		if opts.Nonce, err = hex.DecodeString(v.nonceHex); err != nil {
			return usageError("--nonce %q: want hex digits", v.nonceHex)
		}
	}
	if v.at != "" {
		if opts.At, err = time.Parse(time.RFC3339, v.at); err != nil {
			return usageError("--at %q: want RFC 3339 time", v.at)
		}
	}
	return nil
}

// loadKeys reads the pinned keys of --trust-ak and --trust-sim-key, the
// SNP CRL and the AK roots.
func (v *verifyCmd) loadKeys(context.Context) error {
	return loadTrust(&v.opts, v.trustKeys, v.simKeys, v.snpCRL, v.roots)
}

// loadCollateral reads --collateral and checks --allow-tcb.
func (v *verifyCmd) loadCollateral(context.Context) error {
	return loadTDXTrust(&v.opts, v.collateral, v.allowTCB)
}

// loadAppLogs reads the --app-log files, one per virtual register.
func (v *verifyCmd) loadAppLogs(ctx context.Context) error {
	opts := &v.opts
	for _, a := range v.appLogs {
		reg, file, ok := strings.Cut(a, "=")
		if !ok || !mr.IsVirtualName(reg) {
			return usageError("--app-log %q: want mr_NAME=FILE", a)
		}
		if _, dup := opts.AppLogs[reg]; dup {
			// One register has one log: keeping either would
			// leave the other unchecked.
			return usageError("--app-log %s given more than once: one log per register", reg)
		}
		data, err := readInputFile(ctx, file)
		if err != nil {
			return err
		}
		if opts.AppLogs == nil {
			opts.AppLogs = map[string][]byte{}
		}
		opts.AppLogs[reg] = data
	}
	return nil
}

// loadState locks and loads the --state file for b and returns its key
// and the unlock, which the caller defers (also when err is not nil) so
// that the lock covers load, verify and save.
func (v *verifyCmd) loadState(ctx context.Context, b *bundle.Bundle) (stateKey []byte, unlock func(), err error) {
	opts := &v.opts
	if v.stateFile == "" {
		if v.stateKeyFile != "" || opts.Machine != "" || v.printSince != "" {
			return nil, nil, usageError("--state-key, --machine and --print-since need --state FILE")
		}
		return nil, nil, nil
	}
	if stateKey, err = monitorArgs(b, opts.Machine, v.stateKeyFile); err != nil {
		return nil, nil, err
	}
	// The lock covers load, verify and save: two verifications
	// of one state file neither lose an update nor tear it.
	unlock, err = verifier.LockState(ctx, v.stateFile)
	if err != nil {
		return nil, nil, err
	}
	if opts.Monitor, err = verifier.LoadState(v.stateFile, stateKey); err != nil {
		return nil, unlock, &exitError{code: exitUsage, err: err}
	}
	return stateKey, unlock, nil
}

// finish saves the advanced monitor state of a trusted verdict, writes
// the report (or EAR) and says the verdict by the error, then writes the
// --print-since file.
func (v *verifyCmd) finish(b *bundle.Bundle, rep *verifier.Report, stateKey []byte, arg string) error {
	g := v.g
	if v.stateFile != "" && rep.Trusted {
		if err := v.opts.Monitor.Save(v.stateFile, stateKey); err != nil {
			return err
		}
	}
	err := v.earOut.write(g, b, rep, v.opts)
	if err == nil && !v.earOut.replacesReport() {
		if g.json() {
			err = writeJSON(g.stdout, rep)
		} else {
			err = writeReportText(g, rep)
		}
	}
	if err != nil {
		return err
	}
	if !rep.Trusted {
		return &exitError{code: exitFail, err: fmt.Errorf("%s: not trusted (layer %d failed)", arg, rep.FailedLayer())}
	}
	if v.printSince != "" {
		// After the report, so a since file that cannot be
		// written (exit 1) does not hide the verdict.
		return writeSince(v.printSince, v.opts.Monitor, v.opts.Machine, b)
	}
	return nil
}

// onePEMKey checks that a pinned-key file holds exactly one key that parse
// accepts: a second block would be ignored by the verifier, so it is
// refused rather than left unpinned without a word.
func onePEMKey[K any](b []byte, parse func([]byte) (K, error)) error {
	if _, err := parse(b); err != nil {
		return err
	}
	_, rest := pem.Decode(b)
	if len(bytes.TrimSpace(rest)) != 0 {
		return fmt.Errorf("%w: data after the first PEM block (one key per file)", mr.ErrMalformed)
	}
	return nil
}

// monitorArgs checks the monitor options against the bundle and reads the
// state key. Evidence with no per-machine identity (a TDX quote, an SNP
// report: their keys belong to the platform, shared by its guests) needs
// --machine, or every such machine would share one entry.
func monitorArgs(b *bundle.Bundle, machine, keyFile string) ([]byte, error) {
	if machine == "" && verifier.MachineID(b) == "" {
		return nil, usageError("--state: %s evidence carries no per-machine identity (every %s machine would share one state entry): name the machine with --machine NAME", b.Platform, b.Platform)
	}
	if keyFile == "" {
		return nil, nil
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, &exitError{code: exitUsage, err: err}
	}
	if len(key) < minStateKey {
		return nil, usageError("--state-key %s: %d bytes, want at least %d secret bytes", keyFile, len(key), minStateKey)
	}
	return key, nil
}

// readStdinBundle reads a bundle from standard input. A read of standard
// input cannot be interrupted, so streamInput does it on its own goroutine
// and SIGTERM (ctx) ends the read at once, however long the writer waits.
func readStdinBundle(ctx context.Context, stdin io.Reader) (*bundle.Bundle, error) {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(streamInput(ctx, "-", stdin, func(b []byte) error {
			_, err := pw.Write(b)
			return err
		}))
	}()
	// Closing the reader ends the copy when the bundle is refused
	// before its end.
	defer pr.Close()
	return bundle.ReadContext(ctx, pr, "standard input")
}

// writeSince writes how far the state now covers the machine's logs (the
// machine verify advanced: --machine, else the bundle's identity) as a since
// file; no entry for it is an error, not an empty file (a guest sending
// whole logs would pass, but the caller asked for a point).
func writeSince(path string, st *verifier.MonitorState, machine string, b *bundle.Bundle) error {
	if machine == "" {
		machine = verifier.MachineID(b)
	}
	s, ok := st.Since(machine)
	if !ok {
		return fmt.Errorf("--print-since: the monitor state holds no entry for %s", machine)
	}
	data, err := s.Marshal()
	if err != nil {
		return err
	}
	return writeOutput(path, 0o644, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// minStateKey is the shortest state key accepted: 128 bits.
const minStateKey = 16
