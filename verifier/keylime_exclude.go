package verifier

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ccmr-dev/ccmr/mr"
	"github.com/dlclark/regexp2/v2"
)

// errExclude marks an exclude ccmr refuses: not a Python regular
// expression, or one whose meaning could differ between Python's re and
// the engine ccmr evaluates it with.
var errExclude = errors.New("runtime policy exclude")

// keylimeExcludes is Keylime's exclude list as one pattern. Keylime
// (keylime/common/validators.py, valid_exclude_list) joins the excludes
// into "(e1)|(e2)|…" and calls re.match on each path: every alternative is
// anchored at the start of the path and none at its end, and the numbering
// of groups (for backreferences) runs across the whole joined pattern.
//
// The pattern is Python's syntax, evaluated with regexp2 (a maintained
// backtracking engine reading lookahead, lookbehind, backreferences and
// (?P<name>…)/(?P=name) in its RE2 mode). Python and regexp2 differ on a
// few constructs; compileKeylimeExcludes refuses those, naming them, so
// that a verdict never silently differs from Keylime's.
type keylimeExcludes struct {
	// all is the joined pattern; ascii the same with every alternative
	// whose meaning is Unicode-aware in Python (\d \w \s \b, (?i:…))
	// disabled, used for paths that are not ASCII.
	all, ascii *regexp2.Regexp
}

// match reports whether the excludes skip path. Where Python and regexp2
// could still disagree the path is judged, not excluded: a path holding a
// byte that cannot reach Keylime as such (not UTF-8, a control character
// such as the newline that ends Keylime's ascii lines) is never excluded,
// and a non-ASCII path is not excluded by an alternative that is
// Unicode-aware in Python. A match that regexp2 cannot finish within
// excludeTimeout does not exclude either (see matchTimed).
func (x *keylimeExcludes) match(path string) bool {
	ok, _ := x.matchTimed(path)
	return ok
}

// matchTimed is match, also saying why a match stopped before its end
// (excludeTimeout, or regexp2's backtracking stack limit; "" when it ran
// to its end). Such a path is judged, not excluded: a verdict stricter
// than Keylime's (whose re.match runs to its end), never more lenient —
// judged by digests the file may fail where Keylime excludes it, but it
// never passes where Keylime fails it, since an excluded file passes.
func (x *keylimeExcludes) matchTimed(path string) (ok bool, stopped string) {
	if x == nil || !utf8.ValidString(path) {
		return false, ""
	}
	re := x.all
	for _, c := range path {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return false, ""
		}
		if c >= 0x80 {
			re = x.ascii
		}
	}
	ok, err := re.MatchString(path)
	switch {
	case errors.Is(err, regexp2.ErrBacktrackingStackLimit):
		return false, "reached the backtracking stack limit"
	case err != nil:
		return false, fmt.Sprintf("timed out after %v", excludeTimeout)
	}
	return ok, ""
}

// excludeTimeout bounds one exclude match.
const excludeTimeout = 2 * time.Second

// excludeScan is the state of the scan over the joined pattern.
type excludeScan struct {
	groups int             // capture groups opened so far (Python numbering)
	closed map[int]bool    // capture groups closed so far
	names  map[string]int  // named groups → number
	nclose map[string]bool // named groups closed
}

// compileKeylimeExcludes checks every exclude and compiles the joined
// pattern. None gives nil (Keylime: no exclude list).
func compileKeylimeExcludes(excludes []string) (*keylimeExcludes, error) {
	if len(excludes) == 0 {
		return nil, nil
	}
	st := &excludeScan{closed: map[int]bool{}, names: map[string]int{}, nclose: map[string]bool{}}
	var all, ascii []string
	for _, e := range excludes {
		tr, unicode, err := st.scan(e)
		if err != nil {
			return nil, fmt.Errorf("%w: %w %q: %s", mr.ErrMalformed, errExclude, e, err.Error())
		}
		all = append(all, "("+tr+")")
		if unicode {
			// (?!) never matches; the alternative keeps its groups, so
			// the numbering of later backreferences is unchanged.
			ascii = append(ascii, "((?!)"+tr+")")
		} else {
			ascii = append(ascii, "("+tr+")")
		}
	}
	opts := []regexp2.CompileOption{regexp2.RE2}
	a, err := regexp2.Compile(`\A(?:`+strings.Join(all, "|")+`)`, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w list %q: not a regular expression: %v", mr.ErrMalformed, errExclude, excludes, err)
	}
	b, err := regexp2.Compile(`\A(?:`+strings.Join(ascii, "|")+`)`, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w list %q: not a regular expression: %v", mr.ErrMalformed, errExclude, excludes, err)
	}
	// A pattern that backtracks without end (Python's re would hang on it
	// too) stops here: the path is then judged, not excluded.
	a.MatchTimeout, b.MatchTimeout = excludeTimeout, excludeTimeout
	return &keylimeExcludes{all: a, ascii: b}, nil
}

