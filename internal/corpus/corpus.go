// Package corpus finds the public evidence corpus (../shared/testdata/public,
// see its SOURCES.md) and lists the firmware event logs it holds (TCG2,
// SHA1-format and CCEL) together with every register value its EXPECTED.json
// files (and, for cross-checked values, the PCR dumps next to the logs)
// publish. Conformance tests and `make conformance` replay each log and
// compare. It only reads files; the corpus is never copied.
package corpus

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/mr"
)

// ErrNoCorpus means the corpus folder is absent.
var ErrNoCorpus = errors.New("public corpus not found")

// EnvDir names the environment variable that overrides the corpus folder.
const EnvDir = "CCMR_CORPUS"

// Marker is the file every copy of the corpus holds at its top; a folder
// without it (an empty temporary folder, a half-copied one) is not the
// corpus, so tests skip or fail instead of passing over nothing.
const Marker = "SOURCES.md"

// Dir returns the corpus folder: $CCMR_CORPUS when set, else
// ../shared/testdata/public next to the directory holding go.mod (searched
// upwards from the working directory). It wraps ErrNoCorpus when absent or
// when the folder has no Marker file.
func Dir() (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return "", fmt.Errorf("%w: $%s=%s is not a directory", ErrNoCorpus, EnvDir, d)
		}
		if _, err := os.Stat(filepath.Join(d, Marker)); err != nil {
			return "", fmt.Errorf("%w: $%s=%s holds no %s", ErrNoCorpus, EnvDir, d, Marker)
		}
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			c := filepath.Join(d, "..", "shared", "testdata", "public")
			if fi, err := os.Stat(c); err == nil && fi.IsDir() {
				if _, err := os.Stat(filepath.Join(c, Marker)); err != nil {
					return "", fmt.Errorf("%w: %s holds no %s (set $%s)", ErrNoCorpus, filepath.Clean(c), Marker, EnvDir)
				}
				return filepath.Clean(c), nil
			}
			return "", fmt.Errorf("%w: %s is absent (set $%s)", ErrNoCorpus, filepath.Clean(c), EnvDir)
		}
		p := filepath.Dir(d)
		if p == d {
			return "", fmt.Errorf("%w: no go.mod above %s (set $%s)", ErrNoCorpus, wd, EnvDir)
		}
		d = p
	}
}

// Where a value comes from (SOURCES.md, "How the expected values were
// established").
const (
	SourceMaintainer   = "maintainer"
	SourceCrossChecked = "cross-checked"
	SourceReplayed     = "replayed"
)

// Expectation is one published register value.
type Expectation struct {
	// Register is the ccmr register name: pcr7, rtmr1.
	Register string
	// Digest carries the bank and the value.
	Digest mr.Digest
	// Source is SourceMaintainer, SourceCrossChecked or SourceReplayed.
	Source string
	// From names the file and key the value was read from.
	From string
}

// Case is one firmware event log of the corpus.
type Case struct {
	// Name is the log's path relative to the corpus folder.
	Name string
	// Path is the log's full path.
	Path string
	// Format is eventlog.FormatTCG2 or eventlog.FormatCCEL.
	Format eventlog.Format
	// LogFormat is EXPECTED.json's "format" (crypto-agile, sha1-legacy, ...).
	LogFormat string
	// Banks is EXPECTED.json's "banks".
	Banks []string
	// Records is EXPECTED.json's events_incl_header_entry, or -1.
	Records int
	// TPM2EventlogAgrees is EXPECTED.json's tpm2_eventlog_5.4_agrees:
	// nil when tpm2_eventlog does not run on the eventlog.
	TPM2EventlogAgrees *bool
	// Expect lists every published value, maintainer values first.
	Expect []Expectation
}

// EventLogs walks every */EXPECTED.json under dir and returns the firmware
// event logs it describes, sorted by name, with their expected values.
func EventLogs(dir string) ([]Case, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*", "EXPECTED.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: no */EXPECTED.json under %s", ErrNoCorpus, dir)
	}
	var cases []Case
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var entries map[string]json.RawMessage
		if err := json.Unmarshal(b, &entries); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		folder := filepath.Base(filepath.Dir(f))
		for key, raw := range entries {
			var e map[string]json.RawMessage
			if json.Unmarshal(raw, &e) != nil {
				continue // notes and strings
			}
			var lf string
			if json.Unmarshal(e["format"], &lf) != nil || !isFirmwareLog(lf) {
				continue
			}
			c, err := makeCase(dir, folder, key, e, lf)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", f, key, err)
			}
			cases = append(cases, c)
		}
	}
	sort.Slice(cases, func(i, j int) bool { return cases[i].Name < cases[j].Name })
	return cases, nil
}

