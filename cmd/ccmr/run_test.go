package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// ccmrRun runs the CLI in-process and returns stdout, stderr and the exit code.
func ccmrRun(t *testing.T, env map[string]string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, env2(&out, &errb, env))
	return out.String(), errb.String(), code
}

func env2(out, errb *bytes.Buffer, vars map[string]string) env {
	return env{stdin: strings.NewReader(""), stdout: out, stderr: errb, getenv: func(k string) string { return vars[k] }}
}
