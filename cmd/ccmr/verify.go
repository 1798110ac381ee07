package main

import (
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier"
)

func newVerifyCmd(g *globals) *cobra.Command {
	var policyFile, nonceHex, at, roots, collateral, stateFile, stateKeyFile string
	var allowTCB, appLogs []string
	var trustKeys []string
	var opts verifier.Options
	cmd := &cobra.Command{
		Use:   "verify BUNDLE",
		Short: "Verify an evidence bundle layer by layer; exit 0 trusted, 1 not trusted, 2 unusable input",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			b, err := verifier.ReadBundle(f, args[0])
			f.Close()
			if err != nil {
				return err
			}
			opts.Name = args[0]
			if policyFile != "" {
				if opts.Policy, err = verifier.LoadPolicy(policyFile); err != nil {
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
				opts.TrustedKeys = append(opts.TrustedKeys, pem)
			}
			if roots != "" {
				pem, err := os.ReadFile(roots)
				if err != nil {
					return &exitError{code: exitUsage, err: err}
				}
				opts.AKRoots = x509.NewCertPool()
				if !opts.AKRoots.AppendCertsFromPEM(pem) {
					return usageError("--ak-roots %s: no PEM certificate", roots)
				}
			}
			if collateral != "" {
				if opts.TDXCollateral, err = os.ReadFile(collateral); err != nil {
					return &exitError{code: exitUsage, err: err}
				}
			}
			opts.AllowedTCB = allowTCB
			for _, a := range appLogs {
				reg, file, ok := strings.Cut(a, "=")
				if !ok || !mr.IsVirtualName(reg) {
					return usageError("--app-log %q: want mr_NAME=FILE", a)
				}
				data, err := os.ReadFile(file)
				if err != nil {
					return &exitError{code: exitUsage, err: err}
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
			} else if stateKeyFile != "" || opts.Machine != "" {
				return usageError("--state-key and --machine need --state FILE")
			}
			rep, err := verifier.Verify(cmd.Context(), b, opts)
			if err != nil {
				return err
			}
			if stateFile != "" && rep.Trusted {
				if err := opts.Monitor.Save(stateFile, stateKey); err != nil {
					return err
				}
			}
			if g.json() {
				err = writeJSON(g.stdout, rep)
			} else {
				err = rep.WriteText(g.stdout)
			}
			if err != nil {
				return err
			}
			if !rep.Trusted {
				return &exitError{code: exitFail, err: fmt.Errorf("%s: not trusted (layer %d failed)", args[0], rep.FailedLayer())}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&policyFile, "policy", "", "policy file (docs/policy.md)")
	fl.StringVar(&nonceHex, "nonce", "", "expected nonce (hex)")
	fl.StringVar(&at, "at", "", "time for certificate and collateral validity (RFC 3339; default now)")
	fl.StringArrayVar(&trustKeys, "trust-ak", nil, "pinned attestation public key, PEM: TPM AK or sim key (repeatable)")
	fl.StringVar(&roots, "ak-roots", "", "CA certificates (PEM) for AK certificates")
	fl.BoolVar(&opts.AllowSim, "allow-sim", false, "trust sim evidence signed by a pinned key")
	fl.StringArrayVar(&appLogs, "app-log", nil, "application log mr_NAME=FILE checked against its virtual register: record i = sha384(line i with its LF) (repeatable)")
	fl.StringVar(&stateFile, "state", "", "monitor state file: verify from where this machine's last trusted bundle stopped, and advance it")
	fl.StringVar(&opts.Machine, "machine", "", "machine name in the monitor state (default: from the TPM AK or sim key; required for TDX and SNP)")
	fl.StringVar(&stateKeyFile, "state-key", "", "secret key file (at least 16 bytes): the monitor state carries an HMAC-SHA256 under it, checked on load")
	fl.StringVar(&collateral, "collateral", "", "TDX collateral (Intel PCS, QuoteCollateralV3 JSON) instead of the bundle's")
	fl.StringSliceVar(&allowTCB, "allow-tcb", nil, "TDX TCB statuses to trust (default UpToDate)")
	return cmd
}

// monitorArgs checks the monitor options against the bundle and reads the
// state key. Evidence with no per-machine identity (a TDX quote, an SNP
// report: their keys belong to the platform, shared by its guests) needs
// --machine, or every such machine would share one entry.
func monitorArgs(b *verifier.Bundle, machine, keyFile string) ([]byte, error) {
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

// minStateKey is the shortest state key accepted: 128 bits.
const minStateKey = 16
