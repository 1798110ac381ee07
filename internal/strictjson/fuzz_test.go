package strictjson

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"
)

type fuzzInner struct {
	K string           `json:"k"`
	L []int            `json:"l"`
	P *fuzzInner       `json:"p"`
	R json.RawMessage  `json:"r"`
	M map[string]int64 `json:"m"`
}

type fuzzTarget struct {
	fuzzInner
	A string               `json:"a"`
	N int                  `json:"n,omitempty"`
	F float64              `json:"f"`
	U uint8                `json:"u,string"`
	B *bool                `json:"b"`
	S []fuzzInner          `json:"s"`
	O map[string]fuzzInner `json:"o"`
	I any                  `json:"i"`
	X [2]string            `json:"x"`
	Y []byte               `json:"y"`
	Z json.Number          `json:"z"`
}

// FuzzDecode: Decode never panics, and whatever it accepts json.Unmarshal
// accepts too and decodes to the same value.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"a":"x","n":1,"f":1.5e3,"u":"7","b":true,"s":[{"k":"é\u00e9","l":[1,2],"p":{"k":"q"}}],"o":{"z":{"m":{"a":1}}},"i":[null,{"c":"d"}],"x":["1","2"],"y":"AQI=","z":1e400,"r":{"a":[1]}}`,
		`{"k":"promoted","p":null,"r":[{"x":1},{"x":1,"X":2}]}`,
		`{"a":1,"A":2}`,
		`{"s":[{"k":"a","K":"b"}]}`,
		`{}{"a":1}`,
		`null`,
		`[]`,
		"{\"a\":\"\xff\"}",
		`{"a":"\ud800"}`,
		`{"a":"\ud83d\ude00"}`,
		`{"zz":1}`,
		`{"o":{"x":{"q":1}}}`,
		`{"i":{"a":1,"a":1}}`,
		`{"a":"x"} `,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		check(t, data, new(fuzzTarget), new(fuzzTarget))
		check(t, data, new(any), new(any))
		check(t, data, new(json.RawMessage), new(json.RawMessage))
	})
}

func check(t *testing.T, data []byte, got, want any) {
	err := Decode(data, got)
	if err != nil {
		if !errors.As(err, new(*Error)) {
			t.Fatalf("Decode(%q) = %v, not an *Error", data, err)
		}
		return
	}
	if !json.Valid(data) || !utf8.Valid(data) {
		t.Fatalf("Decode accepted %q, which is not valid JSON in UTF-8", data)
	}
	if err := json.Unmarshal(data, want); err != nil {
		t.Fatalf("Decode accepted %q, json.Unmarshal refused it: %v", data, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Decode(%q) = %#v, json.Unmarshal = %#v", data, got, want)
	}
}
