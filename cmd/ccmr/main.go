// Command ccmr reads and extends the measurement registers of a confidential
// VM (TPM PCRs, TDX MRTD/RTMRs, SNP report fields, or a software device),
// keeps virtual registers on a runtime log, and verifies evidence bundles.
//
// Exit codes: 0 success (or trusted / all values match), 1 failure (not
// trusted, a mismatch, a device error), 2 unusable input or arguments.
// docs/cli.md describes every command and its JSON output.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(processMain())
}

// processMain runs the CLI on the process's arguments and files, with a
// context that SIGINT and SIGTERM cancel (every blocking read honours it),
// and returns the exit code.
func processMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, os.Args[1:], env{
		stdin:  os.Stdin,
		stdout: os.Stdout,
		stderr: os.Stderr,
		getenv: os.Getenv,
	})
}

// env is everything a command may touch of the process, passed in so tests
// and the testscript harness run the CLI in-process without globals.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}
