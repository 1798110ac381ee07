package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
)

type entry struct {
	Register string `json:"register"`
	Digest   string `json:"digest,omitempty"`
}

type log struct {
	Format  string  `json:"format"`
	Entries []entry `json:"entries"`
}

type base struct {
	ID int `json:"id"`
}

type bundle struct {
	base
	Version int              `json:"version"`
	Logs    []log            `json:"logs"`
	Named   map[string]entry `json:"named,omitempty"`
	Extra   json.RawMessage  `json:"extra,omitempty"`
	Ratio   float64          `json:"ratio,omitempty"`
	Big     json.Number      `json:"big,omitempty"`
	Note    *string          `json:"note,omitempty"`
	Any     any              `json:"any,omitempty"`
	Secret  string           `json:"-"`
}

// TestHonest: what encoding/json decodes, Decode decodes the same way.
func TestHonest(t *testing.T) {
	for _, in := range []string{
		`{}`,
		` {"version": 1} ` + "\n",
		`{"id":7,"version":2,"logs":[{"format":"ima","entries":[{"register":"pcr10","digest":"ab"},{"register":"pcr11"}]},{"format":"tcg","entries":[]}]}`,
		`{"named":{"a":{"register":"x"},"b":{"register":"y"}}}`,
		`{"named":{}}`,
		// Map keys that differ only in case are different keys (terminfo's
		// E/Eterm and e/eterm in a Keylime policy), and so is untyped
		// content, decoded strictly into its own type later.
		`{"named":{"k":{},"K":{},"\u212a":{}}}`,
		`{"extra":{"a":1,"A":2}}`,
		`{"extra":{"anything":[1,{"goes":null}],"Goes":true}}`,
		`{"extra":[{"x":1},{"x":2}]}`,
		`{"ratio":-0.5e3,"big":1e400,"version":-0}`,
		`{"logs":[{"format":"caf\u00e9 \ud83d\ude00 é \ufffd \u0000 \"q\""}]}`,
		`{"note":null,"logs":null,"named":{"n":{"register":null}}}`,
		`{"any":{"a":[1,"b",true,null]}}`,
	} {
		var got, want bundle
		if err := Decode([]byte(in), &got); err != nil {
			t.Errorf("Decode(%s): %v", in, err)
			continue
		}
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatalf("json.Unmarshal(%s): %v", in, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Decode(%s) = %+v, json.Unmarshal = %+v", in, got, want)
		}
	}
	var e bundle
	Decode([]byte(`{"logs":[{"format":"caf\u00e9"}]}`), &e)
	if e.Logs[0].Format != "café" {
		t.Errorf("format = %q", e.Logs[0].Format)
	}
}

