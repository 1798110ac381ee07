// Package strictjson decodes JSON that must mean one thing to every reader.
//
// encoding/json is lenient in ways that let two readers of one bundle see
// different evidence: it takes the last of two members with the same name
// (other parsers take the first or refuse), it matches member names to
// struct fields case-insensitively (so "logs" and "Logs" in one object fill
// one field, while a Python reader sees two members), json.Decoder stops
// after the first value and ignores what follows, a top-level null decodes
// into an empty value without error, unknown members are dropped, and
// invalid UTF-8 or an escaped lone surrogate is silently replaced with
// U+FFFD. A verifier must fail closed on all of these, so Decode refuses
// them, and only then lets encoding/json fill the value: whatever Decode
// accepts, json.Unmarshal decodes to the same value.
//
// The content of a json.RawMessage has no Go type, so its member names cannot
// be checked as known; it is still checked for syntax, duplicate names and
// UTF-8. A caller decoding it later should do so with Decode again. Types with
// their own UnmarshalJSON method are responsible for their own strictness.
package strictjson

import (
	"bytes"
	"encoding"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Sentinels wrapped by Error.Err; test with errors.Is.
var (
	ErrSyntax    = errors.New("invalid JSON")
	ErrEmpty     = errors.New("empty input")
	ErrTrailing  = errors.New("data after the JSON value")
	ErrNull      = errors.New("top-level null")
	ErrKind      = errors.New("wrong kind of top-level value")
	ErrUnknown   = errors.New("unknown member")
	ErrDuplicate = errors.New("duplicate member")
	ErrUTF8      = errors.New("invalid UTF-8 in string")
	ErrTooLarge  = errors.New("input too large")
	ErrType      = errors.New("value does not fit the Go type")
	ErrTarget    = errors.New("decode target is not a non-nil pointer")
)

// Error is the error returned by Decode and DecodeReader for a refused input.
// Path is a JSON path such as logs[2].register, "" at the top level or if not
// known; for ErrType it is encoding/json's dotted field path (logs.register).
type Error struct {
	Offset int64  // byte offset of the problem in the input; -1 if not known
	Path   string // where in the document
	Err    error  // wraps one of the Err* sentinels
}

func (e *Error) Error() string {
	s := "strictjson: " + e.Err.Error()
	if e.Path != "" {
		s += " at " + e.Path
	}
	if e.Offset >= 0 {
		s += " (offset " + strconv.FormatInt(e.Offset, 10) + ")"
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Decode parses data as exactly one JSON value into v (a pointer), strictly.
// It refuses: empty input or data after the value; a top-level null or a
// top-level value of another JSON kind than v's type expects; unknown object
// members at any depth; two members of one object whose names are equal or
// equal under encoding/json's case folding, at any depth, also inside
// json.RawMessage values; invalid UTF-8 or escaped lone surrogates in strings.
// Every refusal is an *Error. On error *v may be partly written: do not use it.
func Decode(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return &Error{Offset: -1, Err: fmt.Errorf("%w: %v", ErrTarget, reflect.TypeOf(v))}
	}
	return decode(data, v, false)
}

// decode is Decode for a non-nil pointer v. encoding/json fills v: with
// json.Unmarshal, which does not copy data, if the scan has checked every
// member name against the names encoding/json knows; otherwise (and if
// backstop) with a json.Decoder that also refuses unknown members.
func decode(data []byte, v any, backstop bool) error {
	loose, err := scan(data, reflect.TypeOf(v).Elem())
	if err != nil {
		return err
	}
	if loose || backstop {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		err = dec.Decode(v)
	} else {
		err = json.Unmarshal(data, v)
	}
	if err != nil {
		return decodeError(err)
	}
	return nil
}

// DecodeReader does the same as Decode for a stream, reading at most limit
// bytes (limit <= 0: no limit). A longer stream is refused with ErrTooLarge.
func DecodeReader(r io.Reader, limit int64, v any) error {
	if limit > 0 && limit < math.MaxInt64 {
		r = io.LimitReader(r, limit+1)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("strictjson: read: %w", err)
	}
	if limit > 0 && int64(len(data)) > limit {
		return &Error{Offset: limit, Err: fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)}
	}
	return Decode(data, v)
}

// decodeError turns an encoding/json error into an *Error. The scan has
// already refused what it can locate; this is the backstop.
func decodeError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return &Error{Offset: se.Offset, Err: fmt.Errorf("%w: %w", ErrSyntax, err)}
	case errors.As(err, &te):
		return &Error{Offset: te.Offset, Path: te.Field, Err: fmt.Errorf("%w: %w", ErrType, err)}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return &Error{Offset: -1, Err: fmt.Errorf("%w: %w", ErrUnknown, err)}
	}
	return &Error{Offset: -1, Err: fmt.Errorf("%w: %w", ErrType, err)}
}

