package strictjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

var sentinels = []error{ErrSyntax, ErrEmpty, ErrTrailing, ErrNull, ErrKind, ErrUnknown,
	ErrDuplicate, ErrUTF8, ErrTooLarge, ErrType, ErrTarget}

func sentinel(err error) error {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return s
		}
	}
	return err
}

// FuzzScanDifferential: the byte scanner decides as the json.Decoder.Token
// scanner it replaced (reference_test.go) did: accept or refuse, and with
// the same sentinel and path, and the same offset for all but syntax errors
// (the Token scanner's were encoding/json's running count, not always the
// offending byte). And json.Unmarshal, used when the scan is not loose,
// decodes as the json.Decoder that refuses unknown members.
func FuzzScanDifferential(f *testing.F) {
	for _, s := range []string{
		`{"a":"x","n":1,"f":1.5e3,"u":"7","b":true,"s":[{"k":"é\u00e9","l":[1,2],"p":{"k":"q"}}],"o":{"z":{"m":{"a":1}}},"i":[null,{"c":"d"}],"x":["1","2"],"y":"AQI=","z":1e400,"r":{"a":[1]}}`,
		`{"k":"promoted","p":null,"r":[{"x":1},{"x":1,"X":2}]}`,
		`{"a":1,"A":2}`, `{"s":[{"k":"a","K":"b"}]}`, `{}{"a":1}`, `null`, `[]`, ``, " \n",
		"{\"a\":\"\xff\"}", `{"a":"\ud800"}`, `{"a":"\ud83d\ude00"}`, `{"a":"\ud800\udc0"}`, `{"zz":1}`,
		`{"o":{"x":{"q":1}}}`, `{"i":{"a":1,"a":1}}`, `{"a":"x"} `, `{"n":01}`, `{"n":-}`, `{"n":1.}`,
		`{"n":1e+}`, `[1,]`, `{"a":1,}`, `[truex]`, `nullx`, `01`, `{"a" 1}`, `{1:2}`, `"\x"`,
		"\"a\x01\"", `{"o":{"a":{"k":"1","K":"2"}}}`, `{"ver\u017fion":1,"version":2}`,
		`{"extra":{"a":1,"a":2}}`, `{"named":{"k":{},"K":{}}}`, `{"logs":[{"format":"a"}`,
		`{"a":"` + "\xc3\xa9\xe2\x82" + `"}`, `[[[[{"a":[{"b":{}}]}]]]]`, `{"s":[{"p":{"p":{"zz":1}}}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, typ := range []reflect.Type{
			reflect.TypeFor[fuzzTarget](), reflect.TypeFor[bundle](), reflect.TypeFor[any](),
			reflect.TypeFor[json.RawMessage](), reflect.TypeFor[map[string]fuzzInner](),
			reflect.TypeFor[[]*fuzzInner](), reflect.TypeFor[string](), reflect.TypeFor[float64](),
		} {
			old := scanToken(data, typ)
			_, got := scan(data, typ)
			if (old == nil) != (got == nil) {
				t.Fatalf("%v: scan(%q) = %v, Token scan %v", typ, data, got, old)
			}
			if old == nil {
				continue
			}
			var o, g *Error
			if !errors.As(old, &o) || !errors.As(got, &g) {
				t.Fatalf("%v: scan(%q) = %v, Token scan %v: not *Error", typ, data, got, old)
			}
			if sentinel(o) != sentinel(g) || o.Path != g.Path || (o.Offset != g.Offset && sentinel(g) != ErrSyntax) {
				t.Fatalf("%v: scan(%q) = %v, Token scan %v", typ, data, got, old)
			}
		}
		for _, mk := range []func() any{
			func() any { return new(fuzzTarget) }, func() any { return new(bundle) },
			func() any { v := any(&fuzzInner{}); return &v }, // an interface holding a struct
		} {
			v1, v2 := mk(), mk()
			err1, err2 := decode(data, v1, false), decode(data, v2, true)
			if (err1 == nil) != (err2 == nil) || err1 != nil && sentinel(err1) != sentinel(err2) {
				t.Fatalf("decode(%q, %T) = %v, with a json.Decoder %v", data, v1, err1, err2)
			}
			if err1 == nil && !reflect.DeepEqual(v1, v2) {
				t.Fatalf("decode(%q) = %#v, with a json.Decoder %#v", data, v1, v2)
			}
		}
	})
}

// TestLoose: the scan leaves unknown members to encoding/json where it cannot
// know them, and only there.
func TestLoose(t *testing.T) {
	type unexported struct {
		A int `json:"a"`
		b int
	}
	type a1 struct{ A int }
	type a2 struct{ A int }
	type twice struct {
		a1
		a2
	}
	type tagged struct {
		base `json:"base"`
	}
	for _, c := range []struct {
		in    string
		typ   reflect.Type
		loose bool
	}{
		{`{"version":1,"logs":[{"format":"x","entries":[{"register":"r"}]}],"named":{"n":{}}}`, reflect.TypeFor[bundle](), false},
		{`{"id":1}`, reflect.TypeFor[bundle](), false}, // promoted from an embedded struct
		{`{"extra":{"a":{"b":[1]}}}`, reflect.TypeFor[bundle](), false},
		{`{"any":1}`, reflect.TypeFor[bundle](), false},
		{`{"any":{}}`, reflect.TypeFor[bundle](), true},
		{`{"any":[]}`, reflect.TypeFor[bundle](), true},
		{`{}`, reflect.TypeFor[any](), true},
		{`{"a":1}`, reflect.TypeFor[unexported](), false},
		{`{"b":1}`, reflect.TypeFor[unexported](), true},
		{`{"A":1}`, reflect.TypeFor[twice](), true},
		{`{"id":1}`, reflect.TypeFor[tagged](), true},
	} {
		loose, err := scan([]byte(c.in), c.typ)
		if err != nil || loose != c.loose {
			t.Errorf("scan(%s, %v) = %v, %v; want loose %v", c.in, c.typ, loose, err, c.loose)
		}
	}
	type withB struct {
		b int
	}
	var w withB
	if err := Decode([]byte(`{"b":1}`), &w); !errors.Is(err, ErrUnknown) {
		t.Errorf("unexported field: %v, want ErrUnknown from encoding/json", err)
	}
}

// TestManyMembers: objects with more members than a frame keeps in a slice
// decide as the Token scanner did.
func TestManyMembers(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"named":{`)
	for i := range 3 * smallKeys {
		fmt.Fprintf(&b, `"k%d":{},"K%d":{},`, i, i)
	}
	prefix := b.String()
	for _, in := range []string{
		prefix + `"x":{}}}`,
		prefix + `"k7":{}}}`,
		prefix + `"k\u0037":{}}}`,
		prefix + `"K40":{}}}`,
		prefix + `"k":{"register":"a","digest":"b","REGISTER":"c"}}}`,
		`{"extra":{` + prefix[len(`{"named":{`):] + `"k33":1}}`,
	} {
		for _, typ := range []reflect.Type{reflect.TypeFor[bundle](), reflect.TypeFor[any]()} {
			old := scanToken([]byte(in), typ)
			_, got := scan([]byte(in), typ)
			if fmt.Sprint(old) != fmt.Sprint(got) && !errors.Is(got, ErrSyntax) {
				t.Errorf("%v: scan(%.40s...) = %v, Token scan %v", typ, in, got, old)
			}
		}
	}
	// A struct object past smallKeys members: every member once, then one
	// in another case.
	type wide struct {
		F00, F01, F02, F03, F04, F05, F06, F07, F08, F09 int
		F10, F11, F12, F13, F14, F15, F16, F17, F18, F19 int
	}
	b.Reset()
	b.WriteString("{")
	for i := range 20 {
		fmt.Fprintf(&b, `"F%02d":%d,`, i, i)
	}
	for _, tail := range []string{`"f07":1}`, `"F19":1}`, `"F20":1}`} {
		in := b.String() + tail
		old := scanToken([]byte(in), reflect.TypeFor[wide]())
		_, got := scan([]byte(in), reflect.TypeFor[wide]())
		if old == nil || fmt.Sprint(old) != fmt.Sprint(got) {
			t.Errorf("scan(%s) = %v, Token scan %v", in, got, old)
		}
	}
}
