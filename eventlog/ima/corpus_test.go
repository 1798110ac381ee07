package ima

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/internal/corpus"
	"github.com/ccmr-dev/ccmr/mr"
)

// expectedList is an IMA list's entry in a corpus EXPECTED.json.
type expectedList struct {
	Entries      *int              `json:"entries"`
	Templates    map[string]int    `json:"templates"`
	FileHashAlgs map[string]int    `json:"file_hash_algs"`
	Violations   int               `json:"violations(all-zero template hash)"`
	Mismatches   []int             `json:"template_hash_mismatches(entry indexes)"`
	Replayed     map[string]string `json:"replayed_pcrs"`
}

// corpusLists returns every IMA list of the corpus's EXPECTED.json files,
// keyed by path relative to the corpus.
func corpusLists(t *testing.T) (string, map[string]expectedList) {
	root := corpus.Require(t)
	out := map[string]expectedList{}
	files, err := filepath.Glob(filepath.Join(root, "*", "EXPECTED.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for k, raw := range m {
			var x expectedList
			if json.Unmarshal(raw, &x) != nil || x.Entries == nil || x.Replayed == nil {
				continue
			}
			out[filepath.Join(filepath.Base(filepath.Dir(f)), k)] = x
		}
	}
	if len(out) == 0 {
		t.Fatal("no IMA list found in the corpus's EXPECTED.json files")
	}
	return root, out
}

// TestCorpus replays every IMA list of the public corpus and compares the
// entry counts, templates, digest algorithms, violations, template-hash
// mismatches and PCR 10 values with EXPECTED.json. The PCR values there are
// "replayed" (an independent replay written for the corpus; evmctl agreed on
// embrave); the tpm2-tss template hashes equal tpm2-tss's own table.
func TestCorpus(t *testing.T) {
	root, lists := corpusLists(t)
	names := make([]string, 0, len(lists))
	for n := range lists {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		want := lists[name]
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(root, name)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			entries, err := readAll(t, openList(t, path, eventlog.FormatAuto))
			var le *eventlog.Error
			switch {
			case err == nil:
			case strings.HasPrefix(filepath.Base(name), "sml-") && errors.As(err, &le) && errors.Is(err, ErrTruncated):
				// tpm2-tss ships its lists cut inside an entry: the
				// error names the offset of the partial entry, and the
				// complete entries before it are what EXPECTED.json
				// describes.
				var end int64
				for _, e := range entries {
					end += binarySize(e)
				}
				if le.Offset != end || le.Record != len(entries) || le.File != path {
					t.Fatalf("truncation error %v: want record %d at byte %d of %s", err, len(entries), end, path)
				}
				if end >= int64(len(data)) {
					t.Fatalf("truncated at %d but the file has %d bytes", end, len(data))
				}
				t.Logf("cut at byte %d of %d: %v", end, len(data), err)
				data = data[:end]
			default:
				t.Fatal(err)
			}
			if len(entries) != *want.Entries {
				t.Errorf("%d entries, EXPECTED.json says %d", len(entries), *want.Entries)
			}
			tmpl, algs, viol := map[string]int{}, map[string]int{}, 0
			var mism []int
			for _, e := range entries {
				tmpl[e.TemplateName]++
				a, _, ok := e.FileDigest()
				if e.TemplateName == TemplateIMA {
					a += "(ima)"
				}
				if ok {
					algs[a]++
				}
				if e.IsViolation() {
					viol++
				}
				if err := CheckTemplateHash(path, e); err != nil {
					mism = append(mism, e.Index)
				}
			}
			if len(want.Templates) > 0 || len(entries) == 0 {
				eqMap(t, "templates", tmpl, want.Templates)
				eqMap(t, "file digest algorithms", algs, want.FileHashAlgs)
			}
			if viol != want.Violations {
				t.Errorf("%d violations, want %d", viol, want.Violations)
			}
			if !equalInts(mism, want.Mismatches) {
				t.Errorf("template hash mismatches at %v, want %v", mism, want.Mismatches)
			}

			var expect []mr.Value
			for k, v := range want.Replayed {
				bank, idx, _ := strings.Cut(k, ":")
				a, err := mr.ParseAlg(bank)
				if err != nil {
					t.Fatal(err)
				}
				p, _ := strconv.Atoi(idx)
				d, err := mr.ParseHex(a, v)
				if err != nil {
					t.Fatal(err)
				}
				expect = append(expect, mr.Value{Register: pcrRegister(p, a), Digest: d})
			}
			sort.Slice(expect, func(i, j int) bool { return expect[i].Register.Alg < expect[j].Register.Alg })
			if len(data) == 0 {
				// sml-ima-ng-sha1-invalidated: its only entry is cut
				// inside its template data, so nothing is left to replay.
				if len(expect) != 0 {
					t.Fatal("no complete entry but EXPECTED.json lists values")
				}
				return
			}
			// Replay the (cut) bytes through the same path as the CLI.
			tmp := filepath.Join(t.TempDir(), filepath.Base(name))
			if err := os.WriteFile(tmp, data, 0o600); err != nil {
				t.Fatal(err)
			}
			r := openList(t, tmp, eventlog.FormatAuto)
			res, err := Replay(context.Background(), r, ReplayOptions{File: tmp, Expect: expect})
			if len(want.Mismatches) > 0 {
				var m *eventlog.Mismatch
				if !errors.As(err, &m) || m.Record != want.Mismatches[0] {
					t.Fatalf("want a mismatch naming entry %d, got %v", want.Mismatches[0], err)
				}
				// The registers still come back: compare them too. The
				// sha1 bank differs on purpose: ccmr extends the listed
				// template hash (what the kernel extended, so the chain
				// of listed hashes still matches a real PCR and only the
				// entry check fails, as issue 11 asks), while the
				// corpus's replay, like evmctl, extended sha1(template
				// data) for the bad entry. Check that this is the whole
				// difference by recomputing that chain here.
				for _, w := range expect {
					got := find(res, w.Register)
					if w.Register.Alg == mr.SHA1 {
						got = sha1DataChain(entries)
					}
					if !got.Equal(w.Digest) {
						t.Errorf("%s %v = %v, want %v", w.Register.Name, w.Register.Alg, got, w.Digest)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}

		})
	}
}

func find(r *eventlog.Replay, reg mr.Register) mr.Digest {
	for _, v := range r.Registers {
		if v.Register.Name == reg.Name && v.Register.Alg == reg.Alg {
			return v.Digest
		}
	}
	return mr.Digest{}
}

func eqMap(t *testing.T, what string, got, want map[string]int) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s %v, want %v", what, got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s %v, want %v", what, got, want)
			return
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// sha1DataChain is PCR 10's sha1 bank when every entry extends
// sha1(template data) (all-ones for violations).
func sha1DataChain(entries []*Entry) mr.Digest {
	v := mr.Zero(mr.SHA1)
	for _, e := range entries {
		d := mr.SHA1.Sum(e.TemplateData)
		if e.IsViolation() {
			d.Bytes = bytes.Repeat([]byte{0xff}, 20)
		}
		v, _ = mr.Extend(v, d.Bytes)
	}
	return v
}

// binarySize is an entry's size in a binary list.
func binarySize(e *Entry) int64 {
	n := 4 + 20 + 4 + len(e.TemplateName)
	if e.TemplateName == TemplateIMA {
		return int64(n + 20 + 4 + len(e.FileName()))
	}
	return int64(n + 4 + len(e.TemplateData))
}