// maxDepth is encoding/json's limit on nesting, here also a bound on memory.
const maxDepth = 10000

// smallKeys is how many member names a frame keeps in a slice, searched
// linearly, before it keeps them in a map.
const smallKeys = 16

// frame is an object or array being scanned.
type frame struct {
	obj   bool
	names []string             // objects: the names read so far, as written
	keys  map[string]string    // objects with many members: folded name -> name as first written
	key   string               // objects: the member being read
	val   bool                 // objects: the next token is that member's value
	mt    reflect.Type         // objects: Go type of that member's value, if tracked
	n     int                  // arrays: index of the element being read
	t     reflect.Type         // Go type the container decodes into; nil if not tracked
	fs    map[string]fieldInfo // objects into a struct: fieldsOf(t)
}

// scanner is the state of one scan: a single pass over the bytes that
// decodes only member names, never string values.
type scanner struct {
	data  []byte
	stack []frame
	// loose: encoding/json may see a member name that the scan could not
	// hold against encoding/json's own names for the struct it fills (an
	// object or array into an interface, which may hold a pointer to a
	// struct; a name matching several fields, or an unexported field,
	// ...): then encoding/json must also refuse unknown members itself.
	loose bool
}

func (s *scanner) fail(off int, err error) error {
	return &Error{Offset: int64(off), Path: path(s.stack), Err: err}
}

func (s *scanner) syntax(off int, format string, args ...any) error {
	if off >= len(s.data) {
		return s.fail(len(s.data), fmt.Errorf("%w: unexpected end of input", ErrSyntax))
	}
	return s.fail(off, fmt.Errorf("%w: invalid character %s %s", ErrSyntax, quoteChar(s.data[off]), fmt.Sprintf(format, args...)))
}

func quoteChar(c byte) string {
	if c == '\'' {
		return `'\''`
	}
	if c == '"' {
		return `'"'`
	}
	s := strconv.Quote(string(rune(c)))
	if c >= utf8.RuneSelf {
		s = strconv.Quote(string([]byte{c}))
	}
	return "'" + s[1:len(s)-1] + "'"
}

// push starts an object or array whose Go type is t (tracked) or nil.
func (s *scanner) push(obj bool, t reflect.Type) {
	var names []string
	if n := len(s.stack); n < cap(s.stack) {
		names = s.stack[:n+1][n].names[:0] // reuse a popped frame's slice
	}
	f := frame{obj: obj, names: names, t: t}
	if obj && t != nil && t.Kind() == reflect.Struct {
		f.fs = fieldsOf(t)
	}
	s.stack = append(s.stack, f)
}

