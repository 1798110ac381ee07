package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ccmr-dev/ccmr/internal/safefs"
	"github.com/ccmr-dev/ccmr/internal/termsafe"
	"github.com/ccmr-dev/ccmr/verifier"
)

// writeOutput writes an output file (-O) through a new temporary file in
// the same folder, renamed over path. Opening path itself would follow a
// link another user planted there (in /tmp, say) and make root overwrite
// the file it points to; a rename replaces the link instead, and a file of
// someone else's in a sticky folder makes it fail rather than be written.
func writeOutput(path string, perm os.FileMode, write func(io.Writer) error) error {
	// A folder is the user's mistake (exit 2), caught before anything is
	// written: the rename would fail only after the whole output was made.
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return usageError("writing %s: a folder, not a file: give -O a file name (%s/NAME)", path, strings.TrimSuffix(path, "/"))
	}
	if err := safefs.WriteFile(path, "", perm, false, write); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// outputHint is added to the refusal of -o VALUE when VALUE looks like a
// file name: -o is the output format, -O the output file, and the two are
// easily swapped.
func outputHint(v string) string {
	if strings.ContainsAny(v, "./") {
		return fmt.Sprintf(" (-o is the format; to write to the file %s, use -O %s)", v, v)
	}
	return ""
}

// writeNonceJSON tells, under -o json, the nonce quote made up: as one JSON
// object on standard output when the bundle went to a file (-O), else on
// standard error, which standard output's bundle leaves free. A text line
// there would break the script that parses it.
func writeNonceJSON(g *globals, out string, nonce []byte) error {
	v := struct {
		Nonce  string `json:"nonce"`
		Bundle string `json:"bundle,omitempty"`
	}{Nonce: hex.EncodeToString(nonce)}
	w := g.stderr
	if out != "" && out != "-" {
		v.Bundle, w = out, g.stdout
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// notABundle explains an unreadable bundle that is no bundle at all: a raw
// TDX quote, SNP report or TPM quote given to verify would otherwise be
// refused as "invalid character '\x04'". A ccmr-evidence bundle is a zip
// archive (v2) or a JSON object (v1); anything else gets the hint. err is
// returned wrapped, so its exit code (2) stays.
func notABundle(path string, err error) error {
	if err == nil || path == "-" {
		return err
	}
	f, oErr := os.Open(path)
	if oErr != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	head = bytes.TrimLeft(head[:n], " \t\r\n")
	if n == 0 || bytes.HasPrefix(head, []byte("PK\x03\x04")) || bytes.HasPrefix(head, []byte("{")) {
		return err
	}
	return fmt.Errorf("%s: not a bundle: make one with `ccmr evidence import` (raw quotes, reports and logs) or `ccmr quote`: %w", path, err)
}

// warn tells the user something that is no error: "ccmr: MSG" on standard
// error, or under -o json one object {"warning": MSG} on one line, so that
// standard error stays JSON too.
func (g *globals) warn(msg string) {
	if g.output != "json" {
		fmt.Fprintf(g.stderr, "ccmr: %s\n", termsafe.String(msg))
		return
	}
	b, err := json.Marshal(struct {
		Warning string `json:"warning"`
	}{msg})
	if err != nil {
		return
	}
	g.stderr.Write(append(b, '\n'))
}

// reportError is an error that comes with the verify report behind it: under
// -o json the error object carries the report ("report"), rather than a
// text report on standard error beside it.
type reportError struct {
	err    error
	report *verifier.Report
}

func (e *reportError) Error() string { return e.err.Error() }
func (e *reportError) Unwrap() error { return e.err }

// withReport returns err with rep shown: as text on standard error now, or
// under -o json inside err's JSON object.
func (g *globals) withReport(rep *verifier.Report, err error) error {
	if g.output != "json" {
		rep.WriteText(g.stderr)
		return err
	}
	return &reportError{err: err, report: rep}
}
