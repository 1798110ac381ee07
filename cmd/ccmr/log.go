package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/eventlog/logfile"
	"github.com/ccmr-dev/ccmr/mr"
)

func newLogCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "log",
		Short: "Measurement logs: TCG2, CCEL, IMA, the CC runtime log",
	}
	cmd.AddCommand(newLogShowCmd(g), newLogReplayCmd(g), newLogExportCmd(g), newLogCutCmd(g))
	return cmd
}

// logFlags are the flags log show and log replay share.
type logFlags struct {
	format string
	banks  []string
	tpm    bool
}

func (lf *logFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&lf.format, "format", "auto", "log format: auto, "+logfile.FormatList())
	cmd.Flags().StringSliceVar(&lf.banks, "bank", nil, "IMA PCR banks to compute (default sha1,sha256)")
	cmd.Flags().BoolVar(&lf.tpm, "tpm", false, "a runtime log's MR indexes are PCR numbers (a log kept on a TPM)")
}

// open opens the log at path; "-" reads standard input whole (bounded by
// maxInput, interrupted by ctx), as a log is read more than once.
func (lf *logFlags) open(ctx context.Context, path string, stdin io.Reader) (*logfile.File, logfile.Options, error) {
	f, err := logfile.ParseFormat(lf.format)
	if err != nil {
		return nil, logfile.Options{}, err
	}
	opts := logfile.Options{Format: f, TPM: lf.tpm}
	for _, b := range lf.banks {
		a, err := mr.ParseAlg(b)
		if err != nil {
			return nil, opts, fmt.Errorf("--bank: %w", err)
		}
		opts.Banks = append(opts.Banks, a)
	}
	if path == "-" {
		file, err := stdinLog(ctx, stdin, f)
		return file, opts, err
	}
	file, err := logfile.Open(path, f)
	return file, opts, inputError(err)
}

// opened notes, under -v, the format a log was read as.
func (lf *logFlags) opened(g *globals, file *logfile.File) {
	how := "detected"
	if lf.format != "auto" && lf.format != "" {
		how = "given"
	}
	g.verbosef("%s: %s (%s)", file.Name, file.Format, how)
}

// stdinLog reads a log from standard input and settles its format as
// logfile.Open does from a file's contents (there is no file name to read
// an IMA list's bank from).
func stdinLog(ctx context.Context, stdin io.Reader, f eventlog.Format) (*logfile.File, error) {
	const name = "standard input"
	data, err := readInput(ctx, "-", stdin)
	if err != nil {
		return nil, err
	}
	if f == "" || f == eventlog.FormatAuto {
		head := data[:min(len(data), logfile.SniffSize)]
		ff, ok := logfile.Sniff(head)
		if !ok {
			return nil, &exitError{code: exitUsage, err: &eventlog.Error{File: name, Record: -1, Err: fmt.Errorf("%w: unknown log format (give --format)", mr.ErrMalformed)}}
		}
		f = ff
	}
	return logfile.FromBytes(name, data, f), nil
}

func newLogShowCmd(g *globals) *cobra.Command {
	var lf logFlags
	cmd := &cobra.Command{
		Use:   "show FILE|-",
		Short: "Print every record of a log",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file, opts, err := lf.open(cmd.Context(), args[0], cmd.InOrStdin())
			if err != nil {
				return err
			}
			defer file.Close()
			lf.opened(g, file)
			var events []eventlog.Event
			problems := 0
			err = file.Show(cmd.Context(), opts, func(e eventlog.Event) error {
				problems += len(e.Problems)
				if g.json() {
					events = append(events, e)
					return nil
				}
				digests := make([]string, len(e.Digests))
				for i, d := range e.Digests {
					digests[i] = d.String()
				}
				_, err := tprintf(g.stdout, "%d @%d %s %s %s %s\n", e.Index, e.Offset, e.Register, e.Type, strings.Join(digests, ","), e.Text)
				for _, p := range e.Problems {
					tprintf(g.stdout, "  ! record %d at byte %d: %s\n", e.Index, e.Offset, p)
				}
				return err
			})
			if err != nil {
				return err
			}
			if g.json() {
				if events == nil {
					events = []eventlog.Event{}
				}
				return writeJSON(g.stdout, struct {
					File     string           `json:"file"`
					Format   eventlog.Format  `json:"format"`
					Events   []eventlog.Event `json:"events"`
					Problems int              `json:"problems"`
				}{file.Name, file.Format, events, problems})
			}
			if problems > 0 && g.output != "json" { // JSON has "problems"
				tprintf(g.stderr, "ccmr: %s: %d problem(s) flagged above\n", file.Name, problems)
			}
			return nil
		},
	}
	lf.add(cmd)
	return cmd
}

