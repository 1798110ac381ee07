package cel

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// expectFile reads a testdata .expect file: lines ALG:PCR=HEX.
func expectFile(t *testing.T, p string) map[string]string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		k, v, _ := strings.Cut(l, "=")
		out[k] = v
	}
	return out
}

// The log Debian trixie's systemd-pcrextend 257 wrote against swtpm replays,
// in both banks it holds, to the PCR 11 values tpm2_pcrread read after.
func TestSystemdRealLog(t *testing.T) {
	data := must(os.ReadFile("testdata/systemd-257-pcrextend.log"))
	want := expectFile(t, "testdata/systemd-257-pcrextend.expect")
	var texts []string
	res, err := ReplaySystemd(NewSystemdReader(bytes.NewReader(data), "real"), SystemdReplayOptions{File: "real",
		OnRecord: func(r *SystemdRecord) error {
			if !r.ContentMatches() {
				t.Errorf("record %d: digests are not the hash of %q", r.Index, *r.Content.String)
			}
			texts = append(texts, *r.Content.String+"/"+r.Content.EventType)
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(texts, " "); got != "enter-initrd/phase leave-initrd/phase sysinit/phase ready/phase" {
		t.Errorf("records %s", got)
	}
	if res.Events != 4 || len(res.Registers) != 2 {
		t.Fatalf("replay %+v", res)
	}
	for _, v := range res.Registers {
		k := fmt.Sprintf("%v:%s", v.Digest.Alg, strings.TrimPrefix(v.Register.Name, "pcr"))
		if hex.EncodeToString(v.Digest.Bytes) != want[k] {
			t.Errorf("%s = %x, tpm2_pcrread read %s", k, v.Digest.Bytes, want[k])
		}
	}
}

func sdRecord(pcr string, digests string, rest string) string {
	return "\x1e{" + pcr + `"digests":[` + digests + `],"content_type":"systemd","content":{"string":"x"` + rest + "}}\n"
}

func sdDigest(a string, n int) string {
	return fmt.Sprintf(`{"hashAlg":%q,"digest":%q}`, a, strings.Repeat("ab", n))
}

func TestSystemdReaderRefuses(t *testing.T) {
	s256 := sdDigest("sha256", 32)
	good := sdRecord(`"pcr":11,`, s256, "")
	for _, c := range []struct {
		name, in, want string
		rec            int
		off            int64
	}{
		{"cut mid-write", good + strings.TrimSuffix(good, "\n"), "not ended by LF", 1, int64(len(good))},
		{"cut mid-object", good[:40], "not ended by LF", 0, 0},
		{"no RS", strings.TrimPrefix(good, "\x1e"), "record separator", 0, 0},
		{"pcr and nv_index", sdRecord(`"pcr":11,"nv_index":25165824,`, s256, ""), "both a PCR and an NV index", 0, 0},
		{"no register", sdRecord(``, s256, ""), "neither a pcr nor an nv_index", 0, 0},
		{"pcr 24", good + sdRecord(`"pcr":24,`, s256, ""), "pcr 24 out of range", 1, int64(len(good))},
		{"negative pcr", sdRecord(`"pcr":-1,`, s256, ""), "pcr", 0, 0},
		{"duplicate pcr", sdRecord(`"pcr":11,"pcr":4,`, s256, ""), "duplicate", 0, 0},
		{"duplicate bank", sdRecord(`"pcr":11,`, s256+","+s256, ""), "a second sha256 digest", 0, 0},
		{"short digest", sdRecord(`"pcr":11,`, sdDigest("sha256", 20), ""), "digests[0]", 0, 0},
		{"unknown bank", sdRecord(`"pcr":11,`, sdDigest("md5", 16), ""), "digests[0]", 0, 0},
		{"no digests", sdRecord(`"pcr":11,`, "", ""), "without digests", 0, 0},
		{"unknown member", "\x1e" + `{"pcr":11,"recnum":3,"digests":[` + s256 + `],"content_type":"systemd","content":{}}` + "\n", "unknown", 0, 0},
		{"other content type", "\x1e" + `{"pcr":11,"digests":[` + s256 + `],"content_type":"aael","content":{}}` + "\n", `content_type "aael"`, 0, 0},
		{"no content type", "\x1e" + `{"pcr":11,"digests":[` + s256 + `],"content":{}}` + "\n", "content_type none", 0, 0},
		{"no content", "\x1e" + `{"pcr":11,"digests":[` + s256 + `],"content_type":"systemd"}` + "\n", "without content", 0, 0},
		{"content string not a string", sdRecord(`"pcr":11,`, s256, `,"eventType":5`), "content", 0, 0},
		{"trailing data", "\x1e" + `{"pcr":11,"digests":[` + s256 + `],"content_type":"systemd","content":{}} {}` + "\n", "after", 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReplaySystemd(NewSystemdReader(strings.NewReader(c.in), "f"), SystemdReplayOptions{File: "f"})
			var le *eventlog.Error
			if !errors.As(err, &le) || !errors.Is(err, mr.ErrMalformed) {
				t.Fatalf("err %v, want a malformed *eventlog.Error", err)
			}
			if !strings.Contains(err.Error(), c.want) || le.Record != c.rec || le.Offset != c.off || le.File != "f" {
				t.Errorf("err %v (record %d offset %d), want %q at record %d offset %d", err, le.Record, le.Offset, c.want, c.rec, c.off)
			}
		})
	}
}

// A record with a digest for one bank only cannot be replayed in the other:
// the error names that record and its offset.
func TestSystemdMissingBank(t *testing.T) {
	both := sdDigest("sha256", 32) + "," + sdDigest("sha1", 20)
	r0 := sdRecord(`"pcr":11,`, both, "")
	in := r0 + sdRecord(`"pcr":11,`, sdDigest("sha256", 32), "")
	_, err := ReplaySystemd(NewSystemdReader(strings.NewReader(in), "f"), SystemdReplayOptions{File: "f"})
	var le *eventlog.Error
	if !errors.As(err, &le) || le.Record != 1 || le.Offset != int64(len(r0)) || !strings.Contains(err.Error(), "no sha1 digest") {
		t.Fatalf("err %v", err)
	}
	// Asked for sha256 only, it replays.
	res, err := ReplaySystemd(NewSystemdReader(strings.NewReader(in), "f"), SystemdReplayOptions{File: "f", Banks: []mr.Alg{mr.SHA256}})
	if err != nil || len(res.Registers) != 1 {
		t.Fatalf("sha256 only: %v %+v", err, res)
	}
}

// NV index records are counted, never folded into a PCR; start values and
// reset values are where PCRs begin; order matters.
func TestSystemdReplayStartsAndNV(t *testing.T) {
	h := func(s string) string { d := sha256.Sum256([]byte(s)); return hex.EncodeToString(d[:]) }
	rec := func(reg, word string) string {
		return "\x1e{" + reg + `"digests":[{"hashAlg":"sha256","digest":"` + h(word) + `"}],"content_type":"systemd","content":{"string":"` + word + `","eventType":"phase"}}` + "\n"
	}
	in := rec(`"pcr":11,`, "a") + rec(`"nv_index":16777472,`, "nv") + rec(`"pcr":17,`, "b") + rec(`"pcr":11,`, "c")
	start := mr.Value{Register: mr.Register{Name: "pcr11"}, Digest: mr.Digest{Alg: mr.SHA256, Bytes: bytes.Repeat([]byte{7}, 32)}}
	var regs []string
	res, err := ReplaySystemd(NewSystemdReader(strings.NewReader(in), "f"), SystemdReplayOptions{Start: []mr.Value{start},
		OnRecord: func(r *SystemdRecord) error { regs = append(regs, r.Register()); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(regs, " ") != "pcr11 nv:0x01000100 pcr17 pcr11" || res.NV != 1 || res.Events != 4 || res.Counts["pcr11"] != 2 {
		t.Errorf("records %v, replay %+v", regs, res)
	}
	ext := func(v mr.Digest, word string) mr.Digest {
		d := sha256.Sum256([]byte(word))
		n, _ := mr.Extend(v, d[:])
		return n
	}
	want11 := ext(ext(start.Digest, "a"), "c")
	want17 := ext(mr.TPMResetValue(17, mr.SHA256), "b")
	if len(res.Registers) != 2 || res.Registers[0].Register.Name != "pcr11" || !res.Registers[0].Digest.Equal(want11) ||
		res.Registers[1].Register.Name != "pcr17" || !res.Registers[1].Digest.Equal(want17) {
		t.Errorf("registers %+v", res.Registers)
	}
	// The same records in another order give another value.
	sw := rec(`"pcr":11,`, "c") + rec(`"pcr":11,`, "a")
	res2, err := ReplaySystemd(NewSystemdReader(strings.NewReader(sw), "f"), SystemdReplayOptions{Start: []mr.Value{start}})
	if err != nil || res2.Registers[0].Digest.Equal(want11) {
		t.Errorf("reordered records replay to the same value: %v", err)
	}
}

// A sha1 word digest that is not the hash of the string is not bound.
func TestSystemdContentMatches(t *testing.T) {
	s := "machine-id:0123"
	d1, d256 := sha1.Sum([]byte(s)), sha256.Sum256([]byte(s))
	r := &SystemdRecord{Digests: []mr.Digest{{Alg: mr.SHA1, Bytes: d1[:]}, {Alg: mr.SHA256, Bytes: d256[:]}}, Content: SystemdContent{String: &s}}
	if !r.ContentMatches() {
		t.Error("matching record refused")
	}
	r.Digests[1].Bytes = bytes.Repeat([]byte{1}, 32)
	if r.ContentMatches() {
		t.Error("an HMAC-like digest taken as the hash of the string")
	}
	r.Content.String = nil
	if r.ContentMatches() {
		t.Error("a record without a string matched")
	}
}

// Content members are read by their exact names only.
func TestSystemdContentExactNames(t *testing.T) {
	in := sdRecord(`"pcr":11,`, sdDigest("sha256", 32), "")
	in = strings.Replace(in, `"string":"x"`, `"STRING":"x"`, 1)
	var got *SystemdRecord
	if _, err := ReplaySystemd(NewSystemdReader(strings.NewReader(in), "f"), SystemdReplayOptions{OnRecord: func(r *SystemdRecord) error { got = r; return nil }}); err != nil {
		t.Fatal(err)
	}
	if got.Content.String != nil {
		t.Errorf("\"STRING\" read as the string: %q", *got.Content.String)
	}
	for _, bad := range []string{`"content":[]`, `"content":null`, `"content":"x"`} {
		rec := strings.Replace(in, `"content":{"STRING":"x"}`, bad, 1)
		if _, err := NewSystemdReader(strings.NewReader(rec), "f").Next(); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
