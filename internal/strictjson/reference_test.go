package strictjson

// The Token-based scanner that scan replaced, kept as the reference for
// FuzzScanDifferential: the same decisions, from json.Decoder.Token.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// tokFrame is an object or array being scanned.
type tokFrame struct {
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
func scanToken(data []byte, top reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // keep numbers out of float64: 1e400 is a valid token
	var stack []*tokFrame
	fail := func(off int64, err error) error { return &Error{Offset: off, Path: tokPath(stack), Err: err} }

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
				if f := tokTop1(stack); f != nil && f.obj && !f.val {
					f.key = string(data[start+1 : end-1]) // as written, not as Token mended it
				}
				return fail(start+1+int64(bad), ErrUTF8)
			}
		}

		f := tokTop1(stack)
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
				ft, known := tokField(f.t, name)
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
				if err := tokCheckKind(tok, top); err != nil {
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
					stack = append(stack, &tokFrame{obj: true, keys: map[string]string{}, t: t})
				} else {
					if t != nil && t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
						t = nil
					}
					stack = append(stack, &tokFrame{t: t})
				}
				continue
			}
		}

		// A value is complete.
		if f := tokTop1(stack); f == nil {
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

func tokTop1(stack []*tokFrame) *tokFrame {
	if len(stack) == 0 {
		return nil
	}
	return stack[len(stack)-1]
}

// path names the value being read, as in logs[2].register or a["b.c"][0].
// Deep paths and long names are cut short, with "...".
func tokPath(stack []*tokFrame) string {
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
		case tokIsIdent(f.key):
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

func tokIsIdent(s string) bool {
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

// tokField returns the type of the one field of struct t whose JSON name is
// exactly this name (nil if more than one is) and whether any is; embedded
// structs' fields count. A name that differs in case is unknown: strict
// input spells members as documented.
func tokField(t reflect.Type, name string) (reflect.Type, bool) {
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

// tokCheckKind refuses a top-level null, and a top-level value of a JSON kind
// that encoding/json cannot decode into t.
func tokCheckKind(tok json.Token, t reflect.Type) error {
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
