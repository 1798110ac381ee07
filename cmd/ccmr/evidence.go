package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/bundle/importer"
)

func newEvidenceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "evidence",
		Short: "Evidence made elsewhere (tpm2-tools, cloud agents, Azure HCL, TDX/SNP tools)",
	}
	cmd.AddCommand(newEvidenceImportCmd(g))
	cmd.AddCommand(newEvidenceShowCmd(g))
	return cmd
}

// readPart reads one part's file, at most maxInput bytes and honouring ctx
// (a FIFO or /dev/zero given as a part must not hang or exhaust memory); a
// file that cannot be read is bad input naming the part.
func readPart(ctx context.Context, part, name string) (*importer.File, error) {
	b, err := readInputFile(ctx, name)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, usageError("%s %s: %w", part, name, err)
	}
	return &importer.File{Name: name, Data: b}, nil
}

func newEvidenceImportCmd(g *globals) *cobra.Command {
	c := &importCmd{g: g}
	cmd := &cobra.Command{
		Use:   "import -O BUNDLE [parts]",
		Short: "Make a ccmr-evidence/v1 bundle from loose evidence parts; exit 2 names a bad part",
		Long: `Make a ccmr-evidence/v1 bundle (docs/bundle.md) from evidence other tools made,
for ccmr verify. Nothing is verified here; every part must parse and agree.

TPM: --tpm-quote/--tpm-sig/--tpm-pcrs are tpm2_quote's -m/-s/-o files, repeatable and
paired in order (one quote per PCR bank). --ak is PEM, TPM2B_PUBLIC or TPMT_PUBLIC.
Azure CVM: add --azure-hcl-report (vTPM NV index 0x01400001) with --vcek (SNP) or
--tdx-quote [--collateral] (TDX); --ak defaults to the report's HCLAkPub.
TDX: --tdx-quote [--collateral]. SNP: --snp-report with --vcek or --vlek.
Logs: --log FORMAT=FILE (tcg2, ccel, ima-binary, ..., auto); a runtime log names its
backing register: --log runtime:rtmr3=FILE.
Whole files of other tools, one flag each: --gotpm FILE (go-tpm-tools' Attestation
protobuf: AK, certificates, quotes per bank, event logs) and --trustee FILE (Trustee
attester evidence JSON: tdx, snp, az-snp-vtpm, az-tdx-vtpm, tpm). Other flags may add what the
file lacks (--collateral, --log, --ak-cert, --nonce), never replace what it holds.
The nonce defaults to what the evidence binds: the quotes' qualifying data, or the
64-byte report data of a TDX quote or SNP report; --nonce must agree with it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.run(cmd.Context(), cmd.Flags().Changed("nonce"))
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&c.out, "out", "O", "", "write the bundle to FILE (- for standard output)")
	fl.StringArrayVar(&c.quotes, "tpm-quote", nil, "TPMS_ATTEST of a quote (tpm2_quote -m; bare or TPM2B); repeatable")
	fl.StringArrayVar(&c.sigs, "tpm-sig", nil, "TPMT_SIGNATURE of the quote (tpm2_quote -s); paired in order")
	fl.StringArrayVar(&c.pcrs, "tpm-pcrs", nil, "quoted PCR values, serialized (tpm2_quote -o); paired in order")
	fl.StringVar(&c.ak, "ak", "", "AK public key: PEM, TPM2B_PUBLIC or TPMT_PUBLIC")
	fl.StringArrayVar(&c.akCerts, "ak-cert", nil, "AK certificate, PEM or DER (repeatable)")
	fl.StringVar(&c.tdxQuote, "tdx-quote", "", "TDX quote v4/v5")
	fl.StringVar(&c.coll, "collateral", "", "Intel PCS collateral for the TDX quote (QuoteCollateralV3 JSON)")
	fl.StringVar(&c.snpReport, "snp-report", "", "SEV-SNP attestation report")
	fl.StringVar(&c.vcek, "vcek", "", "VCEK certificate (PEM or DER; a PEM chain may follow)")
	fl.StringVar(&c.vlek, "vlek", "", "VLEK certificate (PEM or DER)")
	fl.StringVar(&c.hcl, "azure-hcl-report", "", "Azure CVM HCL report (vTPM NV index 0x01400001)")
	fl.StringArrayVar(&c.logs, "log", nil, "log FORMAT=FILE, runtime logs runtime:REG=FILE (repeatable)")
	fl.StringVar(&c.gotpm, "gotpm", "", "go-tpm-tools Attestation protobuf (gotpm attest, GCE agents): every part it holds")
	fl.StringVar(&c.trustee, "trustee", "", "Trustee attester evidence JSON (tdx, snp, az-snp-vtpm, az-tdx-vtpm, tpm): every part it holds")
	fl.StringVar(&c.nonceHex, "nonce", "", "nonce the evidence binds (hex; default: taken from the evidence)")
	return cmd
}

// importCmd holds ccmr evidence import's flags and runs it.
type importCmd struct {
	g *globals

	out, nonceHex                                  string
	ak, tdxQuote, coll, snpReport, vcek, vlek, hcl string
	gotpm, trustee                                 string
	quotes, sigs, pcrs, akCerts, logs              []string
}

// run reads the parts, builds the bundle and writes it with a summary;
// nonceGiven says --nonce was given (an empty one included).
func (c *importCmd) run(ctx context.Context, nonceGiven bool) error {
	if c.out == "" {
		return usageError("-O BUNDLE is required")
	}
	var p importer.Parts
	whole, kind, err := readWhole(ctx, c.gotpm, c.trustee, &p)
	if err != nil {
		return err
	}
	if err := c.readQuotes(ctx, whole, &p); err != nil {
		return err
	}
	if err := c.readSingles(ctx, whole, &p); err != nil {
		return err
	}
	if err := c.readCertsAndLogs(ctx, &p); err != nil {
		return err
	}
	if nonceGiven {
		n, err := hex.DecodeString(c.nonceHex)
		if err != nil {
			return usageError("--nonce %q: want hex digits", c.nonceHex)
		}
		p.Nonce = n
	}
	b, err := importer.Build(p)
	if err != nil {
		var pe *importer.PartError
		if errors.As(err, &pe) {
			return &exitError{code: exitUsage, err: err}
		}
		return err
	}
	var buf bytes.Buffer
	if err := b.Write(&buf); err != nil {
		return err
	}
	if c.out == "-" {
		_, err = c.g.stdout.Write(buf.Bytes())
		return err
	}
	if err := writeOutput(c.out, 0o644, func(w io.Writer) error {
		_, err := w.Write(buf.Bytes())
		return err
	}); err != nil {
		return err
	}
	return c.summary(b, kind)
}

// readQuotes reads the --tpm-quote, --tpm-sig and --tpm-pcrs files, paired
// in order, into p; whole names the whole-file part that gave p's quotes,
// if any.
func (c *importCmd) readQuotes(ctx context.Context, whole string, p *importer.Parts) error {
	quotes, sigs, pcrs := c.quotes, c.sigs, c.pcrs
	if whole != "" && len(quotes) > 0 {
		return usageError("%s: the TPM quotes come from %s", importer.PartTPMQuote, whole)
	}
	if len(sigs) != len(quotes) {
		return usageError("%d --tpm-quote and %d --tpm-sig: give them in pairs, in order", len(quotes), len(sigs))
	}
	if len(pcrs) > len(quotes) {
		return usageError("%d --tpm-pcrs for %d --tpm-quote", len(pcrs), len(quotes))
	}
	for i := range quotes {
		a, err := readPart(ctx, importer.PartTPMQuote, quotes[i])
		if err != nil {
			return err
		}
		s, err := readPart(ctx, importer.PartTPMSig, sigs[i])
		if err != nil {
			return err
		}
		q := importer.TPMQuote{Attest: *a, Signature: *s}
		if i < len(pcrs) {
			if q.PCRs, err = readPart(ctx, importer.PartTPMPCRs, pcrs[i]); err != nil {
				return err
			}
		}
		p.TPMQuotes = append(p.TPMQuotes, q)
	}
	return nil
}

// readSingles reads the parts given at most once into p; one that whole
// (the whole-file part) already gave is refused.
func (c *importCmd) readSingles(ctx context.Context, whole string, p *importer.Parts) error {
	single := []struct {
		part, name string
		dst        **importer.File
	}{
		{importer.PartAK, c.ak, &p.AK}, {importer.PartTDXQuote, c.tdxQuote, &p.TDXQuote},
		{importer.PartCollateral, c.coll, &p.Collateral}, {importer.PartSNPReport, c.snpReport, &p.SNPReport},
		{importer.PartVCEK, c.vcek, &p.VCEK}, {importer.PartVLEK, c.vlek, &p.VLEK}, {importer.PartHCL, c.hcl, &p.AzureHCLReport},
	}
	for _, s := range single {
		if s.name == "" {
			continue
		}
		if *s.dst != nil {
			return usageError("%s %s: %s already gives it", s.part, s.name, whole)
		}
		f, err := readPart(ctx, s.part, s.name)
		if err != nil {
			return err
		}
		*s.dst = f
	}
	return nil
}

// readCertsAndLogs reads the --ak-cert and --log files into p.
func (c *importCmd) readCertsAndLogs(ctx context.Context, p *importer.Parts) error {
	for _, a := range c.akCerts {
		f, err := readPart(ctx, importer.PartAKCert, a)
		if err != nil {
			return err
		}
		p.AKCerts = append(p.AKCerts, *f)
	}
	for _, l := range c.logs {
		spec, file, ok := strings.Cut(l, "=")
		if !ok || spec == "" || file == "" {
			return usageError("--log %q: want FORMAT=FILE (runtime logs: runtime:REG=FILE)", l)
		}
		format, reg, _ := strings.Cut(spec, ":")
		f, err := readPart(ctx, importer.PartLog, file)
		if err != nil {
			return err
		}
		p.Logs = append(p.Logs, importer.Log{Format: format, Register: reg, File: *f})
	}
	return nil
}

// summary says what the bundle written to c.out holds, as JSON or a line
// of text; kind is what the whole-file part was, if any.
func (c *importCmd) summary(b *bundle.Bundle, kind string) error {
	g, out := c.g, c.out
	sum := map[string]any{"bundle": out, "platform": b.Platform, "nonce": hex.EncodeToString(b.Nonce),
		"tpm_quotes": len(b.Evidence.TPMQuotes), "logs": len(b.Logs), "azure_hcl_report": len(b.Evidence.AzureHCLReport) > 0}
	if kind != "" {
		sum["from"] = kind
	}
	if g.json() {
		return writeJSON(g.stdout, sum)
	}
	var banks []string
	for _, q := range b.Evidence.TPMQuotes {
		banks = append(banks, q.Alg)
	}
	tprintf(g.stdout, "wrote %s: platform %s, nonce %s", out, b.Platform, hex.EncodeToString(b.Nonce))
	if len(banks) > 0 {
		tprintf(g.stdout, ", TPM quotes of %s", strings.Join(banks, ", "))
	}
	if len(b.Evidence.AzureHCLReport) > 0 {
		fmt.Fprint(g.stdout, ", Azure HCL report")
	}
	if kind != "" {
		tprintf(g.stdout, ", from %s", kind)
	}
	for _, l := range b.Logs {
		tprintf(g.stdout, ", log %s", string(l.Format))
		if l.Register != "" {
			tprintf(g.stdout, " on %s", l.Register)
		}
	}
	fmt.Fprintln(g.stdout)
	return nil
}

// readWhole reads the whole-file part, --gotpm or --trustee (at most one),
// into p. It returns the flag and file for messages ("--gotpm a.pb") and
// what the file was ("go-tpm-tools Attestation", "Trustee az-snp-vtpm/v1
// evidence"); both are empty when neither flag is given. A file that does
// not parse is exit 2 naming the file and the member.
func readWhole(ctx context.Context, gotpm, trustee string, p *importer.Parts) (whole, kind string, err error) {
	if gotpm != "" && trustee != "" {
		return "", "", usageError("give %s or %s, not both", importer.PartGoTPM, importer.PartTrustee)
	}
	part, name := importer.PartGoTPM, gotpm
	if trustee != "" {
		part, name = importer.PartTrustee, trustee
	}
	if name == "" {
		return "", "", nil
	}
	f, err := readPart(ctx, part, name)
	if err != nil {
		return "", "", err
	}
	if part == importer.PartGoTPM {
		*p, err = importer.GoTPM(*f)
		kind = "go-tpm-tools Attestation"
	} else {
		var k string
		*p, k, err = importer.Trustee(*f)
		kind = "Trustee " + k + " evidence"
	}
	if err != nil {
		return "", "", &exitError{code: exitUsage, err: err}
	}
	return part + " " + name, kind, nil
}
