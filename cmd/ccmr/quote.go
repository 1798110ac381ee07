package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/internal/safefs"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
	"github.com/ccmr-dev/ccmr/vmr"
)

func newQuoteCmd(g *globals) *cobra.Command {
	var nonceHex, out, imaList string
	var addLogs []string
	cmd := &cobra.Command{
		Use:   "quote [--nonce HEX] [-O FILE]",
		Short: "Write an evidence bundle (ccmr-evidence/v1): hardware evidence, logs, register values",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
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
			dev, err := g.openDevice(ctx)
			if err != nil {
				return err
			}
			defer dev.Close()
			b, err := g.quote(ctx, dev, nonce, imaList)
			if err != nil {
				return err
			}
			b.Logs = append(b.Logs, extra...)
			if out != "" && out != "-" {
				err = writeOutput(out, 0o644, func(w io.Writer) error { return b.Write(w) })
			} else {
				err = b.Write(g.stdout)
			}
			if err != nil {
				return err
			}
			if nonceHex == "" {
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
	cmd.Flags().StringVar(&imaList, "ima-log", vmr.DefaultIMAList, "binary IMA list to include when readable")
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

// quote takes the device's evidence while holding the runtime log's lock,
// so the log in the bundle is exactly the one the evidence covers.
func (g *globals) quote(ctx context.Context, dev mr.Device, nonce []byte, imaList string) (*bundle.Bundle, error) {
	att, ok := dev.(mr.Attester)
	if !ok {
		return nil, fmt.Errorf("device %s cannot attest: %w", dev.Kind(), mr.ErrUnsupported)
	}
	var ev *mr.Evidence
	attest := func() error {
		var err error
		ev, err = att.Attest(ctx, nonce)
		return err
	}
	var logs []bundle.Log
	var virt []mr.Value
	s, err := g.openStore(ctx, dev, false)
	if err != nil {
		return nil, err
	}
	if s != nil {
		defer s.Close()
		data, err := s.Snapshot(ctx, attest)
		if err != nil {
			return nil, err
		}
		bk := s.Backing()
		// Archived segments still present go first, oldest first, so a
		// verifier without a monitor state can prove the snapshots.
		archives, err := s.Archives()
		if err != nil {
			return nil, err
		}
		for _, a := range archives {
			b, err := safefs.ReadFile(a)
			if err != nil {
				return nil, err
			}
			logs = append(logs, bundle.Log{Format: string(eventlog.FormatRuntime), Register: bk.Name, Alg: bk.Alg.String(), Source: a, Data: b})
		}
		logs = append(logs, bundle.Log{Format: string(eventlog.FormatRuntime), Register: bk.Name, Alg: bk.Alg.String(), Source: s.Path(), Data: data})
		if virt, err = s.List(ctx); err != nil {
			return nil, err
		}
	} else if err := attest(); err != nil {
		return nil, err
	}
	// The list is included when it can be read at all (not by a user
	// without access to securityfs); reading it honours ctx and a bound,
	// so a FIFO or /dev/zero given as --ima-log cannot hang the quote.
	data, err := readInputFile(ctx, imaList)
	switch {
	case err == nil && len(data) > 0:
		if data, err = quotedIMAPrefix(ctx, ev, data); err != nil {
			return nil, fmt.Errorf("--ima-log: %w", err)
		}
		logs = append(logs, bundle.Log{Format: string(eventlog.FormatIMABinary), Source: imaList, Data: data})
	case err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("--ima-log: %w", err)
	}
	b := bundle.New(ev, logs, virt)
	for i, q := range ev.TPMQuotes {
		// Only for tpm2_checkquote -f; left out if it cannot be made.
		b.Evidence.TPMQuotes[i].PCRFile, _ = tpmverify.MarshalPCRFile(q)
	}
	return b, nil
}

// quotedIMAPrefix cuts a TPM guest's IMA list to the entries its quote
// covers. The list is read after the quote and the kernel keeps measuring,
// so it may end with entries the quoted PCRs do not hold yet; the verifier
// replays the whole list it is given against the quoted PCRs and would
// refuse them. Entries after the cut are in the next quote. Other platforms'
// lists (proven by mr_ima records, not by a quoted PCR) are kept whole.
func quotedIMAPrefix(ctx context.Context, ev *mr.Evidence, data []byte) ([]byte, error) {
	if ev.Platform != mr.PlatformTPM || len(ev.TPMQuotes) == 0 {
		return data, nil
	}
	q := ev.TPMQuotes[0]
	for _, c := range ev.TPMQuotes {
		if c.Alg == mr.SHA256 {
			q = c
		}
	}
	quoted := map[int]mr.Digest{}
	for i, v := range q.PCRs {
		quoted[i] = mr.Digest{Alg: q.Alg, Bytes: v}
	}
	for _, padded := range []bool{false, true} {
		if padded && q.Alg == mr.SHA1 {
			break
		}
		_, off, ok, err := ima.QuotedPrefix(ctx, ima.NewBinaryReader(bytes.NewReader(data), ima.Options{}), q.Alg, quoted, padded)
		if err != nil {
			return nil, err
		}
		if ok {
			return data[:off], nil
		}
	}
	return data, nil // no prefix is quoted: the verifier says why
}