func isFirmwareLog(format string) bool {
	return format == "crypto-agile" || strings.HasPrefix(format, "sha1-legacy")
}

func makeCase(dir, folder, key string, e map[string]json.RawMessage, lf string) (Case, error) {
	name := folder + "/" + key
	c := Case{Name: name, Path: filepath.Join(dir, folder, filepath.FromSlash(key)), LogFormat: lf, Records: -1}
	if _, err := os.Stat(c.Path); err != nil {
		return c, err
	}
	// An entry that is present but does not parse is an error: ignoring it
	// would drop the check it feeds (bank list, record count).
	if r, ok := e["banks"]; ok {
		if err := json.Unmarshal(r, &c.Banks); err != nil {
			return c, fmt.Errorf("banks: %w", err)
		}
	}
	if r, ok := e["events_incl_header_entry"]; ok {
		if err := json.Unmarshal(r, &c.Records); err != nil {
			return c, fmt.Errorf("events_incl_header_entry: %w", err)
		}
	}
	if r, ok := e["tpm2_eventlog_5.4_agrees"]; ok {
		var v *bool
		if err := json.Unmarshal(r, &v); err != nil {
			return c, fmt.Errorf("tpm2_eventlog_5.4_agrees: %w", err)
		}
		c.TPM2EventlogAgrees = v
	}
	c.Format = eventlog.FormatTCG2
	if strings.Contains(strings.ToLower(key), "ccel") {
		c.Format = eventlog.FormatCCEL
	}
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	// Maintainer values first, then replayed.
	for _, pass := range []string{SourceMaintainer, SourceReplayed} {
		for _, k := range keys {
			src := ""
			switch {
			case strings.HasPrefix(k, "maintainer_pcrs"), strings.HasPrefix(k, "maintainer_rtmrs"):
				src = SourceMaintainer
			case k == "replayed_final":
				src = SourceReplayed
			}
			if src != pass {
				continue
			}
			var vals map[string]string
			if err := json.Unmarshal(e[k], &vals); err != nil {
				return c, fmt.Errorf("%s: %w", k, err)
			}
			vk := make([]string, 0, len(vals))
			for r := range vals {
				vk = append(vk, r)
			}
			sort.Strings(vk)
			for _, r := range vk {
				x, err := expectation(r, vals[r], c.Banks)
				if err != nil {
					return c, fmt.Errorf("%s[%s]: %w", k, r, err)
				}
				if strings.HasPrefix(x.Register, "rtmr") {
					c.Format = eventlog.FormatCCEL
				}
				x.Source = src
				x.From = folder + "/EXPECTED.json " + k
				c.Expect = append(c.Expect, x)
			}
		}
	}
	for _, x := range c.Expect {
		if x.Digest.Alg == 0 {
			return c, fmt.Errorf("value for %s has no algorithm", x.Register)
		}
	}
	xs, err := crossChecked(dir, folder, key)
	if err != nil {
		return c, err
	}
	c.Expect = append(c.Expect, xs...)
	return c, nil
}

// expectation parses "sha256:7" / "sha384:RTMR0" / "RTMR0" with hex v. A
// key without an algorithm (maintainer RTMRs) takes the log's only bank.
func expectation(k, v string, banks []string) (Expectation, error) {
	alg, reg, hasAlg := strings.Cut(k, ":")
	if !hasAlg {
		reg, alg = k, ""
	}
	name := ""
	if strings.HasPrefix(reg, "RTMR") {
		n, err := strconv.Atoi(reg[4:])
		if err != nil || n < 0 || n > 3 {
			return Expectation{}, fmt.Errorf("register %q", reg)
		}
		name = fmt.Sprintf("rtmr%d", n)
	} else {
		n, err := strconv.Atoi(reg)
		if err != nil || n < 0 || n > 23 {
			return Expectation{}, fmt.Errorf("register %q", reg)
		}
		name = fmt.Sprintf("pcr%d", n)
	}
	if alg == "" {
		if len(banks) != 1 {
			return Expectation{}, fmt.Errorf("no algorithm for %q and the log has %d banks", k, len(banks))
		}
		alg = banks[0]
	}
	a, err := mr.ParseAlg(alg)
	if err != nil {
		return Expectation{}, err
	}
	d, err := mr.ParseHex(a, v)
	if err != nil {
		return Expectation{}, err
	}
	return Expectation{Register: name, Digest: d}, nil
}

