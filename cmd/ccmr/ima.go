package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/eventlog/logfile"

	"github.com/ccmr-dev/ccmr/vmr"
)

func newIMACmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ima",
		Short: "The kernel's IMA measurement list",
	}
	var opts vmr.ForwardOptions
	var once bool
	var interval time.Duration
	fwd := &cobra.Command{
		Use:   "forward [--once] [--ima-log PATH] [--register mr_ima]",
		Short: "Extend mr_ima with sha384(template data) of every IMA entry not yet forwarded",
		Long: `Reads the kernel's binary IMA list and extends the virtual register (mr_ima)
with sha384(template data) of each entry not forwarded yet, so that record i
of mr_ima is IMA entry i. What was forwarded is read from the runtime log, so
a restart neither skips nor repeats an entry. Without --once it follows the
list until SIGTERM or SIGINT.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Register = regName(opts.Register)
			ctx := cmd.Context()
			dev, err := g.openDevice(ctx)
			if err != nil {
				return err
			}
			defer dev.Close()
			s, err := g.openStore(ctx, dev, true)
			if err != nil {
				return err
			}
			defer s.Close()
			report := func(n int) {
				if g.json() {
					writeJSON(g.stdout, map[string]any{"register": opts.Register, "forwarded": n})
					return
				}
				tprintf(g.stdout, "forwarded %d entries to %s\n", n, opts.Register)
			}
			if once {
				// Following shows no meter: it runs until stopped.
				m, show := g.meter("ima forward (list read)", 0)
				if show {
					opts.Progress = m.Add
				}
				n, err := s.Forward(ctx, opts)
				m.Done()
				if err != nil {
					return err
				}
				report(n)
				return nil
			}
			return s.Follow(ctx, opts, interval, report)
		},
	}
	f := fwd.Flags()
	f.BoolVar(&once, "once", false, "forward what is there and stop")
	f.StringVar(&opts.List, "ima-log", "", "binary IMA list (default: the first of "+strings.Join(vmr.DefaultIMALists, ", ")+" that exists; a per-bank list is read as its name says)")
	f.StringVar(&opts.Register, "register", "mr_ima", "virtual register to extend")
	f.DurationVar(&interval, "interval", 2*time.Second, "how often to look for new entries when following")
	cmd.AddCommand(fwd, newIMAAggregateCmd(g))
	return cmd
}

func newIMAAggregateCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "aggregate LIST|-",
		Short: "Order-independent aggregate of an IMA list: sha384 of its sorted distinct measurement digests",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := logfile.ParseFormat(format)
			if err != nil {
				return err
			}
			var rd *ima.Reader
			if args[0] == "-" {
				if rd, err = stdinIMAList(cmd.Context(), cmd.InOrStdin(), f); err != nil {
					return err
				}
			} else {
				if err := requireRegular(args[0]); err != nil {
					return err
				}
				r, closer, err := ima.OpenFile(args[0], f, ima.Options{File: args[0]})
				if err != nil {
					return err
				}
				defer closer.Close()
				rd = r
			}
			d, n, err := ima.Aggregate(cmd.Context(), rd, -1)
			if err != nil {
				return err
			}
			if g.json() {
				return writeJSON(g.stdout, map[string]any{"aggregate": d.String(), "distinct": n})
			}
			_, err = fmt.Fprintf(g.stdout, "%s (%d distinct measurements)\n", d, n)
			return err
		},
	}
	cmd.Flags().StringVar(&format, "format", "auto", "ima-binary, ima-ascii, a per-bank format (ima-binary-sha256, ima-ascii-sha384, ...) or auto")
	return cmd
}

// stdinIMAList reads an IMA list from standard input, whole and bounded by
// maxInput (streamInput: SIGTERM ends a read that waits), and detects its
// format from the contents as ima.OpenFile does (no file name to read a
// bank from: a list both sha256 and sm3 could be needs --format).
func stdinIMAList(ctx context.Context, stdin io.Reader, f eventlog.Format) (*ima.Reader, error) {
	const name = "standard input"
	data, err := readInput(ctx, "-", stdin)
	if err != nil {
		return nil, err
	}
	if f == "" || f == eventlog.FormatAuto {
		if f, err = ima.DetectNamed(data[:min(len(data), 4096)], ""); err != nil {
			return nil, &eventlog.Error{File: name, Record: -1, Err: err}
		}
	}
	return ima.NewFormatReader(f, bytes.NewReader(data), ima.Options{File: name})
}
