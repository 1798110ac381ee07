package main

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The artifacts of a real `make e2e` run (testdata/e2e/README.md).
const art = "../../testdata/e2e"

func read(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(art, p))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// asciiEntries returns the kernel's own rendering of the list: template
// name, file digest "ALG:HEX" and path per line.
func asciiEntries(t *testing.T) [][3]string {
	var out [][3]string
	sc := bufio.NewScanner(bytes.NewReader(read(t, "guest/ascii_runtime_measurements")))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			t.Fatalf("ascii line %q", sc.Text())
		}
		out = append(out, [3]string{f[2], f[3], f[4]})
	}
	return out
}

func TestParseIMAMatchesKernelASCII(t *testing.T) {
	es, err := parseIMA(read(t, "guest/binary_runtime_measurements"))
	if err != nil {
		t.Fatal(err)
	}
	want := asciiEntries(t)
	if len(es) != len(want) || len(es) == 0 {
		t.Fatalf("%d binary entries, %d ascii lines", len(es), len(want))
	}
	for i, e := range es {
		got := [3]string{e.name, e.fileAlg + ":" + hex.EncodeToString(e.fileHash), e.path}
		if got != want[i] {
			t.Errorf("entry %d: binary %v, kernel ascii %v", i, got, want[i])
		}
	}
}

func forwarded(t *testing.T) int {
	var n int
	for _, f := range []string{"guest/forward.txt", "guest/forward2.txt"} {
		var k int
		var reg string
		if _, err := fmt.Sscanf(string(read(t, f)), "forwarded %d entries to %s", &k, &reg); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		n += k
	}
	return n
}

// The fold computed here must equal what ccmr's vmr computed in the guest
// and what the bundle claims: two implementations of the rule of
// docs/design.md ("The CC runtime log", virtual registers).
func TestMrIMAMatchesGuest(t *testing.T) {
	n := forwarded(t)
	v, err := mrIMA(read(t, "guest/binary_runtime_measurements"), n)
	if err != nil {
		t.Fatal(err)
	}
	got := "sha384:" + hex.EncodeToString(v)
	guest := strings.Fields(string(read(t, "guest/read-mr_ima.txt")))
	if len(guest) != 2 || guest[0] != "mr_ima" || guest[1] != got {
		t.Errorf("guest's ccmr read mr_ima %q, computed here %s", guest, got)
	}
	var b struct {
		Registers []struct{ Name, Digest string }
	}
	if err := json.Unmarshal(read(t, "guest/bundle.json"), &b); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range b.Registers {
		if r.Name == "mr_ima" {
			found = true
			if r.Digest != got {
				t.Errorf("bundle claims mr_ima %s, computed here %s", r.Digest, got)
			}
		}
	}
	if !found {
		t.Error("bundle claims no mr_ima")
	}
	if _, err := mrIMA(read(t, "guest/binary_runtime_measurements"), 1000); err == nil {
		t.Error("mrIMA over more entries than the list has: no error")
	}
}

func TestPolicyFromArtifacts(t *testing.T) {
	out := filepath.Join(t.TempDir(), "policy.json")
	err := policyCmd([]string{"-bundle", filepath.Join(art, "guest/bundle.json"),
		"-manifest", filepath.Join(art, "host/initramfs.sha256"), "-sysfs-pcrs", filepath.Join(art, "guest/pcrs.txt"),
		"-forwarded", "8", "-o", out})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// The committed policy was made by the same command in the run.
	if !bytes.Equal(got, read(t, "host/policy.json")) {
		t.Error("policy differs from the committed host/policy.json")
	}
	var p struct {
		Registers map[string]string
		IMA       struct {
			Keylime struct{ Digests map[string][]string }
		}
	}
	if err := json.Unmarshal(got, &p); err != nil {
		t.Fatal(err)
	}
	// boot_aggregate computed from the quoted PCRs must be what the kernel
	// measured (its own ima_calc_boot_aggregate).
	for _, e := range asciiEntries(t) {
		if e[2] == "boot_aggregate" {
			if w := "sha256:" + p.IMA.Keylime.Digests["boot_aggregate"][0]; w != e[1] {
				t.Errorf("boot_aggregate: computed %s, kernel %s", w, e[1])
			}
			continue
		}
		// Every other entry is a file of the initramfs, hashed on the host.
		ds := p.IMA.Keylime.Digests[e[2]]
		if len(ds) != 1 || "sha256:"+ds[0] != e[1] {
			t.Errorf("%s: policy %v, kernel measured %s", e[2], ds, e[1])
		}
	}
	// PCR 10 as the guest's sysfs gave it just before the quote.
	want := ""
	for _, line := range strings.Split(string(read(t, "guest/pcrs.txt")), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "sha256" && f[1] == "10" {
			want = "sha256:" + strings.ToLower(f[2])
		}
	}
	if want == "" || p.Registers["pcr10"] != want {
		t.Errorf("policy pcr10 %s, guest's sysfs before the quote %s", p.Registers["pcr10"], want)
	}
}

