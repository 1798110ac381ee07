package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/bundle/collect"
	"github.com/ccmr-dev/ccmr/bundle/tail"
	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/cel"
	"github.com/ccmr-dev/ccmr/vmr"
)

func newQuoteCmd(g *globals) *cobra.Command {
	var nonceHex, out, imaList, format, sinceFile, systemdLog, server string
	var addLogs []string
	cmd := &cobra.Command{
		Use:   "quote [--nonce HEX] [-O FILE]",
		Short: "Write an evidence bundle (ccmr-evidence/v2; v1 with --bundle-format v1): hardware evidence, logs, register values",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if c, err := g.serverClient(server); c != nil || err != nil {
				if err != nil {
					return err
				}
				return g.quoteViaServer(ctx, cmd, c, nonceHex, out)
			}
			var write func(b *bundle.Bundle, w io.Writer) error
			switch format {
			case "v2":
				write = func(b *bundle.Bundle, w io.Writer) error { return b.WriteArchive(ctx, w) }
			case "v1":
				write = (*bundle.Bundle).Write
			default:
				return usageError("--bundle-format %q: want v2 or v1", format)
			}
			var nonce []byte
			if nonceHex != "" {
				var err error
				if nonce, err = hex.DecodeString(nonceHex); err != nil || len(nonce) == 0 {
					return usageError("--nonce %q: want hex digits", nonceHex)
				}
			} else {
				nonce = make([]byte, 32)
				rand.Read(nonce)
			}
			extra, err := readAddLogs(ctx, addLogs)
			if err != nil {
				return err
			}
			var since *tail.Since
			if sinceFile != "" {
				b, err := readInputFile(ctx, sinceFile) // bounded, and SIGTERM ends it
				if err != nil {
					return err
				}
				if since, err = tail.ParseSince(b); err != nil {
					return fmt.Errorf("--since %s: %w", sinceFile, err)
				}
			}
			dev, err := g.openDevice(ctx)
			if err != nil {
				return err
			}
			defer dev.Close()
			s, err := g.openStore(ctx, dev, false)
			if err != nil {
				return err
			}
			if s != nil {
				defer s.Close()
			}
			b, err := collect.Bundle(ctx, dev, s, nonce, collect.Options{IMAList: imaList, NoIMA: imaList == "", Logs: extra, Since: since,
				SystemdLog: systemdLog, NoSystemdLog: systemdLog == "",
				Warn: g.warn})
			if err != nil {
				return err
			}
			defer b.Close()
			var total int64
			for i := range b.Logs {
				total += b.Logs[i].Size()
			}
			m, show := g.meter("quote (logs written)", total)
			metered := func(w io.Writer) io.Writer {
				if show {
					return meterWriter{w: w, m: m}
				}
				return w
			}
			if out != "" && out != "-" {
				err = writeOutput(out, 0o644, func(w io.Writer) error { return write(b, metered(w)) })
			} else {
				err = write(b, metered(g.stdout))
			}
			m.Done()
			if err != nil {
				return err
			}
			if nonceHex == "" {
				if g.output == "json" {
					return writeNonceJSON(g, out, nonce)
				}
				if out != "" && out != "-" {
					fmt.Fprintf(g.stdout, "nonce %s\n", hex.EncodeToString(nonce))
				} else {
					fmt.Fprintf(g.stderr, "ccmr: nonce %s\n", hex.EncodeToString(nonce))
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&nonceHex, "nonce", "", "nonce to bind (hex); a random one is made and printed when absent")
	cmd.Flags().StringVarP(&out, "out", "O", "", "write the bundle to FILE (default standard output)")
	cmd.Flags().StringVar(&imaList, "ima-log", vmr.DefaultIMAList, "binary IMA list to include when readable (\"\" for none)")
	cmd.Flags().StringVar(&format, "bundle-format", "v2", "v2: a zip archive whose logs are members beside a JSON manifest, written and read without holding them; v1: one JSON document, logs in base64 (docs/bundle.md)")
	cmd.Flags().StringVar(&systemdLog, "systemd-log", cel.SystemdLogPath, "systemd's userspace measurement log to include on a TPM, read under its shared lock while the TPM quotes (\"\" for none)")
	cmd.Flags().StringVar(&sinceFile, "since", "", "a since file (ccmr-since/v1, from verify --print-since): carry only the logs' tails past the verifier's monitor state, which alone can verify them")
	addServerFlag(cmd, &server)
	cmd.Flags().StringArrayVar(&addLogs, "add-log", nil, "another writer's log of a register, FORMAT=FILE (dstack-json, ccel, tcg2), to include: it proves where a shared register's runtime log starts (repeatable)")
	return cmd
}

// readAddLogs reads --add-log FORMAT=FILE options. Only logs of other
// writers of the registers are accepted: the verifier replays them and
// compares them with the evidence (or with the start of a runtime log).
func readAddLogs(ctx context.Context, opts []string) ([]bundle.Log, error) {
	var logs []bundle.Log
	for _, o := range opts {
		f, file, ok := strings.Cut(o, "=")
		switch eventlog.Format(f) {
		case eventlog.FormatDstackJSON, eventlog.FormatCCEL, eventlog.FormatTCG2:
		default:
			ok = false
		}
		if !ok || file == "" {
			return nil, usageError("--add-log %q: want FORMAT=FILE, FORMAT one of dstack-json, ccel, tcg2", o)
		}
		data, err := readInputFile(ctx, file) // bounded, and SIGTERM ends it
		if err != nil {
			return nil, err
		}
		logs = append(logs, bundle.Log{Format: f, Source: file, Data: data})
	}
	return logs, nil
}
