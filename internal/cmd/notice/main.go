// Command notice writes NOTICE: the project's copyright line and, for every
// module linked into cmd/ccmr on the platforms ccmr is released for, the
// module, its licence (classified from the text of its licence files, not
// from a name or a guess) and the texts that licence asks to be passed on.
//
//	go run ./internal/cmd/notice > NOTICE     # write it
//	go run ./internal/cmd/notice -check       # exit 1 when NOTICE is stale
//
// A licence file that matches no known licence is an error: a dependency
// under terms nobody read must stop the build, not pass as "unknown".
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
)

func main() {
	check := flag.Bool("check", false, "compare with the NOTICE file instead of printing")
	file := flag.String("notice", "NOTICE", "the NOTICE file -check compares with")
	flag.Parse()
	got, err := generate(context.Background(), ".")
	if err != nil {
		fmt.Fprintln(os.Stderr, "notice:", err)
		os.Exit(2)
	}
	if !*check {
		os.Stdout.Write(got)
		return
	}
	have, err := os.ReadFile(*file)
	if err != nil {
		fmt.Fprintln(os.Stderr, "notice:", err)
		os.Exit(2)
	}
	if !bytes.Equal(have, got) {
		fmt.Fprintf(os.Stderr, "notice: %s is stale: run go run ./internal/cmd/notice > %s\n", *file, *file)
		os.Exit(1)
	}
}