// crossChecked adds the values SOURCES.md calls cross-checked: PCR reads
// and quoted PCRs published next to a eventlog.
//   - go-tpm-tools/attestations/*/eventlog.bin: the quoted PCRs
//     (pcrs-BANK.txt, checked by tpm2_checkquote); SOURCES.md §2 says the
//     replay equals PCR 0-9 in all three banks.
//   - go-attestation/windows_gcp_shielded_vm/eventlog.bin: the quoted sha1
//     PCRs; SOURCES.md §3: equal for 0,4,5,7,11-14, and 1,2,3,6,8,9,10 are
//     zero and absent from the eventlog.
//   - ima-evm-utils/sample-binary_bios_measurements-pcrs-8-9: tsspcrread
//     sha1 PCR 0-9 (sample-tpm-2.0-pcrs-8-9, SOURCES.md §4).
func crossChecked(dir, folder, key string) ([]Expectation, error) {
	switch {
	case folder == "go-attestation" && key == "windows_gcp_shielded_vm/eventlog.bin":
		return readPCRFile(filepath.Join(dir, folder, "windows_gcp_shielded_vm", "pcrs-sha1.txt"),
			folder+"/windows_gcp_shielded_vm/pcrs-sha1.txt (quoted)", []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14})
	case folder == "ima-evm-utils" && key == "sample-binary_bios_measurements-pcrs-8-9":
		return readPCRFile(filepath.Join(dir, folder, "sample-tpm-2.0-pcrs-8-9"),
			folder+"/sample-tpm-2.0-pcrs-8-9 (tsspcrread)", []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	}
	return nil, nil
}

// AttestationLogs returns the go-tpm-tools attestation folders' event logs
// (which have no "format" entry of their own) as cases whose values are the
// quoted PCR 0-9 of every bank.
func AttestationLogs(dir string) ([]Case, error) {
	ms, err := filepath.Glob(filepath.Join(dir, "go-tpm-tools", "attestations", "*", "eventlog.bin"))
	if err != nil {
		return nil, err
	}
	var cases []Case
	for _, m := range ms {
		d := filepath.Dir(m)
		rel, _ := filepath.Rel(dir, m)
		c := Case{Name: filepath.ToSlash(rel), Path: m, Format: eventlog.FormatTCG2, Records: -1}
		pf, _ := filepath.Glob(filepath.Join(d, "pcrs-*.txt"))
		sort.Strings(pf)
		for _, p := range pf {
			r, _ := filepath.Rel(dir, p)
			xs, err := readPCRFile(p, filepath.ToSlash(r)+" (quoted)", []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
			if err != nil {
				return nil, err
			}
			c.Expect = append(c.Expect, xs...)
		}
		if len(c.Expect) == 0 {
			// A folder without its quoted PCRs would drop out of every
			// conformance test unnoticed.
			return nil, fmt.Errorf("%s: no pcrs-*.txt value next to it", m)
		}
		cases = append(cases, c)
	}
	if len(cases) == 0 {
		return nil, fmt.Errorf("%w: no go-tpm-tools/attestations/*/eventlog.bin under %s", ErrNoCorpus, dir)
	}
	return cases, nil
}

// readPCRFile reads "BANK INDEX HEX" lines or tsspcrread's "INDEX: HEX"
// lines (sha1) and keeps the listed indexes.
func readPCRFile(path, from string, keep []int) ([]Expectation, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	want := map[int]bool{}
	for _, k := range keep {
		want[k] = true
	}
	var out []Expectation
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		var bank, idx, hx string
		switch {
		case len(fs) == 3:
			bank, idx, hx = fs[0], fs[1], fs[2]
		case len(fs) == 2 && strings.HasSuffix(fs[0], ":"):
			bank, idx, hx = "sha1", strings.TrimSuffix(fs[0], ":"), fs[1]
		default:
			continue
		}
		n, err := strconv.Atoi(idx)
		if err != nil || !want[n] {
			continue
		}
		a, err := mr.ParseAlg(bank)
		if err != nil {
			continue
		}
		d, err := mr.ParseHex(a, strings.ToLower(hx))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, Expectation{Register: fmt.Sprintf("pcr%d", n), Digest: d, Source: SourceCrossChecked, From: from})
	}
	return out, sc.Err()
}

// Sums is the corpus's list of files with their SHA-256 ("HEX  ./PATH"
// lines, sha256sum's format); it names every file but itself and Marker.
const Sums = "SHA256SUMS"

// Manifest returns the paths Sums lists, relative to dir, slash-separated
// and sorted. A line that is not "HEX  PATH" is an error: a manifest that
// parsed to fewer names would let a test compare against too little.
func Manifest(dir string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, Sums))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoCorpus, err)
	}
	var out []string
	for i, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok || len(sum) != 64 || name == "" {
			return nil, fmt.Errorf("%s: line %d: not \"SHA256  PATH\": %q", filepath.Join(dir, Sums), i+1, line)
		}
		out = append(out, strings.TrimPrefix(strings.TrimPrefix(name, "*"), "./"))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s lists no file", ErrNoCorpus, filepath.Join(dir, Sums))
	}
	sort.Strings(out)
	return out, nil
}
