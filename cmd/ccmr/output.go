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
