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
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
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
	if err := scan(data, rv.Type().Elem()); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
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

// frame is an object or array being scanned.
type frame struct {
	obj  bool
	keys map[string]string // objects: folded name -> name as first written
	key  string            // objects: the member being read
	val  bool              // objects: the next token is that member's value
	mt   reflect.Type      // objects: Go type of that member's value, if tracked
	n    int               // arrays: index of the element being read
	t    reflect.Type      // Go type the container decodes into; nil if not tracked
}

// scan walks the token stream of data and refuses, with offset and path,
// everything Decode refuses except what only encoding/json can see (type
// mismatches, errors of custom unmarshalers). Go types are followed down the
// tree only to name unknown members; encoding/json stays the judge of those.
func scan(data []byte, top reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // keep numbers out of float64: 1e400 is a valid token
	var stack []*frame
	fail := func(off int64, err error) error { return &Error{Offset: off, Path: path(stack), Err: err} }

	var end int64 // offset just after the previous token
	for {
		tok, err := dec.Token()
		start := skip(data, end, " \t\r\n,:") // where tok begins
		if err != nil {
			var se *json.SyntaxError
			switch {
			case errors.As(err, &se):
				return fail(se.Offset, fmt.Errorf("%w: %w", ErrSyntax, err))
			case err == io.EOF && len(stack) == 0:
				return &Error{Offset: start, Err: ErrEmpty}
			case err == io.EOF || err == io.ErrUnexpectedEOF:
				return fail(int64(len(data)), fmt.Errorf("%w: unexpected end of input", ErrSyntax))
			}
			return fail(start, fmt.Errorf("%w: %w", ErrSyntax, err))
		}
		end = dec.InputOffset()
		if _, ok := tok.(string); ok { // a name or a string value
			if bad := badString(data[start+1 : end-1]); bad >= 0 {
				if f := top1(stack); f != nil && f.obj && !f.val {
					f.key = string(data[start+1 : end-1]) // as written, not as Token mended it
				}
				return fail(start+1+int64(bad), ErrUTF8)
			}
		}

		f := top1(stack)
		d, delim := tok.(json.Delim)
		switch {
		case delim && (d == '}' || d == ']'):
			stack = stack[:len(stack)-1]

		case f != nil && f.obj && !f.val: // a member name
			name := tok.(string)
			f.key, f.val = name, true
			// Names that differ only in case are one member for a struct
			// (encoding/json folds them) but two keys of a map (file paths
			// such as terminfo's E/Eterm and e/eterm): fold for structs
			// only. Untyped content (json.RawMessage) is decoded strictly
			// into its type later, where its structs are folded.
			folded := name
			if f.t != nil && f.t.Kind() == reflect.Struct {
				folded = fold(name)
			}
			if prev, dup := f.keys[folded]; dup {
				if prev == name {
					return fail(start, fmt.Errorf("%w %q", ErrDuplicate, name))
				}
				return fail(start, fmt.Errorf("%w %q (encoding/json takes it for %q)", ErrDuplicate, name, prev))
			}
			f.keys[folded] = name
			f.mt = nil
			if f.t != nil && f.t.Kind() == reflect.Map {
				f.mt = f.t.Elem()
			} else if f.t != nil {
				ft, known := field(f.t, name)
				if !known {
					return fail(start, fmt.Errorf("%w %q for %v", ErrUnknown, name, f.t))
				}
				f.mt = ft
			}
			continue

		default: // a value
			var t reflect.Type // the Go type it decodes into, if tracked
			switch {
			case f == nil:
				if err := checkKind(tok, top); err != nil {
					return &Error{Offset: start, Err: err}
				}
				t = top
			case f.obj:
				t = f.mt
			case f.t != nil:
				t = f.t.Elem()
			}
			if delim { // '{' or '['
				if len(stack) == maxDepth {
					return fail(start, fmt.Errorf("%w: nested deeper than %d", ErrSyntax, maxDepth))
				}
				t = container(t)
				if d == '{' {
					if t != nil && t.Kind() != reflect.Struct && t.Kind() != reflect.Map {
						t = nil
					}
					stack = append(stack, &frame{obj: true, keys: map[string]string{}, t: t})
				} else {
					if t != nil && t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
						t = nil
					}
					stack = append(stack, &frame{t: t})
				}
				continue
			}
		}

		// A value is complete.
		if f := top1(stack); f == nil {
			if rest := skip(data, end, " \t\r\n"); rest < int64(len(data)) {
				return &Error{Offset: rest, Err: ErrTrailing}
			}
			return nil
		} else if f.obj {
			f.val = false
		} else {
			f.n++
		}
	}
}

func top1(stack []*frame) *frame {
	if len(stack) == 0 {
		return nil
	}
	return stack[len(stack)-1]
}

// path names the value being read, as in logs[2].register or a["b.c"][0].
// Deep paths and long names are cut short, with "...".
func path(stack []*frame) string {
	const ends, long = 8, 64
	var b strings.Builder
	for i, f := range stack {
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

func skip(data []byte, off int64, set string) int64 {
	for off < int64(len(data)) && strings.IndexByte(set, data[off]) >= 0 {
		off++
	}
	return off
}

// badString returns the offset in s, the body of a syntactically valid JSON
// string, of the first invalid UTF-8 byte or escaped lone surrogate, or -1.
func badString(s []byte) int {
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == '\\' && s[i+1] == 'u':
			r := hex4(s[i+2:])
			if !utf16.IsSurrogate(r) {
				i += 6
			} else if r < 0xdc00 && i+12 <= len(s) && s[i+6] == '\\' && s[i+7] == 'u' &&
				0xdc00 <= hex4(s[i+8:]) && hex4(s[i+8:]) < 0xe000 {
				i += 12 // a high surrogate then a low one
			} else {
				return i
			}
		case c == '\\':
			i += 2
		case c < utf8.RuneSelf:
			i++
		default:
			r, n := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && n == 1 {
				return i
			}
			i += n
		}
	}
	return -1
}

func hex4(s []byte) rune {
	r, err := strconv.ParseUint(string(s[:4]), 16, 32)
	if err != nil {
		return 0xd800 // cannot happen after Token; refuse as a lone surrogate
	}
	return rune(r)
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

// field returns the type of the one field of struct t whose JSON name is
// exactly this name (nil if more than one is) and whether any is; embedded
// structs' fields count. A name that differs in case is unknown: strict
// input spells members as documented.
func field(t reflect.Type, name string) (reflect.Type, bool) {
	var found []reflect.Type
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		if seen[t] {
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
			if tag != "-" && !f.Anonymous && jsonName == name {
				found = append(found, f.Type)
			}
			if ft := f.Type; f.Anonymous {
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					walk(ft)
				}
			}
		}
	}
	walk(t)
	if len(found) == 1 {
		return found[0], true
	}
	return nil, len(found) > 0
}

// checkKind refuses a top-level null, and a top-level value of a JSON kind
// that encoding/json cannot decode into t.
func checkKind(tok json.Token, t reflect.Type) error {
	var got string
	switch tok := tok.(type) {
	case nil:
		return ErrNull
	case json.Delim:
		got = map[json.Delim]string{'{': "object", '[': "array"}[tok]
	case string:
		got = "string"
	case json.Number:
		got = "number"
	case bool:
		got = "boolean"
	}
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