// scan walks data once and refuses, with offset and path, everything Decode
// refuses except what only encoding/json can see (type mismatches, errors of
// custom unmarshalers). Go types are followed down the tree only to name
// unknown members; where it cannot be sure encoding/json knows a name it
// accepts as known, it reports loose, and encoding/json judges again.
// String values are skipped, never copied: only member names are decoded.
//
// Its decisions, offsets and paths are those of the json.Decoder.Token
// walk it replaced (reference_test.go, FuzzScanDifferential), except that
// a syntax error is placed at the offending byte (the Token walk gave
// encoding/json's running count, which skips the bytes between tokens).
func scan(data []byte, top reflect.Type) (loose bool, err error) {
	s := &scanner{data: data}
	err = s.run(top)
	return s.loose, err
}

func (s *scanner) run(top reflect.Type) error {
	data := s.data
	i := skipSpace(data, 0)
	if i == len(data) {
		return &Error{Offset: int64(i), Err: ErrEmpty}
	}
	first := true // an array or object has just begun: ']' or '}' may end it
	for {
		// A value, or the end of the enclosing array or object, at i.
		i = skipSpace(data, i)
		if i == len(data) {
			return s.syntax(i, "")
		}
		var f *frame
		if n := len(s.stack); n > 0 {
			f = &s.stack[n-1]
		}
		var t reflect.Type // the Go type the value decodes into, if tracked
		switch {
		case f == nil:
			t = top
		case f.obj:
			t = f.mt
		case f.t != nil:
			t = f.t.Elem()
		}
		c := data[i]
		switch c {
		case '{', '[':
			obj := c == '{'
			if f == nil {
				kind := "array"
				if obj {
					kind = "object"
				}
				if err := checkKind(kind, top); err != nil {
					return &Error{Offset: int64(i), Err: err}
				}
			}
			if len(s.stack) == maxDepth {
				return s.fail(i, fmt.Errorf("%w: nested deeper than %d", ErrSyntax, maxDepth))
			}
			ct, iface := containerOf(t, obj)
			s.loose = s.loose || iface
			s.push(obj, ct)
			i++
			if obj {
				var err error
				if i, err = s.member(i, true); err != nil {
					return err
				}
				if i < 0 { // '}' at once
					i = -i
					s.stack = s.stack[:len(s.stack)-1]
					break
				}
				continue
			}
			first = true
			continue
		case ']':
			if f == nil || f.obj || !first {
				return s.syntax(i, "looking for beginning of value")
			}
			s.stack = s.stack[:len(s.stack)-1]
			i++
		case '"':
			end, bad, _, err := s.str(i)
			if err != nil {
				return err
			}
			if bad >= 0 {
				return s.fail(bad, ErrUTF8)
			}
			if f == nil {
				if err := checkKind("string", top); err != nil {
					return &Error{Offset: int64(i), Err: err}
				}
			}
			i = end
		case 't', 'f', 'n':
			lit := "null"
			if c == 't' {
				lit = "true"
			} else if c == 'f' {
				lit = "false"
			}
			for k := 1; k < len(lit); k++ {
				if i+k >= len(data) || data[i+k] != lit[k] {
					return s.syntax(i+k, "in literal %s (expecting %s)", lit, quoteChar(lit[k]))
				}
			}
			if f == nil {
				err := ErrNull
				if c != 'n' {
					err = checkKind("boolean", top)
				}
				if err != nil {
					return &Error{Offset: int64(i), Err: err}
				}
			}
			i += len(lit)
		default:
			if c != '-' && (c < '0' || c > '9') {
				return s.syntax(i, "looking for beginning of value")
			}
			end, err := s.number(i)
			if err != nil {
				return err
			}
			if f == nil {
				if err := checkKind("number", top); err != nil {
					return &Error{Offset: int64(i), Err: err}
				}
			}
			i = end
		}
		first = false

		// A value is complete; so, at a '}', ']' is each enclosing
		// container that ends after it.
		for {
			n := len(s.stack)
			if n == 0 {
				if rest := skipSpace(data, i); rest < len(data) {
					return &Error{Offset: int64(rest), Err: ErrTrailing}
				}
				return nil
			}
			f := &s.stack[n-1]
			i = skipSpace(data, i)
			if i == len(data) {
				if f.obj {
					f.val = false
				} else {
					f.n++
				}
				return s.syntax(i, "")
			}
			c := data[i]
			if f.obj {
				f.val = false
				switch c {
				case ',':
					var err error
					if i, err = s.member(i+1, false); err != nil {
						return err
					}
				case '}':
					s.stack = s.stack[:n-1]
					i++
					continue
				default:
					return s.syntax(i, "after object key:value pair")
				}
			} else {
				f.n++
				switch c {
				case ',':
					i++
				case ']':
					s.stack = s.stack[:n-1]
					i++
					continue
				default:
					return s.syntax(i, "after array element")
				}
			}
			break
		}
	}
}

