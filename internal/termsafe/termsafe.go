// Package termsafe makes attacker-controlled strings safe to print on a
// terminal. Log formats, register names, IMA file names and event names come
// from evidence an attacker writes; printed raw, an escape sequence can clear
// the screen and draw a forged verdict, and a newline can forge report lines.
// JSON output needs none of this (encoding/json escapes control characters).
package termsafe

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// String returns s unchanged when every rune is printable and not a line or
// paragraph separator, and otherwise a Go-quoted form of it ("a\x1b[2Jb"),
// so that what is printed is exactly one visible token of the input.
func String(s string) string {
	if Safe(s) {
		return s
	}
	return strconv.Quote(s)
}

// Safe reports whether s can be printed raw: valid UTF-8 with no control,
// format (bidi overrides) or separator characters other than the space.
func Safe(s string) bool {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			return false
		}
		if r != ' ' && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.IsSpace(r) || !unicode.IsPrint(r)) {
			return false
		}
		i += n
	}
	return true
}

// Line escapes what is not printable in a text line while keeping it
// readable: control characters, invalid UTF-8 and format characters become
// Go escapes (\x1b, \n, \u202e); everything else is kept, so a message that
// embeds an attacker's string cannot end its line or move the cursor.
func Line(s string) string {
	if safeLine(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			b.WriteString(`\x` + strconv.FormatUint(uint64(s[i])|0x100, 16)[1:])
		case r == '\t' || r == ' ' || (!unicode.IsControl(r) && !unicode.Is(unicode.Cf, r) && unicode.IsPrint(r)):
			b.WriteRune(r)
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += n
	}
	return b.String()
}

func safeLine(s string) bool {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			return false
		}
		if r != '\t' && r != ' ' && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || !unicode.IsPrint(r)) {
			return false
		}
		i += n
	}
	return true
}