func newLogReplayCmd(g *globals) *cobra.Command {
	var lf logFlags
	var expects, keyFiles []string
	var requireSigs bool
	cmd := &cobra.Command{
		Use:   "replay FILE|- [--expect REG=ALG:HEX]... [--ima-keys FILE]...",
		Short: "Replay a log; exit 0 when every --expect matches, 1 on a mismatch, 2 on bad input",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var want []mr.Value
			for _, e := range expects {
				name, dg, ok := strings.Cut(e, "=")
				name = regName(name)
				if !ok {
					return usageError("--expect %q: want REG=ALG:HEX", e)
				}
				d, err := mr.ParseDigest(dg)
				if err != nil {
					return fmt.Errorf("--expect %s: %w", name, err)
				}
				for _, w := range want {
					// Two values for one register cannot both match;
					// checking only one would hide the other.
					if w.Register.Name == name && w.Digest.Alg == d.Alg {
						return usageError("--expect %s %v given more than once", name, d.Alg)
					}
				}
				want = append(want, mr.Value{Register: mr.Register{Name: name, Alg: d.Alg, Size: d.Alg.Size()}, Digest: d})
			}
			file, opts, err := lf.open(cmd.Context(), args[0], cmd.InOrStdin())
			if err != nil {
				return err
			}
			defer file.Close()
			lf.opened(g, file)
			opts.Expect = want
			var size int64
			if fi, err := os.Stat(args[0]); err == nil {
				size = fi.Size()
			}
			m, show := g.meter("log replay", size)
			if show {
				file.Meter(m.Reader)
			}
			res, err := file.Replay(cmd.Context(), opts)
			m.Done()
			var mm *eventlog.Mismatch
			if err != nil && !errors.As(err, &mm) {
				return err
			}
			if res != nil {
				if uerr := expectsReplayed(res, want); uerr != nil {
					return uerr
				}
			}
			var sigs *ima.SignatureReport
			if len(keyFiles) > 0 && err == nil {
				keys, kerr := ima.LoadKeys(keyFiles...)
				if kerr != nil {
					return &exitError{code: exitUsage, err: kerr}
				}
				rep, serr := file.CheckIMASignatures(keys, requireSigs)
				if serr != nil && !errors.As(serr, &mm) {
					return serr
				}
				sigs, err = &rep, serr
			}
			if g.json() {
				out := struct {
					File      string          `json:"file"`
					Format    eventlog.Format `json:"format"`
					Events    int             `json:"events"`
					Registers []jsonValue     `json:"registers"`
					Virtual   []jsonValue     `json:"virtual,omitempty"`
					Checked   int             `json:"checked"`
					Match     bool            `json:"match"`
					Mismatch  string          `json:"mismatch,omitempty"`
				}{File: file.Name, Format: file.Format, Checked: len(want), Match: err == nil}
				if res != nil {
					out.Events, out.Registers, out.Virtual = res.Events, toJSONValues(res.Registers), toJSONValues(res.Virtual)
				}
				if mm != nil {
					out.Mismatch = mm.Error()
				}
				if werr := writeJSON(g.stdout, out); werr != nil {
					return werr
				}
				return err
			}
			if res != nil {
				for _, v := range res.Registers {
					tprintf(g.stdout, "%s %s\n", v.Register.Name, valueText(v))
				}
				for _, v := range res.Virtual {
					tprintf(g.stdout, "%s %s\n", v.Register.Name, valueText(v))
				}
			}
			if err == nil && len(want) > 0 {
				fmt.Fprintf(g.stdout, "match: %d expected value(s)\n", len(want))
			}
			if sigs != nil && err == nil {
				fmt.Fprintf(g.stdout, "signatures: %d verified, %d entries unsigned\n", sigs.Verified, sigs.Unsigned)
			}
			return err
		},
	}
	lf.add(cmd)
	cmd.Flags().StringArrayVar(&expects, "expect", nil, "expected value REG=ALG:HEX (repeatable)")
	cmd.Flags().StringArrayVar(&keyFiles, "ima-keys", nil, "public keys or certificates (PEM/DER) to verify ima-sig signatures with (repeatable)")
	cmd.Flags().BoolVar(&requireSigs, "require-signatures", false, "with --ima-keys: an unsigned file entry is a mismatch too")
	return cmd
}

