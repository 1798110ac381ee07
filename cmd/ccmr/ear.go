package main

import (
	"context"
	"io"
	"time"

	"github.com/spf13/pflag"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/verifier"
	"github.com/ccmr-dev/ccmr/verifier/ear"
)

// earOutput is verify's EAR output (docs/interop.md, "EAR"): --ear-key
// signs the verdict as an EAT Attestation Result, written to --ear-out or,
// without it, to standard output in place of the report.
type earOutput struct {
	keyFile, out string
	key          *ear.Key
}

func (e *earOutput) register(fl *pflag.FlagSet) {
	fl.StringVar(&e.keyFile, "ear-key", "", "sign the verdict as an EAR (EAT Attestation Result, a JWT) with this PEM private key: P-256 (ES256), P-384 (ES384) or Ed25519 (EdDSA)")
	fl.StringVar(&e.out, "ear-out", "", "write the EAR to this file (default: standard output, in place of the report)")
}

// load reads the key before anything is verified: a key that cannot sign
// is unusable input (exit 2), not a verdict written unsigned or not at all
// after the fact.
func (e *earOutput) load(ctx context.Context, g *globals) error {
	if e.keyFile == "" {
		if e.out != "" {
			return usageError("--ear-out needs --ear-key")
		}
		return nil
	}
	if e.out == "" && g.json() {
		// Standard output holds one thing: the token or the JSON report.
		return usageError("--ear-key without --ear-out writes the EAR on standard output: -o json has no room there (give --ear-out FILE)")
	}
	pemBytes, err := readInputFile(ctx, e.keyFile)
	if err != nil {
		return err
	}
	if e.key, err = ear.ParseKey(pemBytes); err != nil {
		return usageError("--ear-key %s: %v", e.keyFile, err)
	}
	return nil
}

// replacesReport says whether the EAR goes to standard output instead of
// the report.
func (e *earOutput) replacesReport() bool { return e.key != nil && e.out == "" }

// write signs and writes the EAR, when --ear-key asked for one.
func (e *earOutput) write(g *globals, b *bundle.Bundle, rep *verifier.Report, opts verifier.Options) error {
	if e.key == nil {
		return nil
	}
	res, err := ear.New(b, rep, opts, buildVersion(), time.Now())
	if err != nil {
		return err
	}
	tok, err := ear.Sign(res, e.key)
	if err != nil {
		return err
	}
	if e.out == "" {
		_, err = io.WriteString(g.stdout, tok+"\n")
		return err
	}
	return writeOutput(e.out, 0o644, func(w io.Writer) error {
		_, err := io.WriteString(w, tok+"\n")
		return err
	})
}
