package verifier

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/eventlog/ima"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/vmr"
)

const realIMA = "../testdata/real-kernel-ima-sig/binary_runtime_measurements"

// fixture is a good sim bundle: a virtual extend of mr_ctr.demo, the real
// kernel IMA list forwarded into mr_ima, a quote, and the sim key.
type fixture struct {
	bundle []byte
	key    []byte
	other  []byte // another sim device's key
	nonce  []byte
}

func makeFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	dev, err := sim.Open(ctx, filepath.Join(dir, "sim"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := vmr.Open(ctx, dev, vmr.Options{Dir: filepath.Join(dir, "log")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Extend(ctx, "mr_ctr.demo", mr.SHA384.Sum([]byte("demo"))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Forward(ctx, vmr.ForwardOptions{List: realIMA}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Extend(ctx, "mr_ctr.demo", mr.SHA384.Sum([]byte("demo 2"))); err != nil {
		t.Fatal(err)
	}
	nonce := []byte("fixture nonce")
	var ev *mr.Evidence
	data, err := s.Snapshot(ctx, func() error {
		var err error
		ev, err = dev.Attest(ctx, nonce)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	imaData, err := os.ReadFile(realIMA)
	if err != nil {
		t.Fatal(err)
	}
	virt, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := bundle.New(ev, []bundle.Log{
		{Format: "runtime", Register: "rtmr3", Alg: "sha384", Data: data},
		{Format: "ima-binary", Data: imaData},
	}, virt)
	var buf bytes.Buffer
	if err := b.Write(&buf); err != nil {
		t.Fatal(err)
	}
	key, err := dev.PublicKeyPEM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dev2, err := sim.Open(ctx, filepath.Join(dir, "sim2"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := dev2.PublicKeyPEM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{bundle: buf.Bytes(), key: key, other: other, nonce: nonce}
}

func (f *fixture) decode(t testing.TB) *bundle.Bundle {
	b, err := bundle.Read(bytes.NewReader(f.bundle), "fixture")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fixture) opts() Options {
	return Options{Name: "fixture", AllowSim: true, SimKeys: [][]byte{f.key}, Nonce: f.nonce}
}

// entries splits a runtime log into its entries' bytes.
func entries(t testing.TB, data []byte) [][]byte {
	rd := aael.NewReader(bytes.NewReader(data), aael.Options{})
	var out [][]byte
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, data[e.Offset:e.Offset+e.Size])
	}
}

// imaEntries splits a binary IMA list into its entries' bytes.
func imaEntries(t testing.TB, data []byte) [][]byte {
	rd := ima.NewBinaryReader(bytes.NewReader(data), ima.Options{})
	var offs []int64
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		offs = append(offs, e.Offset)
	}
	offs = append(offs, int64(len(data)))
	var out [][]byte
	for i := 0; i+1 < len(offs); i++ {
		out = append(out, data[offs[i]:offs[i+1]])
	}
	return out
}

// entry builds a runtime log entry for rtmr3 with a correct digest.
func entry(t testing.TB, rec string) []byte {
	r, err := aael.ParseRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := aael.AppendEntry(nil, 4, mr.SHA384, r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func join(parts [][]byte) []byte { return bytes.Join(parts, nil) }

func logOf(b *bundle.Bundle, format string) *bundle.Log {
	for i := range b.Logs {
		if b.Logs[i].Format == format {
			return &b.Logs[i]
		}
	}
	return nil
}

func TestGoodBundle(t *testing.T) {
	f := makeFixture(t)
	rep, err := Verify(context.Background(), f.decode(t), f.opts())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Trusted {
		var buf bytes.Buffer
		rep.WriteText(&buf)
		t.Fatalf("good bundle not trusted:\n%s", buf.String())
	}
}

// The tamper table: each case turns the good bundle bad in one way; every
// one must be rejected at the right layer, and where a record can be named,
// the report names it.
func TestTamper(t *testing.T) {
	f := makeFixture(t)
	type tc struct {
		name   string
		mutate func(t testing.TB, b *bundle.Bundle, o *Options)
		layer  int
		record int    // expected Failure.Record; -2 means do not check
		reason string // substring of the failure reason
	}
	rtmr0, _ := mr.ParseDigest("sha384:" + strings.Repeat("11", 48))
	cases := []tc{
		{"statement byte", func(t testing.TB, b *bundle.Bundle, o *Options) { b.Evidence.Report[40] ^= 1 }, 0, -2, ""},
		{"signature byte", func(t testing.TB, b *bundle.Bundle, o *Options) { b.Evidence.Signature[10] ^= 1 }, 0, -2, ""},
		{"wrong nonce expected", func(t testing.TB, b *bundle.Bundle, o *Options) { o.Nonce = []byte("another nonce") }, 0, -2, "nonce"},
		{"bundle nonce replaced", func(t testing.TB, b *bundle.Bundle, o *Options) { b.Nonce = []byte("another nonce") }, 0, -2, ""},
		{"other pinned key", func(t testing.TB, b *bundle.Bundle, o *Options) { o.SimKeys = [][]byte{f.other} }, 0, -2, ""},
		{"sim not allowed", func(t testing.TB, b *bundle.Bundle, o *Options) { o.AllowSim = false }, 0, -2, "allow-sim"},
		// A sim statement labelled tpm: evidence members tpm does not use
		// make the bundle unusable input (layer -1: bundle.Read refuses it).
		{"platform changed", func(t testing.TB, b *bundle.Bundle, o *Options) { b.Platform = mr.PlatformTPM }, -1, -2, ""},
		{"claimed rtmr3 changed", func(t testing.TB, b *bundle.Bundle, o *Options) {
			for i := range b.Registers {
				if b.Registers[i].Name == "rtmr3" {
					b.Registers[i].Digest.Bytes[0] ^= 1
				}
			}
		}, 0, -2, "claimed"},
		{"runtime record text changed", func(t testing.TB, b *bundle.Bundle, o *Options) {
			l := logOf(b, "runtime")
			i := bytes.Index(l.Data, []byte("mr_ctr.demo"))
			l.Data[i+len("mr_ctr.")] = 'x'
		}, 1, 0, "H(event)"},
		{"runtime record replaced, digest fixed", func(t testing.TB, b *bundle.Bundle, o *Options) {
			l := logOf(b, "runtime")
			es := entries(t, l.Data)
			es[0] = entry(t, "mr_ctr.demo extend sha384/"+strings.Repeat("ab", 48))
			l.Data = join(es)
		}, 1, -1, "rtmr3"},
		{"runtime record dropped", func(t testing.TB, b *bundle.Bundle, o *Options) {
			l := logOf(b, "runtime")
			es := entries(t, l.Data)
			l.Data = join(append(es[:5:5], es[6:]...))
		}, 1, -1, ""},
		{"runtime records swapped", func(t testing.TB, b *bundle.Bundle, o *Options) {
			l := logOf(b, "runtime")
			es := entries(t, l.Data)
			es[3], es[4] = es[4], es[3]
			l.Data = join(es)
		}, 1, -1, ""},
		{"runtime record added", func(t testing.TB, b *bundle.Bundle, o *Options) {
			l := logOf(b, "runtime")
			l.Data = append(l.Data, entry(t, "mr_ctr.demo extend sha384/"+strings.Repeat("cd", 48))...)
		}, 1, -1, ""},
		{"virtual record moved to another register", func(t testing.TB, b *bundle.Bundle, o *Options) {
			l := logOf(b, "runtime")
			es := entries(t, l.Data)
			last := es[len(es)-1]
			rd := aael.NewReader(bytes.NewReader(last), aael.Options{})
			e, _ := rd.Next()
			_, d, _ := e.Record.Virtual()
			es[len(es)-1] = entry(t, "mr_ima extend "+d.LogString())
			l.Data = join(es)
		}, 1, -1, ""},
		{"runtime log truncated", func(t testing.TB, b *bundle.Bundle, o *Options) {
			l := logOf(b, "runtime")
			l.Data = l.Data[:len(l.Data)-7]
		}, 1, -2, "truncated"},
		{"runtime log on another register", func(t testing.TB, b *bundle.Bundle, o *Options) { logOf(b, "runtime").Register = "rtmr2" }, 1, -2, ""},
		{"runtime log given twice", func(t testing.TB, b *bundle.Bundle, o *Options) { b.Logs = append(b.Logs, *logOf(b, "runtime")) }, 1, 0, "segment 1 does not start"},
		{"claimed virtual value changed", func(t testing.TB, b *bundle.Bundle, o *Options) {
			for i := range b.Registers {
				if b.Registers[i].Name == "mr_ima" {
					b.Registers[i].Digest.Bytes[5] ^= 1
				}
			}
		}, 2, -2, "claimed virtual"},
		{"IMA entry changed", func(t testing.TB, b *bundle.Bundle, o *Options) {
			l := logOf(b, "ima-binary")
			es := imaEntries(t, l.Data)
			es[7] = bytes.Clone(es[7])
			// A byte of the file digest: after the entry header (pcr 4,
			// hash 20, name length 4, "ima-sig" 7, data length 4), the
			// d-ng field's length (4) and "sha256:\0" (8).
			es[7][4+20+4+7+4+4+8+3] ^= 1
			l.Data = join(es)
		}, 3, 7, "entry 7"},
		{"IMA entry dropped", func(t testing.TB, b *bundle.Bundle, o *Options) {
			l := logOf(b, "ima-binary")
			es := imaEntries(t, l.Data)
			l.Data = join(append(es[:9:9], es[10:]...))
		}, 3, 9, "entry 9"},
		{"IMA entries reordered", func(t testing.TB, b *bundle.Bundle, o *Options) {
			l := logOf(b, "ima-binary")
			es := imaEntries(t, l.Data)
			es[12], es[13] = es[13], es[12]
			l.Data = join(es)
		}, 3, 12, "entry 12"},
		{"IMA list truncated", func(t testing.TB, b *bundle.Bundle, o *Options) {
			l := logOf(b, "ima-binary")
			l.Data = l.Data[:len(l.Data)-10]
		}, 3, 31, ""},
		{"policy register mismatch", func(t testing.TB, b *bundle.Bundle, o *Options) {
			o.Policy = &Policy{Registers: map[string][]mr.Digest{"rtmr0": {rtmr0}}}
		}, 4, -2, "rtmr0"},
		{"policy virtual register mismatch", func(t testing.TB, b *bundle.Bundle, o *Options) {
			o.Policy = &Policy{Registers: map[string][]mr.Digest{"mr_ima": {rtmr0}}}
		}, 4, -2, "mr_ima"},
		{"policy nonce mismatch", func(t testing.TB, b *bundle.Bundle, o *Options) {
			o.Nonce = nil
			o.Policy = &Policy{Nonce: []byte("policy nonce")}
		}, 0, -2, "nonce"},
		{"file digest not a reference", func(t testing.TB, b *bundle.Bundle, o *Options) {
			rp := imaPolicy(t, b)
			rp.Digests["/bin/busybox"] = []string{strings.Repeat("00", 32)}
			o.Policy = &Policy{Runtime: reparse(t, rp)}
		}, 4, 1, "/bin/busybox"},
		{"file not in policy", func(t testing.TB, b *bundle.Bundle, o *Options) {
			rp := imaPolicy(t, b)
			delete(rp.Digests, "/tmp/m/f0")
			o.Policy = &Policy{Runtime: reparse(t, rp)}
		}, 4, 2, "not in the runtime policy"},
		{"exclusion does not cover the bad file", func(t testing.TB, b *bundle.Bundle, o *Options) {
			rp := imaPolicy(t, b)
			delete(rp.Digests, "/tmp/m/f0")
			rp.Excludes = []string{"^/usr/"}
			o.Policy = &Policy{Runtime: reparse(t, rp)}
		}, 4, 2, "/tmp/m/f0"},
	}
	if len(cases) < 20 {
		t.Fatalf("only %d tamper cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := f.decode(t)
			o := f.opts()
			c.mutate(t, b, &o)
			// Round trip through JSON, as a bundle on disk would be.
			var buf bytes.Buffer
			if err := b.Write(&buf); err != nil {
				t.Fatal(err)
			}
			b2, err := bundle.Read(&buf, "tampered")
			if c.layer < 0 {
				if err == nil {
					t.Fatal("tampered bundle read as usable input")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rep, err := Verify(context.Background(), b2, o)
			if err != nil {
				t.Fatal(err)
			}
			var text bytes.Buffer
			rep.WriteText(&text)
			if rep.Trusted {
				t.Fatalf("tampered bundle trusted:\n%s", text.String())
			}
			if got := rep.FailedLayer(); got != c.layer {
				t.Fatalf("failed at layer %d, want %d:\n%s", got, c.layer, text.String())
			}
			fl := rep.Layers[c.layer].Failure
			if c.record != -2 && fl.Record != c.record {
				t.Errorf("failure names record %d, want %d:\n%s", fl.Record, c.record, text.String())
			}
			if !strings.Contains(fl.Reason+" "+fl.Register, c.reason) {
				t.Errorf("reason %q does not mention %q", fl.Reason, c.reason)
			}
		})
	}
}

// imaPolicy makes a runtime policy allowing exactly the files of the
// bundle's IMA list (lowercase hex: Keylime's schema refuses uppercase).
func imaPolicy(t testing.TB, b *bundle.Bundle) *RuntimePolicy {
	rp := &RuntimePolicy{Digests: map[string][]string{}}
	rd := ima.NewBinaryReader(bytes.NewReader(logOf(b, "ima-binary").Data), ima.Options{})
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return rp
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, d, ok := e.FileDigest(); ok {
			rp.Digests[e.FileName()] = append(rp.Digests[e.FileName()], hex.EncodeToString(d))
		}
	}
}

func reparse(t testing.TB, rp *RuntimePolicy) *RuntimePolicy {
	b, err := json.Marshal(rp)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ParseRuntimePolicy(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A policy built from the list's own files passes, and so does one that
// lacks a file but excludes its path.
func TestPolicyPasses(t *testing.T) {
	f := makeFixture(t)
	b := f.decode(t)
	rp := imaPolicy(t, b)
	o := f.opts()
	o.Policy = &Policy{Runtime: reparse(t, rp)}
	if rep, err := Verify(context.Background(), b, o); err != nil || !rep.Trusted {
		t.Fatalf("policy of the list's own files: %+v %v", rep, err)
	}
	delete(rp.Digests, "/tmp/m/f0")
	rp.Excludes = []string{"^/tmp/"}
	o.Policy = &Policy{Runtime: reparse(t, rp)}
	if rep, err := Verify(context.Background(), b, o); err != nil || !rep.Trusted {
		t.Fatalf("excluded path: %+v %v", rep, err)
	}
}

func TestUnusableInput(t *testing.T) {
	for _, in := range []string{"", "{", `{"format":"other"}`, `{"format":"ccmr-evidence/v1","platform":"vax"}`} {
		if _, err := bundle.Read(strings.NewReader(in), "x"); !errors.Is(err, mr.ErrMalformed) {
			t.Errorf("%q: %v", in, err)
		}
	}
}

var _ = eventlog.ErrMismatch

// A policy naming the IMA aggregate: the right value passes, another fails
// at layer 4.
func TestPolicyAggregate(t *testing.T) {
	f := makeFixture(t)
	b := f.decode(t)
	agg, _, err := ima.Aggregate(context.Background(), ima.NewBinaryReader(bytes.NewReader(logOf(b, "ima-binary").Data), ima.Options{}), -1)
	if err != nil {
		t.Fatal(err)
	}
	o := f.opts()
	o.Policy, err = ParsePolicy([]byte(`{"ima": {"aggregate": "`+agg.String()+`"}}`), ".")
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := Verify(context.Background(), b, o); err != nil || !rep.Trusted {
		t.Fatalf("right aggregate: %+v %v", rep, err)
	}
	agg.Bytes[0] ^= 1
	o.Policy.Aggregate = agg
	if rep, _ := Verify(context.Background(), b, o); rep.Trusted || rep.FailedLayer() != 4 {
		t.Fatalf("wrong aggregate trusted or failed elsewhere: %+v", rep)
	}
}