func TestHostile(t *testing.T) {
	for _, c := range []struct {
		in     string
		err    error
		offset int64
		path   string
	}{
		// 1. exactly one value
		{``, ErrEmpty, 0, ""},
		{" \n\t", ErrEmpty, 3, ""},
		{`{}{"version":1}`, ErrTrailing, 2, ""},
		{`{"version":1} {"version":2}`, ErrTrailing, 14, ""},
		{`{} x`, ErrTrailing, 3, ""},
		{`{"version":1,}`, ErrSyntax, 13, "version"},
		{`{"logs":[{"format":"a"}`, ErrSyntax, 23, "logs[1]"},
		{`{"version":01}`, ErrSyntax, 12, "version"},
		// 2. top-level null and kind
		{`null`, ErrNull, 0, ""},
		{` null `, ErrNull, 1, ""},
		{`[]`, ErrKind, 0, ""},
		{`"{}"`, ErrKind, 0, ""},
		{`1`, ErrKind, 0, ""},
		// 3. unknown members at any depth
		{`{"version":1,"bogus":2}`, ErrUnknown, 13, "bogus"},
		{`{"Secret":"s"}`, ErrUnknown, 1, "Secret"}, // a json:"-" field
		{`{"Version":3}`, ErrUnknown, 1, "Version"}, // members are spelt as documented, case included
		{`{"logs":[{},{"entries":[{"register":"a","colour":1}]}]}`, ErrUnknown, 40, "logs[1].entries[0].colour"},
		{`{"named":{"x":{"zzz":1}}}`, ErrUnknown, 15, "named.x.zzz"},
		// 4. duplicate names, also under case folding, at any depth
		{`{"version":1,"version":2}`, ErrDuplicate, 13, "version"},
		{`{"logs":[],"Logs":[{"format":"evil"}]}`, ErrDuplicate, 11, "Logs"},
		{`{"version":1,"ver\u017fion":2}`, ErrDuplicate, 13, "[\"ver\u017fion\"]"}, // U+017F long s folds to s
		{`{"logs":[{"entries":[{"register":"a","REGISTER":"b"}]}]}`, ErrDuplicate, 37, "logs[0].entries[0].REGISTER"},
		{`{"named":{"k":{},"k":{}}}`, ErrDuplicate, 17, "named.k"}, // map keys: exact duplicates only
		{`{"extra":{"a":1,"a":2}}`, ErrDuplicate, 16, "extra.a"},
		{`{"extra":[{"x":1},{"x":1,"x":2}]}`, ErrDuplicate, 25, "extra[1].x"},
		{`{"any":{"deep":[[{"k":1,"k":1}]]}}`, ErrDuplicate, 24, "any.deep[0][0].k"},
		// 5. invalid UTF-8 and lone surrogates
		{"{\"logs\":[{\"format\":\"a\xffb\"}]}", ErrUTF8, 21, "logs[0].format"},
		{"{\"extra\":{\"k\xc3\":1}}", ErrUTF8, 12, "extra[\"k\\xc3\"]"},
		{`{"logs":[{"format":"\ud800"}]}`, ErrUTF8, 20, "logs[0].format"},
		{`{"logs":[{"format":"x\udc00\ud800"}]}`, ErrUTF8, 21, "logs[0].format"},
		{`{"logs":[{"format":"\ud800\u0041"}]}`, ErrUTF8, 20, "logs[0].format"},
		// what only encoding/json sees
		{`{"version":"1"}`, ErrType, 14, "version"},
	} {
		var b bundle
		err := Decode([]byte(c.in), &b)
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, c.err) {
			t.Errorf("Decode(%q) = %v, want %v", c.in, err, c.err)
			continue
		}
		if e.Offset != c.offset || e.Path != c.path {
			t.Errorf("Decode(%q) = %v: offset %d path %q, want %d %q", c.in, err, e.Offset, e.Path, c.offset, c.path)
		}
	}
}

func TestTopLevelKind(t *testing.T) {
	var (
		s   []int
		m   map[string]int
		str string
		n   float64
		raw json.RawMessage
		a   any
		p   *bundle
		bs  []byte
		num json.Number
	)
	for _, c := range []struct {
		in  string
		v   any
		err error
	}{
		{`[1,2]`, &s, nil},
		{`{}`, &s, ErrKind},
		{`null`, &s, ErrNull},
		{`{"a":1}`, &m, nil},
		{`[]`, &m, ErrKind},
		{`"x"`, &str, nil},
		{`1`, &str, ErrKind},
		{`1.5`, &n, nil},
		{`true`, &n, ErrKind},
		{`[1]`, &raw, nil},
		{`null`, &raw, ErrNull},
		{`{"a":1,"a":2}`, &raw, ErrDuplicate},
		{`false`, &a, nil},
		{`null`, &a, ErrNull},
		{`{"version":1}`, &p, nil},
		{`null`, &p, ErrNull},
		{`"AQI="`, &bs, nil},
		{`[1,2]`, &bs, nil},
		{`"12"`, &num, nil},
		{`12`, &num, nil},
		{`{}`, bundle{}, ErrTarget},
		{`{}`, (*bundle)(nil), ErrTarget},
		{`{}`, nil, ErrTarget},
	} {
		if err := Decode([]byte(c.in), c.v); !errors.Is(err, c.err) || (err != nil) != (c.err != nil) {
			t.Errorf("Decode(%s, %T) = %v, want %v", c.in, c.v, err, c.err)
		}
	}
}

