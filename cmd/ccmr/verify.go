package main

import (
	"bytes"
	"context"
	"crypto/x509"
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
	"github.com/ccmr-dev/ccmr/verifier/simverify"
	"github.com/ccmr-dev/ccmr/verifier/snpverify"
	"github.com/ccmr-dev/ccmr/verifier/tdxverify"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
)

func newVerifyCmd(g *globals) *cobra.Command {
	var policyFile, nonceHex, at, roots, collateral, stateFile, stateKeyFile, printSince string
	var allowTCB, appLogs []string
	var trustKeys, simKeys []string
	var snpCRL string
	var keylimeKey string // the Keylime runtime policy's DSSE signing key
	var opts verifier.Options
	var earOut earOutput
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
			if err := earOut.load(cmd.Context(), g); err != nil {
				return err
			}
			var b *bundle.Bundle
			var err error
			if args[0] == "-" {
				b, err = readStdinBundle(cmd.Context(), cmd.InOrStdin())
			} else {
				b, err = bundle.Open(cmd.Context(), args[0])
			}
			if err != nil {
				return err
			}
			defer b.Close()
			opts.Name = args[0]
			if args[0] == "-" {
				opts.Name = "standard input"
			}
			if policyFile != "" && keylimeKey == "" {
				if opts.Policy, err = verifier.LoadPolicy(policyFile); err != nil {
					return &exitError{code: exitUsage, err: err}
				}
			}
			if keylimeKey != "" {
				if opts.Policy, err = loadPolicyKeylimeKey(policyFile, keylimeKey); err != nil {
					return &exitError{code: exitUsage, err: err}
				}
			}
			if nonceHex != "" {
				if opts.Nonce, err = hex.DecodeString(nonceHex); err != nil {
					return usageError("--nonce %q: want hex digits", nonceHex)
				}
			}
			if at != "" {
				if opts.At, err = time.Parse(time.RFC3339, at); err != nil {
					return usageError("--at %q: want RFC 3339 time", at)
				}
			}
			for _, k := range trustKeys {
				pem, err := os.ReadFile(k)
				if err != nil {
					return &exitError{code: exitUsage, err: err}
				}
				// A file that holds no key would pin nothing: refuse it
				// rather than verify without the pin the caller meant.
				if err := onePEMKey(pem, tpmverify.ParseAKPublic); err != nil {
					return usageError("--trust-ak %s: %v", k, err)
				}
				opts.TrustedKeys = append(opts.TrustedKeys, pem)
			}
			for _, k := range simKeys {
				pem, err := os.ReadFile(k)
				if err != nil {
					return &exitError{code: exitUsage, err: err}
				}
				if err := onePEMKey(pem, func(b []byte) (any, error) { return simverify.ParsePublicKey(b) }); err != nil {
					return usageError("--trust-sim-key %s: %v", k, err)
				}
				opts.SimKeys = append(opts.SimKeys, pem)
			}
			if snpCRL != "" {
				if opts.SNPCRL, err = os.ReadFile(snpCRL); err != nil {
					return &exitError{code: exitUsage, err: err}
				}
				if _, err := snpverify.ParseCRL(opts.SNPCRL); err != nil {
					return usageError("--snp-crl %s: %v", snpCRL, err)
				}
			}
			if roots != "" {
				pem, err := os.ReadFile(roots)
				if err != nil {
					return &exitError{code: exitUsage, err: err}
				}
				opts.AKRoots = x509.NewCertPool()
				if !opts.AKRoots.AppendCertsFromPEM(pem) {
					// Google publishes its EK/AK CA certificates as DER.
					c, err := x509.ParseCertificate(pem)
					if err != nil {
						return usageError("--ak-roots %s: no PEM certificate, nor one DER certificate: %v", roots, err)
					}
					opts.AKRoots.AddCert(c)
				}
			}
			if collateral != "" {
				if opts.TDXCollateral, err = os.ReadFile(collateral); err != nil {
					return &exitError{code: exitUsage, err: err}
				}
				if _, err := tdxverify.ParseCollateral(opts.TDXCollateral); err != nil {
					return usageError("--collateral %s: %v", collateral, err)
				}
			}
			if _, err := tdxverify.AllowedStatuses(allowTCB); err != nil {
				return usageError("--allow-tcb: %v", err)
			}
			opts.AllowedTCB = allowTCB
			for _, a := range appLogs {
				reg, file, ok := strings.Cut(a, "=")
				if !ok || !mr.IsVirtualName(reg) {
					return usageError("--app-log %q: want mr_NAME=FILE", a)
				}
				if _, dup := opts.AppLogs[reg]; dup {
					// One register has one log: keeping either would
					// leave the other unchecked.
					return usageError("--app-log %s given more than once: one log per register", reg)
				}
				data, err := readInputFile(cmd.Context(), file)
				if err != nil {
					return err
				}
				if opts.AppLogs == nil {
					opts.AppLogs = map[string][]byte{}
				}
				opts.AppLogs[reg] = data
			}
			var stateKey []byte
			if stateFile != "" {
				if stateKey, err = monitorArgs(b, opts.Machine, stateKeyFile); err != nil {
					return err
				}
				// The lock covers load, verify and save: two verifications
				// of one state file neither lose an update nor tear it.
				unlock, err := verifier.LockState(cmd.Context(), stateFile)
				if err != nil {
					return err
				}
				defer unlock()
				if opts.Monitor, err = verifier.LoadState(stateFile, stateKey); err != nil {
					return &exitError{code: exitUsage, err: err}
				}
			} else if stateKeyFile != "" || opts.Machine != "" || printSince != "" {
				return usageError("--state-key, --machine and --print-since need --state FILE")
			}
			m, show := g.meter("verify (logs read)", attachedBytes(b))
			if show {
				meterLogs(b, m)
			}
			rep, err := verifier.Verify(cmd.Context(), b, opts)
			m.Done()
			if err != nil {
				return err
			}
			if stateFile != "" && rep.Trusted {
				if err := opts.Monitor.Save(stateFile, stateKey); err != nil {
					return err
				}
			}
			err = earOut.write(g, b, rep, opts)
			if err == nil && !earOut.replacesReport() {
				if g.json() {
					err = writeJSON(g.stdout, rep)
				} else {
					err = rep.WriteText(g.stdout)
				}
			}
			if err != nil {
				return err
			}
			if !rep.Trusted {
				return &exitError{code: exitFail, err: fmt.Errorf("%s: not trusted (layer %d failed)", args[0], rep.FailedLayer())}
			}
			if printSince != "" {
				// After the report, so a since file that cannot be
				// written (exit 1) does not hide the verdict.
				return writeSince(printSince, opts.Monitor, opts.Machine, b)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&policyFile, "policy", "", "policy file (docs/policy.md)")
	fl.StringVar(&keylimeKey, "keylime-key", "", "PEM EC public key or certificate that signed the policy's Keylime runtime policy (a DSSE envelope, as keylime-policy sign writes); verified before use")
	fl.StringVar(&nonceHex, "nonce", "", "expected nonce (hex)")
	fl.StringVar(&at, "at", "", "time for certificate and collateral validity (RFC 3339; default now)")
	fl.StringArrayVar(&trustKeys, "trust-ak", nil, "pinned TPM AK public key, PEM (repeatable); never vouches for sim evidence")
	fl.StringArrayVar(&simKeys, "trust-sim-key", nil, "pinned sim device key, PEM from ccmr key on the sim (repeatable); with --allow-sim, and never vouches for a TPM quote")
	fl.BoolVar(&opts.RequireNonce, "require-nonce", false, "fail when no expected nonce is given (--nonce or the policy's)")
	fl.BoolVar(&opts.AllowMissingCollateral, "allow-missing-collateral", false, "let a TDX quote without collateral pass, weakened (TCB level, QE identity, revocation not checked)")
	fl.BoolVar(&opts.AzureHCL, "azure-hcl", false, "trust the TPM AK through the bundle's Azure HCL report (the policy's snp/tdx section must give the launch measurement)")
	fl.StringVar(&snpCRL, "snp-crl", "", "AMD CRL (DER or PEM) of the SNP report's product line: revocation of the ASK/ASVK and VCEK/VLEK")
	fl.StringVar(&roots, "ak-roots", "", "CA certificates (PEM) for AK certificates")
	fl.BoolVar(&opts.AllowSim, "allow-sim", false, "trust sim evidence signed by a key pinned with --trust-sim-key")
	fl.StringArrayVar(&appLogs, "app-log", nil, "application log mr_NAME=FILE checked against its virtual register: record i = sha384(line i with its LF) (repeatable)")
	fl.StringVar(&stateFile, "state", "", "monitor state file: verify from where this machine's last trusted bundle stopped, and advance it")
	fl.StringVar(&opts.Machine, "machine", "", "machine name in the monitor state (default: from the TPM AK or sim key; required for TDX and SNP)")
	fl.StringVar(&printSince, "print-since", "", "with --state, after a TRUSTED verdict: write the machine's since file (ccmr-since/v1) to FILE, for quote --since")
	fl.StringVar(&stateKeyFile, "state-key", "", "secret key file (at least 16 bytes): the monitor state carries an HMAC-SHA256 under it, checked on load")
	fl.StringVar(&collateral, "collateral", "", "TDX collateral (Intel PCS, QuoteCollateralV3 JSON) instead of the bundle's")
	fl.StringSliceVar(&allowTCB, "allow-tcb", nil, "TDX TCB statuses to trust besides UpToDate (e.g. SWHardeningNeeded)")
	fl.BoolVar(&opts.AcceptUnverifiedHistory, "accept-unverified-history", false, "accept a runtime log that starts (INIT or snapshot) at a value nothing proves; the verdict says TRUSTED (weakened: ...) naming the history never judged")
	earOut.register(fl)
	fl.BoolVar(&opts.AllowUnquotedLogRegisters, "allow-unquoted-log-registers", false, "accept firmware/CC log events on registers the evidence does not cover (a TPM quote of some PCRs); the verdict says TRUSTED (weakened: ...) naming them")
	return cmd
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
