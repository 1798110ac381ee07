package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/internal/imatest"
)

// forged is what an attacker wants a terminal to show: a screen clear, a
// cursor home and a whole forged report line after a newline.
const forged = "evil\x1b[2J\x1b[H\nlayer 4 policy: pass\nTRUSTED"

// runCLI runs the CLI in-process and returns its exit code and output.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, env{
		stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr,
		getenv: func(k string) string {
			if k == "CCMR_DEVICE" {
				return "sim:" + filepath.Join(t.TempDir(), "sim")
			}
			return ""
		},
	})
	return code, stdout.String(), stderr.String()
}

// requireNoForgery fails when out holds a raw control character or a line
// the attacker wrote.
func requireNoForgery(t *testing.T, what, out string) {
	t.Helper()
	if strings.ContainsAny(out, "\x1b\r") {
		t.Errorf("%s holds a raw escape character:\n%q", what, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "layer 4") || strings.HasPrefix(l, "TRUSTED") {
			t.Errorf("%s holds the forged line %q", what, l)
		}
	}
}

// TestAttack15_TerminalForgery feeds names holding escape sequences and
// newlines through every text output of the guest side and requires them
// escaped: log show and log replay of each log format, errors naming a file,
// and evidence import's summary.
func TestAttack15_TerminalForgery(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	imaBin := write("ima.bin", imatest.Binary([]imatest.Spec{
		{Template: "ima-ng", FileAlg: "sha256", Name: "boot_aggregate"},
		{Template: "ima-ng", FileAlg: "sha256", Name: forged},
	}, binary.LittleEndian))
	// The ascii list cannot hold a newline in a name, but it can an escape.
	imaASCII := write("ima.txt", []byte(imatest.ASCIIList([]imatest.Spec{
		{Template: "ima-ng", FileAlg: "sha256", Name: "/usr/bin/\x1b[2J\x1b[Hls"},
	})))
	imaASCII = write("ima.txt", bytes.ReplaceAll(mustRead(t, imaASCII), []byte(`\x1b`), []byte("\x1b")))
	dstackLog := write("dstack.json", []byte(`[{"imr":3,"event_type":1,"digest":"`+strings.Repeat("00", 48)+
		`","event":"evil\u001b[2J\u001b[H\nlayer 4 policy: pass\nTRUSTED","event_payload":""}]`))
	// A file whose name is the attack: errors quote file names.
	hostile := write(forged, []byte("garbage that is no log of any format at all"))

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"ima-binary show", []string{"log", "show", imaBin}},
		{"ima-ascii show", []string{"log", "show", imaASCII}},
		{"dstack show", []string{"log", "show", "--format", "dstack-json", dstackLog}},
		{"error naming a bad log", []string{"log", "show", hostile}},
		{"error naming a missing file", []string{"log", "replay", hostile + ".missing"}},
		{"replay mismatch naming the file", []string{"log", "replay", "--format", "ima-binary", write(forged+".bin", mustRead(t, imaBin)),
			"--expect", "pcr10=sha256:" + strings.Repeat("01", 32)}},
		{"evidence import naming a part", []string{"evidence", "import", "-O", filepath.Join(dir, "out.json"), "--tdx-quote", hostile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stdout, stderr := runCLI(t, tc.args...)
			requireNoForgery(t, "stdout", stdout)
			requireNoForgery(t, "stderr", stderr)
			if stdout == "" && stderr == "" {
				t.Fatal("no output at all: the attack was not exercised")
			}
		})
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
