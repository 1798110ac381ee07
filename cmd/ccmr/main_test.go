package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/ccmr-dev/ccmr/internal/corpus"
)

// TestMain lets testscript scripts run "ccmr" as a real subprocess built
// from this test binary.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		// The same entry as main: SIGINT/SIGTERM cancel the context.
		"ccmr": func() { os.Exit(processMain()) },
	})
}

// TestScripts runs the CLI scripts in testdata/*.txt.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata",
		Setup: func(e *testscript.Env) error {
			// Every script gets its own sim state folder and no hardware.
			e.Setenv("XDG_STATE_HOME", e.WorkDir+"/state")
			e.Setenv("CCMR_DEVICE", "sim:"+e.WorkDir+"/sim")
			// Scripts copy the project's real artifacts from $REPO/testdata.
			repo, err := filepath.Abs("../..")
			if err != nil {
				return err
			}
			e.Setenv("REPO", repo)
			if dir, err := corpus.Dir(); err == nil {
				e.Setenv("CORPUS", dir)
			}
			return nil
		},
		// [corpus]: the public corpus is there ($CORPUS). [root]: the
		// script runs as root.
		Condition: func(cond string) (bool, error) {
			if cond == "root" {
				return os.Geteuid() == 0, nil
			}
			if cond != "corpus" {
				return false, fmt.Errorf("unknown condition %q", cond)
			}
			_, err := corpus.Dir()
			if err != nil && corpus.Required() {
				// [!corpus] skip would pass a run meant to check the corpus.
				return false, fmt.Errorf("%w (%s=1)", err, corpus.EnvRequire)
			}
			return err == nil, nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// waitfor FILE waits (up to a minute) until FILE exists: a
			// daemon started in the background is ready.
			"waitfor": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 1 {
					ts.Fatalf("usage: waitfor FILE")
				}
				for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
					if _, err := os.Stat(ts.MkAbs(args[0])); err == nil {
						return
					}
					if time.Now().After(deadline) {
						ts.Fatalf("waitfor %s: not there after a minute", args[0])
					}
				}
			},
			// exit CODE PROG ARGS... runs PROG and requires exit status CODE.
			"exit": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) < 2 {
					ts.Fatalf("usage: exit CODE PROG ARGS...")
				}
				want, err := strconv.Atoi(args[0])
				if err != nil {
					ts.Fatalf("exit: %v", err)
				}
				got := 0
				if err := ts.Exec(args[1], args[2:]...); err != nil {
					var ee *exec.ExitError
					if !errors.As(err, &ee) {
						ts.Fatalf("exit: %v", err)
					}
					got = ee.ExitCode()
				}
				if got != want {
					ts.Fatalf("exit status %d, want %d", got, want)
				}
			},
		},
	})
}

// BenchmarkReadSim is `ccmr read` on the sim device, in process: opening the
// device and answering (process start excluded; scripts/bench.sh times that).
func BenchmarkReadSim(b *testing.B) {
	dir := b.TempDir()
	var out, errb bytes.Buffer
	e := env2(&out, &errb, map[string]string{"CCMR_DEVICE": "sim:" + dir})
	if code := run(context.Background(), []string{"read"}, e); code != 0 {
		b.Fatal(errb.String())
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out.Reset()
		if code := run(context.Background(), []string{"read"}, e); code != 0 {
			b.Fatal(errb.String())
		}
	}
}
