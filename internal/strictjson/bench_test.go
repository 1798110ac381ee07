package strictjson

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

type benchLog struct {
	Kind string            `json:"kind"`
	Data []byte            `json:"data"`
	Meta map[string]string `json:"meta"`
}

type benchBundle struct {
	Format   string `json:"format"`
	Evidence struct {
		Report []byte `json:"report"`
		Key    string `json:"key"`
	} `json:"evidence"`
	Registers []entry    `json:"registers"`
	Logs      []benchLog `json:"logs"`
}

// bundleShaped is a ~20 MB bundle-shaped document: mostly a few long
// base64 strings, with some nested members around them.
func bundleShaped(tb testing.TB) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	blob := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	var b benchBundle
	b.Format = "ccmr-evidence/v1"
	b.Evidence.Report = blob(4 << 10)
	b.Evidence.Key = "-----BEGIN PUBLIC KEY-----"
	for i := range 24 {
		b.Registers = append(b.Registers, entry{Register: fmt.Sprintf("pcr%d", i), Digest: fmt.Sprintf("%096x", i)})
	}
	for i, n := range []int{9 << 20, 6 << 20} {
		b.Logs = append(b.Logs, benchLog{Kind: fmt.Sprint("log", i), Data: blob(n), Meta: map[string]string{"a": "1", "b": "2", "A": "3"}})
	}
	data, err := json.MarshalIndent(b, "", " ")
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// BenchmarkDecodeBundleShaped: Decode against json.Unmarshal alone, in MB/s.
func BenchmarkDecodeBundleShaped(b *testing.B) {
	data := bundleShaped(b)
	b.Run("Decode", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			var v benchBundle
			if err := Decode(data, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Unmarshal", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			var v benchBundle
			if err := json.Unmarshal(data, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("scan", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := scan(data, typeOfBenchBundle); err != nil {
				b.Fatal(err)
			}
		}
	})
}

var typeOfBenchBundle = reflect.TypeFor[benchBundle]()