// member reads a member name and its colon at i, in the object on top of
// the stack, and returns where its value begins. If first, the object may
// end there instead: then it returns minus the offset after the '}'.
func (s *scanner) member(i int, first bool) (int, error) {
	data := s.data
	i = skipSpace(data, i)
	if i == len(data) {
		return 0, s.syntax(i, "")
	}
	if data[i] == '}' && first {
		return -(i + 1), nil
	}
	if data[i] != '"' {
		return 0, s.syntax(i, "looking for beginning of object key string")
	}
	start := i
	end, bad, esc, err := s.str(i)
	if err != nil {
		return 0, err
	}
	f := &s.stack[len(s.stack)-1]
	if bad >= 0 {
		f.key = string(data[start+1 : end-1]) // as written, not as decoded
		return 0, s.fail(bad, ErrUTF8)
	}
	raw := data[start+1 : end-1]
	var name string
	var info fieldInfo
	known := false
	switch {
	case esc:
		if err := json.Unmarshal(data[start:end], &name); err != nil {
			return 0, s.fail(start, fmt.Errorf("%w: %w", ErrSyntax, err)) // cannot happen
		}
		if f.fs != nil {
			info, known = f.fs[name]
		}
	case f.fs != nil:
		if info, known = f.fs[string(raw)]; known {
			name = info.name // no copy of the bytes
		} else {
			name = string(raw)
		}
	default:
		name = string(raw)
	}
	f.key, f.val = name, true
	// Names that differ only in case are one member for a struct
	// (encoding/json folds them) but two keys of a map (file paths such
	// as terminfo's E/Eterm and e/eterm): fold for structs only. Untyped
	// content (json.RawMessage) is decoded strictly into its type later,
	// where its structs are folded.
	isStruct := f.t != nil && f.t.Kind() == reflect.Struct
	if prev, dup := f.lookup(name, isStruct); dup {
		if prev == name {
			return 0, s.fail(start, fmt.Errorf("%w %q", ErrDuplicate, name))
		}
		return 0, s.fail(start, fmt.Errorf("%w %q (encoding/json takes it for %q)", ErrDuplicate, name, prev))
	}
	f.add(name, isStruct)
	f.mt = nil
	if f.t != nil && f.t.Kind() == reflect.Map {
		f.mt = f.t.Elem()
	} else if f.t != nil {
		if !known {
			return 0, s.fail(start, fmt.Errorf("%w %q for %v", ErrUnknown, name, f.t))
		}
		f.mt = info.t
		s.loose = s.loose || !info.exact
	}
	i = skipSpace(data, end)
	if i == len(data) {
		return 0, s.syntax(i, "")
	}
	if data[i] != ':' {
		return 0, s.syntax(i, "after object key")
	}
	return i + 1, nil
}

// lookup returns the name as first written of a member read before that
// this name repeats: the same name, or for a struct the same under folding.
func (f *frame) lookup(name string, fold bool) (string, bool) {
	if f.keys != nil {
		if fold {
			name = foldName(name)
		}
		prev, ok := f.keys[name]
		return prev, ok
	}
	for _, prev := range f.names {
		if prev == name || fold && foldEqual(prev, name) {
			return prev, true
		}
	}
	return "", false
}