// pythonEscapes are the ASCII letters Python's re reads after a backslash
// outside a set (any other ASCII letter is an error in Python).
const pythonEscapes = "abBdDfnrsStvwWxAZu"

// scan checks one exclude (the alternative "(e)" of the joined pattern),
// returns it as regexp2 must read it (Python's \Z is regexp2's \z) and
// whether its meaning is Unicode-aware in Python.
func (st *excludeScan) scan(e string) (string, bool, error) {
	bad := func(format string, args ...any) (string, bool, error) {
		return "", false, fmt.Errorf(format, args...)
	}
	var out strings.Builder
	unicode := false
	st.groups++ // the wrapper group "(e)"
	wrapper := st.groups
	type open struct {
		num        int // capture group number, 0 for none
		name       string
		lookbehind bool
		start      int
	}
	stack := []open{}
	inClass := false
	for i := 0; i < len(e); i++ {
		c := e[i]
		switch {
		case c == '\\':
			if i+1 >= len(e) {
				return bad("ends in a backslash")
			}
			n := e[i+1]
			switch {
			case n >= '0' && n <= '9':
				if inClass || n == '0' || (i+2 < len(e) && e[i+2] >= '0' && e[i+2] <= '9') {
					return bad(`\%c…: an octal escape or a backreference of two digits, read differently by regexp2; write \xHH or a one-digit backreference`, n)
				}
				if !st.closed[int(n-'0')] {
					return bad(`\%c refers to group %c, which is not a closed group before it in Keylime's joined pattern "(e1)|(e2)|…" (Python refuses it)`, n, n)
				}
			case n == 'x':
				if i+3 >= len(e) || !isHex(e[i+2]) || !isHex(e[i+3]) {
					return bad(`\x must be followed by two hex digits (\x{…} is not Python)`)
				}
			case n == 'u':
				if i+5 >= len(e) || !isHex(e[i+2]) || !isHex(e[i+3]) || !isHex(e[i+4]) || !isHex(e[i+5]) {
					return bad(`\u must be followed by four hex digits`)
				}
			case n == 'Z':
				if inClass {
					return bad(`\Z in a set is an error in Python`)
				}
				out.WriteString(`\z`) // Python's \Z is the end of the string only
				i++
				continue
			case n == 'A' || n == 'B':
				if inClass {
					return bad(`\%c in a set is an error in Python`, n)
				}
				if n == 'B' {
					unicode = true
				}
			case n == 'b':
				if !inClass {
					unicode = true // word boundary; in a set, backspace in both
				}
			case strings.IndexByte("dDwWsS", n) >= 0:
				unicode = true
			case n < 0x80 && (n|0x20 >= 'a' && n|0x20 <= 'z'):
				if strings.IndexByte(pythonEscapes, n) < 0 {
					return bad(`\%c is not a Python escape (Python refuses it; \p, \Q…\E, \z, \G, \k, \N, \U are other engines' or newer Pythons')`, n)
				}
			}
			out.WriteString(e[i : i+2])
			i++
			continue
		case inClass:
			switch {
			case c == '[' && i+1 < len(e) && e[i+1] == ':':
				return bad("[:class:] is a POSIX class in regexp2's RE2 mode, a plain set in Python")
			case c == '-' && i+1 < len(e) && e[i+1] == '[':
				return bad("-[…] in a set is class subtraction in regexp2, a range or literal in Python")
			case c == ']':
				inClass = false
			}
		case c == '[':
			inClass = true
			j := i + 1
			if j < len(e) && e[j] == '^' {
				j++
			}
			if j < len(e) && e[j] == ']' {
				out.WriteString(e[i : j+1]) // a ']' first is a literal in both
				i = j
				continue
			}
			if j < len(e) && e[j] == '[' && j+1 < len(e) && e[j+1] == ':' {
				return bad("[:class:] is a POSIX class in regexp2's RE2 mode, a plain set in Python")
			}
			out.WriteString(e[i:j])
			i = j - 1
			continue
		case c == '{' && i+1 < len(e) && e[i+1] == ',':
			return bad("{,n} is a quantifier in Python, literal text in regexp2")
		case (c == '*' || c == '+' || c == '?' || c == '}') && i+1 < len(e) && e[i+1] == '+':
			return bad("possessive quantifier %c+: Python reads it only from 3.11 (an error before, when Keylime drops every exclude)", c)
		case c == ')':
			if len(stack) == 0 {
				return bad("a ')' closes a group this exclude did not open (it would reach into the other excludes of Keylime's joined pattern)")
			}
			g := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if g.lookbehind && strings.ContainsAny(stripEscapes(e[g.start:i]), "*+?{|") {
				return bad("lookbehind %q may match text of several lengths: Python refuses it, regexp2 reads it", e[g.start:i])
			}
			if g.num > 0 {
				st.closed[g.num] = true
			}
			if g.name != "" {
				st.nclose[g.name] = true
			}
		case c == '(':
			rest := e[i+1:]
			g := open{start: i + 1}
			switch {
			case !strings.HasPrefix(rest, "?"):
				st.groups++
				g.num = st.groups
			case strings.HasPrefix(rest, "?:"), strings.HasPrefix(rest, "?="), strings.HasPrefix(rest, "?!"):
			case strings.HasPrefix(rest, "?<="), strings.HasPrefix(rest, "?<!"):
				g.lookbehind = true
				g.start = i + 4
			case strings.HasPrefix(rest, "?#"):
				end := strings.IndexByte(rest, ')')
				if end < 0 {
					return bad("unterminated comment")
				}
				out.WriteString(e[i : i+1+end+1])
				i += end + 1
				continue
			case strings.HasPrefix(rest, "?P<"):
				end := strings.IndexByte(rest, '>')
				if end < 0 {
					return bad("unterminated group name")
				}
				name := rest[3:end]
				if _, dup := st.names[name]; dup {
					return bad("group name %q is defined twice in Keylime's joined pattern (Python refuses it)", name)
				}
				st.groups++
				g.num, g.name = st.groups, name
				st.names[name] = g.num
			case strings.HasPrefix(rest, "?P="):
				end := strings.IndexByte(rest, ')')
				if end < 0 {
					return bad("unterminated (?P=name)")
				}
				if name := rest[3:end]; !st.nclose[name] {
					return bad("(?P=%s) refers to no closed group of that name before it (Python refuses it)", name)
				}
				out.WriteString(e[i : i+1+end+1])
				i += end + 1
				continue
			case strings.HasPrefix(rest, "?>"):
				return bad("atomic group (?>…): Python reads it only from 3.11 (an error before, when Keylime drops every exclude)")
			case strings.HasPrefix(rest, "?("):
				return bad("conditional group (?(…)…) is not evaluated by ccmr")
			case strings.HasPrefix(rest, "?<"), strings.HasPrefix(rest, "?'"), strings.HasPrefix(rest, "?P>"):
				return bad("(?<name>…), (?'name'…) and (?P>name) are not Python; write (?P<name>…)")
			default:
				j := 1
				for j < len(rest) && strings.IndexByte("aiLmsux-", rest[j]) >= 0 {
					j++
				}
				if j == len(rest) || j == 1 {
					return bad("unknown group construct (?%s", rest[1:min(len(rest), 3)])
				}
				if rest[j] == ')' {
					return bad("a global inline flag group applies to every exclude in Keylime (an error in Python since 3.11); use (?flags:…)")
				}
				if rest[j] != ':' {
					return bad("unknown group construct %q", "("+rest[:j+1])
				}
				flags := rest[1:j]
				if strings.ContainsAny(flags, "aLux") {
					return bad("flag a, L, u or x in %q is not evaluated by ccmr as Python does", "("+rest[:j+1])
				}
				if strings.Contains(flags, "i") {
					unicode = true // case folding differs outside ASCII
				}
			}
			stack = append(stack, g)
		}
		out.WriteByte(c)
	}
	if inClass {
		return bad("unterminated set [")
	}
	if len(stack) > 0 {
		return bad("a group is not closed (it would reach into the other excludes of Keylime's joined pattern)")
	}
	st.closed[wrapper] = true
	return out.String(), unicode, nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// stripEscapes drops escaped characters and sets, leaving the operators.
func stripEscapes(s string) string {
	var b strings.Builder
	in := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			i++
		case in:
			if c == ']' {
				in = false
			}
		case c == '[':
			in = true
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