// TestRawMessage: RawMessage content is checked for names that collide, not
// for names that are unknown (it has no type).
func TestRawMessage(t *testing.T) {
	var b bundle
	if err := Decode([]byte(`{"extra":{"unknown":{"Unknown2":[{"a":1},{"a":2}]}}}`), &b); err != nil {
		t.Fatal(err)
	}
	if string(b.Extra) != `{"unknown":{"Unknown2":[{"a":1},{"a":2}]}}` {
		t.Errorf("Extra = %s", b.Extra)
	}
	for _, in := range []string{
		`{"extra":{"unknown":{"Unknown2":[{"a":1},{"a":2,"a":3}]}}}`,
		`{"extra":[[{"x":{"y":1,"y":2}}]]}`,
	} {
		if err := Decode([]byte(in), &b); !errors.Is(err, ErrDuplicate) {
			t.Errorf("Decode(%s) = %v, want a duplicate", in, err)
		}
	}
}

func TestErrorWrapping(t *testing.T) {
	var b bundle
	err := fmt.Errorf("%s: %w", "bundle.json", Decode([]byte(`{"logs":[{"format":"a"},{"format":"b","Format":"c"}]}`), &b))
	want := `bundle.json: strictjson: duplicate member "Format" (encoding/json takes it for "format") at logs[1].Format (offset 38)`
	if err.Error() != want {
		t.Errorf("error = %s\nwant    %s", err, want)
	}
	var e *Error
	if !errors.Is(err, ErrDuplicate) || !errors.As(err, &e) || e.Offset != 38 {
		t.Errorf("errors.Is/As failed on %v", err)
	}
	err = Decode([]byte(`{"version":true}`), &b)
	var te *json.UnmarshalTypeError
	if !errors.Is(err, ErrType) || !errors.As(err, &te) {
		t.Errorf("type error %v does not wrap *json.UnmarshalTypeError", err)
	}
}

type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestDecodeReaderLimit(t *testing.T) {
	in := `{"version":1}`
	for _, c := range []struct {
		limit int64
		err   error
	}{
		{0, nil}, {-1, nil}, {int64(len(in)), nil}, {1 << 62, nil},
		{int64(len(in)) - 1, ErrTooLarge}, {1, ErrTooLarge},
	} {
		var b bundle
		err := DecodeReader(strings.NewReader(in), c.limit, &b)
		if !errors.Is(err, c.err) || (err != nil) != (c.err != nil) {
			t.Errorf("limit %d: %v, want %v", c.limit, err, c.err)
		}
		if err == nil && b.Version != 1 {
			t.Errorf("limit %d: version %d", c.limit, b.Version)
		}
	}
	var b bundle
	if err := DecodeReader(io.MultiReader(strings.NewReader(in), endless{}), 1<<20, &b); !errors.Is(err, ErrTooLarge) {
		t.Errorf("endless stream: %v", err)
	}
	if err := DecodeReader(bytes.NewReader([]byte(`{}{}`)), 100, &b); !errors.Is(err, ErrTrailing) {
		t.Errorf("reader trailing: %v", err)
	}
	if err := DecodeReader(failing{}, 100, &b); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("read error: %v", err)
	}
}

func TestDepth(t *testing.T) {
	var a any
	ok := strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth)
	if err := Decode([]byte(ok), &a); err != nil {
		t.Errorf("depth %d: %v", maxDepth, err)
	}
	if err := json.Unmarshal([]byte(ok), &a); err != nil {
		t.Errorf("json.Unmarshal, depth %d: %v", maxDepth, err)
	}
	err := Decode([]byte("["+ok+"]"), &a)
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrSyntax) || e.Offset != maxDepth {
		t.Fatalf("depth %d: %v", maxDepth+1, err)
	}
	if want := "[0][0][0][0][0][0][0][0][...][0][0][0][0][0][0][0][0]"; e.Path != want {
		t.Errorf("path %q, want %q", e.Path, want)
	}
	long := strings.Repeat("x", 100)
	err = Decode([]byte(`{"extra":{"`+long+`":1,"`+long+`":2}}`), &a)
	if !errors.As(err, &e) || e.Path != `extra["`+long[:64]+`"...]` {
		t.Errorf("long name: %v", err)
	}
}