// expectsReplayed refuses (exit 2) an --expect naming a register, or a bank,
// the replay did not compute: the log says nothing about it, so neither
// "match" nor "mismatch" would be true (pcr99, a PCR the list never extends,
// a name of another log format).
func expectsReplayed(res *eventlog.Replay, want []mr.Value) error {
	for _, w := range want {
		found := false
		for _, list := range [][]mr.Value{res.Registers, res.Virtual} {
			for _, v := range list {
				if v.Register.Name == w.Register.Name && v.Digest.Alg == w.Digest.Alg {
					found = true
				}
			}
		}
		if !found {
			return usageError("--expect %s: the log does not extend %s in %v, so it proves nothing about it", w.Register.Name, w.Register.Name, w.Digest.Alg)
		}
	}
	return nil
}

func newLogExportCmd(g *globals) *cobra.Command {
	var lf logFlags
	var to, out string
	cmd := &cobra.Command{
		Use:   "export FILE|- --to cel-json [-O OUT]",
		Short: "Convert a runtime log or an IMA list to CEL-JSON (TCG Canonical Event Log, JSON text sequences)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to != string(eventlog.FormatCELJSON) {
				return usageError("--to %q: only cel-json is supported", to)
			}
			file, opts, err := lf.open(cmd.Context(), args[0], cmd.InOrStdin())
			if err != nil {
				return err
			}
			defer file.Close()
			lf.opened(g, file)
			if out != "" {
				return writeOutput(out, 0o644, func(w io.Writer) error {
					_, err := file.ExportCELJSON(cmd.Context(), w, opts)
					return err
				})
			}
			_, err = file.ExportCELJSON(cmd.Context(), g.stdout, opts)
			return err
		},
	}
	lf.add(cmd)
	cmd.Flags().StringVar(&to, "to", "cel-json", "output format (cel-json)")
	cmd.Flags().StringVarP(&out, "out", "O", "", "write to FILE (default standard output)")
	return cmd
}

func newLogCutCmd(g *globals) *cobra.Command {
	var server string
	cmd := &cobra.Command{
		Use:   "cut",
		Short: "Archive the runtime log's segment and start a new one with a snapshot of every virtual register",
		Long: `Archives the current segment of the runtime log (REGISTER.log.N next to it)
and starts a new segment whose INIT entry holds the backing register's value
and whose first record, "ccmr snapshot mr_x=ALG/HEX,...", holds every virtual
register's value. Ship the archive to the verifier (quote includes archives
still present), then delete it: the log a guest keeps stays bounded.
Through a ccmr serve daemon (--server, or the default socket) the daemon
cuts, if its policy grants the caller "cut".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := g.serverClient(server)
			if err != nil {
				return err
			}
			var archive, path string
			if c != nil {
				defer c.Close()
				r, err := c.Cut(ctx)
				if err != nil {
					return serverError(err)
				}
				archive, path = r.Archive, r.Log
			} else if archive, path, err = g.cutDirect(ctx); err != nil {
				return err
			}
			if g.json() {
				return writeJSON(g.stdout, map[string]string{"archive": archive, "log": path})
			}
			_, err = tprintf(g.stdout, "archived %s; new segment in %s\n", archive, path)
			return err
		},
	}
	addServerFlag(cmd, &server)
	return cmd
}

// cutDirect is `log cut` on the device's own store.
func (g *globals) cutDirect(ctx context.Context) (archive, path string, err error) {
	dev, err := g.openDevice(ctx)
	if err != nil {
		return "", "", err
	}
	defer dev.Close()
	s, err := g.openStore(ctx, dev, false)
	if err != nil {
		return "", "", err
	}
	if s == nil {
		return "", "", usageError("log cut: no runtime log in %s", g.runtimeLogDir(dev))
	}
	defer s.Close()
	archive, err = s.Cut(ctx)
	return archive, s.Path(), err
}