func (f *frame) add(name string, fold bool) {
	if f.keys == nil && len(f.names) < smallKeys {
		f.names = append(f.names, name)
		return
	}
	if f.keys == nil {
		f.keys = make(map[string]string, 2*smallKeys)
		for _, prev := range f.names {
			k := prev
			if fold {
				k = foldName(prev)
			}
			f.keys[k] = prev
		}
	}
	if fold {
		f.keys[foldName(name)] = name
	} else {
		f.keys[name] = name
	}
}

// str scans the string at data[i] == '"'. It returns the offset after the
// closing quote, the offset of the first invalid UTF-8 byte or escaped lone
// surrogate in it (-1 if none) and whether it has escapes; a syntax error
// is found first, as encoding/json reads the whole string before the UTF-8
// is checked.
func (s *scanner) str(i int) (end, bad int, esc bool, err error) {
	const (
		lo = 0x0101010101010101
		hi = 0x8080808080808080
	)
	data := s.data
	bad = -1
	j := i + 1
	for {
		// Eight bytes at a time while none is a quote, a backslash, a
		// control character or not ASCII: the body of a base64 string.
		for j+8 <= len(data) {
			w := binary.LittleEndian.Uint64(data[j:])
			q := w ^ ('"' * lo)
			b := w ^ ('\\' * lo)
			m := ((w - 0x20*lo) | w | (q-lo)&^q | (b-lo)&^b) & hi
			if m != 0 {
				j += bits.TrailingZeros64(m) / 8
				break
			}
			j += 8
		}
		if j >= len(data) {
			return 0, 0, false, s.syntax(j, "")
		}
		switch c := data[j]; {
		case c == '"':
			return j + 1, bad, esc, nil
		case c == '\\':
			esc = true
			if j+1 >= len(data) {
				return 0, 0, false, s.syntax(j+1, "")
			}
			switch data[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				r, err := s.hex4(j + 2)
				if err != nil {
					return 0, 0, false, err
				}
				if !utf16.IsSurrogate(r) {
					j += 6
				} else if r < 0xdc00 && j+12 <= len(data) && data[j+6] == '\\' && data[j+7] == 'u' &&
					0xdc00 <= hexRune(data[j+8:j+12]) && hexRune(data[j+8:j+12]) < 0xe000 {
					j += 12 // a high surrogate then a low one
				} else {
					if bad < 0 {
						bad = j
					}
					j += 6
				}
			default:
				return 0, 0, false, s.syntax(j+1, "in string escape code")
			}
		case c < 0x20:
			return 0, 0, false, s.syntax(j, "in string literal")
		case c < utf8.RuneSelf:
			j++
		default:
			r, n := utf8.DecodeRune(data[j:])
			if r == utf8.RuneError && n == 1 && bad < 0 {
				bad = j
			}
			j += n
		}
	}
}

// hex4 reads the four hex digits of a \u escape at i.
func (s *scanner) hex4(i int) (rune, error) {
	for k := i; k < i+4; k++ {
		if k >= len(s.data) {
			return 0, s.syntax(k, "")
		}
		if hexRune(s.data[k:k+1]) < 0 {
			return 0, s.syntax(k, "in \\u hexadecimal character escape")
		}
	}
	return hexRune(s.data[i : i+4]), nil
}

