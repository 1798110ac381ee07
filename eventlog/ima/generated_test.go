package ima

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/internal/imatest"
	"github.com/ccmr-dev/ccmr/mr"
)

var orders = []struct {
	name  string
	order binary.ByteOrder
}{{"le", binary.LittleEndian}, {"be", binary.BigEndian}}

func mixedSpecs(n int) []imatest.Spec {
	s := make([]imatest.Spec, n)
	for i := range s {
		s[i] = imatest.Mixed(i)
	}
	return s
}

func expectFrom(pcrs map[string]map[int][]byte) []mr.Value {
	var out []mr.Value
	for _, b := range []mr.Alg{mr.SHA1, mr.SHA256} {
		out = append(out, mr.Value{Register: pcrRegister(10, b), Digest: mr.Digest{Alg: b, Bytes: pcrs[b.String()][10]}})
	}
	return out
}

func replayBytes(list []byte, expect []mr.Value) (*eventlog.Replay, error) {
	return Replay(context.Background(), NewBinaryReader(bytes.NewReader(list), Options{File: "gen"}), ReplayOptions{File: "gen", Expect: expect})
}

// evmctl runs evmctl ima_measurement --ignore-violations on list against pcrs; it returns
// whether evmctl reports a match (rc 0) and its output.
func evmctl(t *testing.T, list []byte, pcrs map[string]map[int][]byte) (bool, string) {
	t.Helper()
	path, err := exec.LookPath("evmctl")
	if err != nil {
		if os.Getenv("CCMR_REQUIRE_TOOLS") == "1" {
			t.Fatal("evmctl not found and CCMR_REQUIRE_TOOLS=1")
		}
		t.Skip("evmctl (ima-evm-utils) not found")
	}
	dir := t.TempDir()
	lp := filepath.Join(dir, "list")
	// --ignore-violations: extend violations with all-ones, as the kernel
	// does; without it evmctl extends zeros, so that any list with a
	// violation fails to match (its way of flagging violations).
	args := []string{"ima_measurement", "--ignore-violations"}
	for _, b := range []mr.Alg{mr.SHA1, mr.SHA256} {
		f := filepath.Join(dir, "pcrs-"+b.String())
		if err := os.WriteFile(f, []byte(imatest.PCRFile(pcrs[b.String()], b.Size())), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--pcrs", b.String()+","+f)
	}
	if err := os.WriteFile(lp, list, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(path, append(args, lp)...).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return err == nil, string(out)
}

// entryOffsets returns the byte offset of each entry of a generated list.
func entryOffsets(specs []imatest.Spec, order binary.ByteOrder) []int {
	var offs []int
	n := 0
	for _, s := range specs {
		offs = append(offs, n)
		n += len(s.AppendBinary(nil, order))
	}
	return append(offs, n)
}

type tamper struct {
	name  string
	entry int // entry the replay must name, -1 when only the final value differs
	mod   func(list []byte, offs []int) []byte
}

// tampers returns the tampered variants of a list of n entries; k1 and k2
// are entries that are not violations (whose data the PCR covers).
func tampers(k1, k2 int) []tamper {
	return []tamper{
		{"file-name-byte", k1, func(l []byte, offs []int) []byte {
			l = bytes.Clone(l)
			l[offs[k1+1]-3] ^= 1 // inside the entry's last field (or legacy name)
			return l
		}},
		{"listed-hash-byte", k2, func(l []byte, offs []int) []byte {
			l = bytes.Clone(l)
			l[offs[k2]+4] ^= 0x80
			return l
		}},
		{"entry-dropped", -1, func(l []byte, offs []int) []byte {
			return append(bytes.Clone(l[:offs[k1]]), l[offs[k1+1]:]...)
		}},
		{"entries-swapped", -1, func(l []byte, offs []int) []byte {
			out := bytes.Clone(l[:offs[k1]])
			out = append(out, l[offs[k1+1]:offs[k1+2]]...)
			out = append(out, l[offs[k1]:offs[k1+1]]...)
			return append(out, l[offs[k1+2]:]...)
		}},
	}
}

// groups splits the generated entries into the lists evmctl accepts: it
// refuses lists that mix the legacy ima template with the others.
func groups(n int) map[string][]imatest.Spec {
	g := map[string][]imatest.Spec{}
	for _, s := range mixedSpecs(n) {
		k := "ng"
		if s.Template == "ima" {
			k = "legacy"
		}
		g[k] = append(g[k], s)
	}
	return g
}

// TestGeneratedAgreeWithEvmctl replays generated lists (every template,
// violations, both byte orders) and their tampered variants, and requires
// ccmr and evmctl to agree on match and mismatch.
func TestGeneratedAgreeWithEvmctl(t *testing.T) {
	for _, o := range orders {
		for gname, specs := range groups(120) {
			t.Run(o.name+"/"+gname, func(t *testing.T) {
				list := imatest.Binary(specs, o.order)
				pcrs := imatest.PCRs(specs, o.order, "sha1", "sha256")
				offs := entryOffsets(specs, o.order)
				evm := o.order == binary.LittleEndian // see below

				res, err := replayBytes(list, expectFrom(pcrs))
				if err != nil {
					t.Fatalf("good list: %v", err)
				}
				if res.Events != len(specs) {
					t.Fatalf("replayed %d entries, generated %d", res.Events, len(specs))
				}
				evmOK, out := evmctl(t, list, pcrs)
				switch {
				case !evm && !evmOK:
					// evmctl reads lists in the host's byte order only.
					t.Logf("evmctl on a big-endian list: %s", firstLine(out))
				case !evmOK:
					t.Fatalf("evmctl disagrees on the good list: %s", out)
				}

				k1 := -1
				for i := len(specs) / 3; i < len(specs)-3; i++ {
					if !specs[i].Violation && !specs[i+1].Violation && !specs[i+2].Violation &&
						!bytes.Equal(specs[i].AppendBinary(nil, o.order), specs[i+1].AppendBinary(nil, o.order)) {
						k1 = i
						break
					}
				}
				if k1 < 0 {
					t.Fatal("no entry to tamper with")
				}
				for _, tc := range tampers(k1, k1+1) {
					bad := tc.mod(list, offs)
					_, err := replayBytes(bad, expectFrom(pcrs))
					var m *eventlog.Mismatch
					if !errors.As(err, &m) {
						t.Fatalf("%s: want a mismatch, got %v", tc.name, err)
					}
					if m.Record != tc.entry {
						t.Errorf("%s: mismatch names record %d, want %d (%v)", tc.name, m.Record, tc.entry, m)
					}
					if !evm {
						continue
					}
					if ok, out := evmctl(t, bad, pcrs); ok {
						t.Errorf("%s: evmctl reports a match where ccmr reports %v: %s", tc.name, err, out)
					}
				}
				// A wrong expected value.
				wrong := imatest.PCRs(specs, o.order, "sha1", "sha256")
				wrong["sha256"][10][0] ^= 1
				_, err = replayBytes(list, expectFrom(wrong))
				var m *eventlog.Mismatch
				if !errors.As(err, &m) || m.Record != -1 || !strings.Contains(m.Register, "sha256") {
					t.Fatalf("wrong sha256 PCR 10: want a final-value mismatch, got %v", err)
				}
				if evm {
					if ok, out := evmctl(t, list, wrong); ok {
						t.Errorf("evmctl matches a wrong PCR 10: %s", out)
					}
				}
			})
		}
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// TestGeneratedASCIIMatchesBinary reads the same generated list in both
// encodings and requires identical entries.
func TestGeneratedASCIIMatchesBinary(t *testing.T) {
	specs := mixedSpecs(60)
	b, err := readAll(t, NewBinaryReader(bytes.NewReader(imatest.Binary(specs, binary.LittleEndian)), Options{}))
	if err != nil {
		t.Fatal(err)
	}
	a, err := readAll(t, NewASCIIReader(strings.NewReader(imatest.ASCIIList(specs)), Options{}))
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(specs) || len(b) != len(specs) {
		t.Fatalf("ascii %d, binary %d, generated %d entries", len(a), len(b), len(specs))
	}
	for i := range specs {
		x, y := a[i], b[i]
		if x.PCR != y.PCR || !bytes.Equal(x.TemplateHash, y.TemplateHash) || x.TemplateName != y.TemplateName ||
			!bytes.Equal(x.TemplateData, y.TemplateData) {
			t.Fatalf("entry %d (%s) differs:\nascii  %+v\nbinary %+v", i, specs[i].Template, x, y)
		}
		if x.FileName() != specs[i].Name {
			t.Errorf("entry %d: name %q, want %q", i, x.FileName(), specs[i].Name)
		}
		alg, d, ok := y.FileDigest()
		want := specs[i].FileAlg
		if specs[i].Template == "ima" {
			want = "sha1"
		}
		if !ok || alg != want || len(d) != hashSize(want) {
			t.Errorf("entry %d: file digest %s:%x, want alg %s", i, alg, d, want)
		}
		if !bytes.Equal(y.Signature(), specs[i].Sig) || !bytes.Equal(y.Buf(), specs[i].Buf) || !bytes.Equal(y.Modsig(), specs[i].Modsig) {
			t.Errorf("entry %d: sig/buf/modsig differ", i)
		}
	}
}

func hashSize(alg string) int {
	a, err := mr.ParseAlg(alg)
	if err != nil {
		return -1
	}
	return a.Size()
}

// TestBigEndianDetected checks that a big-endian list is read as such and
// replays to the generator's values, and that forcing the wrong order fails.
func TestBigEndianDetected(t *testing.T) {
	specs := mixedSpecs(20)
	list := imatest.Binary(specs, binary.BigEndian)
	r := NewBinaryReader(bytes.NewReader(list), Options{})
	e, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if !e.BigEndian || e.PCR != 10 {
		t.Fatalf("first entry: BigEndian %v PCR %d", e.BigEndian, e.PCR)
	}
	_, err = Replay(context.Background(), NewBinaryReader(bytes.NewReader(list), Options{ByteOrder: binary.LittleEndian}), ReplayOptions{})
	if !errors.Is(err, mr.ErrMalformed) {
		t.Fatalf("big-endian list read as little-endian: want malformed, got %v", err)
	}
}
