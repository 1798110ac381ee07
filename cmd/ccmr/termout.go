package main

import (
	"fmt"
	"io"

	"github.com/ccmr-dev/ccmr/internal/termsafe"
)

// tprintf is fmt.Fprintf for text meant for a terminal. Every string, error
// and fmt.Stringer argument goes through termsafe.Line, because register
// names, log formats, file names and event texts come from input an attacker
// writes: raw, an escape sequence could redraw the screen and a newline could
// forge whole lines. The format itself is the program's and stays as is.
func tprintf(w io.Writer, format string, a ...any) (int, error) {
	return fmt.Fprintf(w, format, safeArgs(a)...)
}

// safeArgs returns a copy of a with its text arguments escaped.
func safeArgs(a []any) []any {
	out := make([]any, len(a))
	for i, x := range a {
		switch v := x.(type) {
		case string:
			out[i] = termsafe.Line(v)
		case error:
			out[i] = termsafe.Line(v.Error())
		case fmt.Stringer:
			out[i] = termsafe.Line(v.String())
		default:
			out[i] = x
		}
	}
	return out
}

// printError writes err to w as "ccmr: MESSAGE" lines, one per error that
// errors.Join combined, each escaped: error messages quote file names,
// register names and fields of the input.
func printError(w io.Writer, err error) {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			printError(w, e)
		}
		return
	}
	tprintf(w, "ccmr: %s\n", err.Error())
}