// hexRune is the value of the hex digits s, or -1 if one is not one.
func hexRune(s []byte) rune {
	var r rune
	for _, c := range s {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// number scans the number at i, as encoding/json's scanner does: it ends
// at the first byte that cannot continue it.
func (s *scanner) number(i int) (int, error) {
	data := s.data
	digits := func(j int) int {
		for j < len(data) && '0' <= data[j] && data[j] <= '9' {
			j++
		}
		return j
	}
	digit := func(j int, context string) error {
		if j >= len(data) || data[j] < '0' || data[j] > '9' {
			return s.syntax(j, "%s", context)
		}
		return nil
	}
	j := i
	if data[j] == '-' {
		j++
		if err := digit(j, "in numeric literal"); err != nil {
			return 0, err
		}
	}
	if data[j] == '0' {
		j++
	} else {
		j = digits(j)
	}
	if j < len(data) && data[j] == '.' {
		j++
		if err := digit(j, "after decimal point in numeric literal"); err != nil {
			return 0, err
		}
		j = digits(j)
	}
	if j < len(data) && (data[j] == 'e' || data[j] == 'E') {
		j++
		if j < len(data) && (data[j] == '+' || data[j] == '-') {
			j++
		}
		if err := digit(j, "in exponent of numeric literal"); err != nil {
			return 0, err
		}
		j = digits(j)
	}
	return j, nil
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// path names the value being read, as in logs[2].register or a["b.c"][0].
// Deep paths and long names are cut short, with "...".
func path(stack []frame) string {
	const ends, long = 8, 64
	var b strings.Builder
	for i := range stack {
		f := &stack[i]
		if len(stack) > 2*ends && i >= ends && i < len(stack)-ends {
			if i == ends {
				b.WriteString("[...]")
			}
			continue
		}
		switch {
		case !f.obj:
			fmt.Fprintf(&b, "[%d]", f.n)
		case len(f.key) > long:
			b.WriteString("[" + strconv.Quote(f.key[:long]) + "...]")
		case isIdent(f.key):
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(f.key)
		default:
			b.WriteString("[" + strconv.Quote(f.key) + "]")
		}
	}
	return b.String()
}

func isIdent(s string) bool {
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return s != ""
}

// foldName is fold, without copying an ASCII name that has no lower case.
func foldName(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return fold(s)
		}
	}
	return strings.ToUpper(s) // fold of ASCII
}

// foldEqual reports whether fold(a) == fold(b).
func foldEqual(a, b string) bool {
	for i := 0; i < len(a); i++ {
		if a[i] >= utf8.RuneSelf {
			return fold(a) == fold(b)
		}
	}
	for i := 0; i < len(b); i++ {
		if b[i] >= utf8.RuneSelf {
			return fold(a) == fold(b)
		}
	}
	return strings.EqualFold(a, b) // ASCII: fold is upper case
}

// fold maps names that encoding/json matches to one struct field (those
// equal under strings.EqualFold) to one string, as encoding/json's foldName.
func fold(s string) string {
	var b strings.Builder
	for _, r := range s {
		for {
			r2 := unicode.SimpleFold(r)
			if r2 <= r {
				r = r2
				break
			}
			r = r2
		}
		b.WriteRune(r)
	}
	return b.String()
}

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	numberType          = reflect.TypeFor[json.Number]()
)

// indirect follows pointers as encoding/json does, stopping at a type that
// unmarshals itself: custom is "json" for UnmarshalJSON, "text" for
// UnmarshalText.
func indirect(t reflect.Type) (_ reflect.Type, custom string) {
	for {
		switch {
		case t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType):
			return t, "json"
		case t.Implements(textUnmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType):
			return t, "text"
		case t.Kind() != reflect.Pointer:
			return t, ""
		}
		t = t.Elem()
	}
}

// container returns the type whose members or elements encoding/json fills
// for an object or array decoded into t, or nil when that is not known.
func container(t reflect.Type) reflect.Type {
	if t == nil {
		return nil
	}
	if t, custom := indirect(t); custom == "" {
		return t
	}
	return nil
}

// containers caches containerOf: reflect.Type -> containerInfo.
var containers sync.Map

type containerInfo struct {
	obj, arr reflect.Type
	iface    bool
}