func TestFlipIMA(t *testing.T) {
	for _, rehash := range []bool{false, true} {
		orig := read(t, "guest/binary_runtime_measurements")
		l := bytes.Clone(orig)
		if err := flipIMA(l, 4, rehash); err != nil {
			t.Fatal(err)
		}
		a, _ := parseIMA(orig)
		b, err := parseIMA(l)
		if err != nil {
			t.Fatalf("tampered list does not parse: %v", err)
		}
		for i := range a {
			same := bytes.Equal(a[i].fileHash, b[i].fileHash)
			if same != (i != 4) {
				t.Errorf("rehash %v: entry %d file digest changed = %v", rehash, i, !same)
			}
		}
		td := l[b[4].offset+4 : b[4].offset+24]
		sum := sha1.Sum(b[4].data)
		if bytes.Equal(td, sum[:]) != rehash {
			t.Errorf("rehash %v: template digest matches data = %v", rehash, !rehash)
		}
		if err := flipIMA(l, len(a), false); err == nil {
			t.Error("no error for an entry past the end")
		}
	}
}

func TestFlipRuntime(t *testing.T) {
	for _, rehash := range []bool{false, true} {
		orig := read(t, "guest/runtime-pcr14.log")
		l := bytes.Clone(orig)
		if err := flipRuntime(l, 4, rehash); err != nil {
			t.Fatal(err)
		}
		diff := 0
		for i := range l {
			if l[i] != orig[i] {
				diff++
			}
		}
		// One content byte, plus the sha256 digest when rehashed.
		if (!rehash && diff != 1) || (rehash && (diff < 2 || diff > 33)) {
			t.Errorf("rehash %v: %d bytes differ", rehash, diff)
		}
		// Record 4's digest vs H(event), by walking the log.
		p := 0
		for rec := 0; ; rec++ {
			count := int(binary.LittleEndian.Uint32(l[p+8:]))
			if count != 1 || binary.LittleEndian.Uint16(l[p+12:]) != 0x000b {
				t.Fatalf("record %d: want one sha256 digest", rec)
			}
			dg := l[p+14 : p+46]
			es := int(binary.LittleEndian.Uint32(l[p+46:]))
			ev := l[p+50 : p+50+es]
			if rec == 4 {
				h := sha256.Sum256(ev)
				if bytes.Equal(dg, h[:]) != rehash {
					t.Errorf("rehash %v: digest is H(event) = %v", rehash, !rehash)
				}
				break
			}
			p += 50 + es
		}
		if err := flipRuntime(l, 1000, false); err == nil {
			t.Error("no error for a record past the end")
		}
	}
}

func TestExpect(t *testing.T) {
	cases := []struct {
		report string
		layer  string
		record string
	}{
		{"tamper-ima-entry", "3", "4"},
		{"tamper-ima-entry-rehashed", "3", "4"},
		{"tamper-runtime-record", "1", "4"},
		{"tamper-runtime-record-rehashed", "1", "-1"},
		{"tamper-nonce", "0", "-1"},
		{"policy-wrong-ccmr-digest", "4", "7"},
	}
	for _, c := range cases {
		p := filepath.Join(art, "host/tampered", c.report+".report.json")
		if err := expect("expect-fail", []string{p, c.layer, c.record}); err != nil {
			t.Errorf("%s: %v", c.report, err)
		}
		// The same report must not pass as a failure of another layer, nor
		// as a pass.
		if err := expect("expect-fail", []string{p, "2"}); err == nil {
			t.Errorf("%s: accepted as a layer 2 failure", c.report)
		}
		if err := expect("expect-pass", []string{p}); err == nil {
			t.Errorf("%s: accepted as a pass", c.report)
		}
	}
	good := filepath.Join(art, "host/verify.json")
	if err := expect("expect-pass", []string{good}); err != nil {
		t.Error(err)
	}
	if err := expect("expect-fail", []string{good, "3"}); err == nil {
		t.Error("a trusted report accepted as a failure")
	}
}

func FuzzParseIMA(f *testing.F) {
	f.Add(read(f, "guest/binary_runtime_measurements"))
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := parseIMA(b)
		if err != nil {
			return
		}
		if len(es) > 0 {
			c := bytes.Clone(b)
			_ = flipIMA(c, len(es)-1, true)
			_, _ = mrIMA(b, len(es))
		}
	})
}

func FuzzFlipRuntime(f *testing.F) {
	f.Add(read(f, "guest/runtime-pcr14.log"), 4)
	f.Fuzz(func(t *testing.T, b []byte, idx int) {
		_ = flipRuntime(bytes.Clone(b), idx, true)
	})
}