// containerOf is the Go type tracked for an object (obj) or an array
// decoded into t: container(t) if it is a struct or map (object), a slice
// or array (array), else nil. iface: container(t) is an interface.
func containerOf(t reflect.Type, obj bool) (_ reflect.Type, iface bool) {
	if t == nil {
		return nil, false
	}
	c, ok := containers.Load(t)
	if !ok {
		var ci containerInfo
		if ct := container(t); ct != nil {
			switch ct.Kind() {
			case reflect.Struct, reflect.Map:
				ci.obj = ct
			case reflect.Slice, reflect.Array:
				ci.arr = ct
			case reflect.Interface:
				ci.iface = true
			}
		}
		c, _ = containers.LoadOrStore(t, ci)
	}
	ci := c.(containerInfo)
	if obj {
		return ci.obj, ci.iface
	}
	return ci.arr, ci.iface
}

// fieldInfo is a member name a struct knows: the type of the one field of
// that JSON name, nil if more than one field has it.
type fieldInfo struct {
	name string
	t    reflect.Type
	// exact: encoding/json surely knows this name too, for this field:
	// the only field of the name, exported, with a plain tag, in a struct
	// whose embedded structs encoding/json walks as this scan does.
	exact bool
}

// fields caches fieldsOf: reflect.Type -> map[string]fieldInfo.
var fields sync.Map

// fieldsOf returns the member names of struct t: for each, the type of the
// one field whose JSON name is exactly that name (nil if more than one
// is); embedded structs' fields count. A name that differs in case is
// unknown: strict input spells members as documented.
func fieldsOf(t reflect.Type) map[string]fieldInfo {
	if m, ok := fields.Load(t); ok {
		return m.(map[string]fieldInfo)
	}
	found := map[string][]reflect.StructField{}
	plain := true // encoding/json walks the embedded structs as walk does
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		if seen[t] {
			plain = false // embedded twice: encoding/json sees its fields twice
			return
		}
		seen[t] = true
		for i := range t.NumField() {
			f := t.Field(i)
			// The member must be spelt as documented: encoding/json
			// would also take "Registers" for "registers", a reader in
			// another language would not.
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			jsonName := tag
			if tag == "" {
				jsonName = f.Name
			}
			if tag != "-" && !f.Anonymous {
				found[jsonName] = append(found[jsonName], f)
			}
			if ft := f.Type; f.Anonymous {
				ptr := ft.Kind() == reflect.Pointer
				if ptr {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					walk(ft)
				}
				if tag != "" || ft.Kind() != reflect.Struct || ptr && !f.IsExported() {
					plain = false
				}
			}
		}
	}
	walk(t)
	m := make(map[string]fieldInfo, len(found))
	for name, fs := range found {
		fi := fieldInfo{name: name}
		if len(fs) == 1 {
			fi.t = fs[0].Type
			fi.exact = plain && fs[0].IsExported() && plainName(name)
		}
		m[name] = fi
	}
	fields.Store(t, m)
	return m
}

// plainName: name is a JSON name encoding/json takes from a tag as it is.
func plainName(name string) bool {
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return name != ""
}

// checkKind refuses a top-level value of a JSON kind (got: object, array,
// string, number or boolean; null is refused before) that encoding/json
// cannot decode into t.
func checkKind(got string, t reflect.Type) error {
	t, custom := indirect(t)
	var want string
	switch k := t.Kind(); {
	case custom == "json" || k == reflect.Interface:
		return nil
	case custom == "text":
		want = "string"
	case t == numberType:
		want = "number string"
	case k == reflect.Struct || k == reflect.Map:
		want = "object"
	case k == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		want = "array string" // base64 in a string
	case k == reflect.Slice || k == reflect.Array:
		want = "array"
	case k == reflect.String:
		want = "string"
	case k == reflect.Bool:
		want = "boolean"
	case reflect.Int <= k && k <= reflect.Float64:
		want = "number"
	default:
		return nil // encoding/json refuses every kind itself
	}
	for _, w := range strings.Fields(want) {
		if w == got {
			return nil
		}
	}
	return fmt.Errorf("%w: %s for %v, which wants %s", ErrKind, got, t, strings.ReplaceAll(want, " ", " or "))
}
