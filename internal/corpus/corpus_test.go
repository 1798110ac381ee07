package corpus

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// childEnv selects what TestChild does when this test binary runs itself.
const childEnv = "CCMR_CORPUS_TEST_CHILD"

// TestChild is the child process of the tests below: it calls a helper the
// way a corpus test does and reports what happened by its exit status and
// output. Run directly it does nothing.
func TestChild(t *testing.T) {
	switch os.Getenv(childEnv) {
	case "":
		return
	case "require":
		Require(t)
		t.Log("child: Require returned")
	case "path":
		Path(t, "dcap-qvl/tdx_quote")
		t.Log("child: Path returned")
	case "seeds":
		t.Logf("child: %d seeds", len(Seeds(t, "dcap-qvl/tdx_quote")))
	default:
		t.Fatalf("unknown child mode %q", os.Getenv(childEnv))
	}
}

// child runs TestChild in a new process with CCMR_CORPUS=dir and returns
// its exit status and output.
func child(t *testing.T, mode, dir string, require bool) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChild$", "-test.count=1", "-test.v")
	env := []string{childEnv + "=" + mode, EnvDir + "=" + dir}
	if require {
		env = append(env, EnvRequire+"=1")
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, EnvRequire+"=") && !strings.HasPrefix(kv, EnvDir+"=") && !strings.HasPrefix(kv, childEnv+"=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("child: %v", err)
		}
		code = ee.ExitCode()
	}
	return code, string(out)
}

func expectChild(t *testing.T, mode, dir string, require bool, wantCode int, want ...string) {
	t.Helper()
	code, out := child(t, mode, dir, require)
	if code != wantCode {
		t.Errorf("%s (require %v): exit %d, want %d\n%s", mode, require, code, wantCode, out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("%s (require %v): output lacks %q\n%s", mode, require, w, out)
		}
	}
}

// An empty folder is not the corpus: Require skips with one line naming it,
// and fails the test when CCMR_REQUIRE_CORPUS=1.
func TestRequireAbsentCorpus(t *testing.T) {
	empty := t.TempDir()
	expectChild(t, "require", empty, false, 0, "--- SKIP: TestChild", "holds no SOURCES.md", empty)
	expectChild(t, "require", empty, true, 1, "--- FAIL: TestChild", "CCMR_REQUIRE_CORPUS=1: required", empty)
	for _, mode := range []string{"require", "path"} {
		_, out := child(t, mode, empty, false)
		if strings.Contains(out, "returned") {
			t.Errorf("%s went on without the corpus:\n%s", mode, out)
		}
	}
	// A path that is not a folder at all.
	expectChild(t, "require", filepath.Join(empty, "nothing"), false, 0, "--- SKIP: TestChild", "is not a directory")
}

// A corpus that lacks one file: Path skips with a line naming the file, or
// fails when required.
func TestPathMissingFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, Marker), []byte("# partial\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	expectChild(t, "require", dir, false, 0, "--- PASS: TestChild", "child: Require returned")
	expectChild(t, "path", dir, false, 0, "--- SKIP: TestChild", "dcap-qvl/tdx_quote is missing from the corpus")
	expectChild(t, "path", dir, true, 1, "--- FAIL: TestChild", "dcap-qvl/tdx_quote is missing from the corpus", "required")
}

// Fuzz seeds: without the corpus the target still runs (one line, no
// seeds); with CCMR_REQUIRE_CORPUS=1 it fails.
func TestSeedsAbsentCorpus(t *testing.T) {
	empty := t.TempDir()
	expectChild(t, "seeds", empty, false, 0, "--- PASS: TestChild", "fuzzing without its 1 seed files", "child: 0 seeds")
	expectChild(t, "seeds", empty, true, 1, "--- FAIL: TestChild", "required")
}

// With the real corpus the helpers return what is there.
func TestRealCorpus(t *testing.T) {
	dir := Require(t)
	if b := Read(t, "dcap-qvl/tdx_quote"); len(b) == 0 {
		t.Fatal("dcap-qvl/tdx_quote is empty")
	}
	if s := Seeds(t, "dcap-qvl/tdx_quote", "go-sev-guest/attestation.bin"); len(s) != 2 || len(s[0]) == 0 || len(s[1]) == 0 {
		t.Fatalf("%d seeds", len(s))
	}
	if s := Seeds(t, "tpm2-tss/sml-*.bin"); len(s) < 2 {
		t.Fatalf("tpm2-tss/sml-*.bin: %d seeds", len(s))
	}
	names, err := Manifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 100 {
		t.Fatalf("%s lists %d files", Sums, len(names))
	}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(n))); err != nil {
			t.Errorf("%s lists %s: %v", Sums, n, err)
		}
	}
	logs, err := EventLogs(dir)
	if err != nil {
		t.Fatal(err)
	}
	att, err := AttestationLogs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) < 20 || len(att) == 0 {
		t.Fatalf("%d event logs, %d attestation logs", len(logs), len(att))
	}
	// EXPECTED.json publishes an empty replayed_final for exactly these two:
	// a malformed Spec ID event and a log holding only its header entry.
	noValues := map[string]bool{"tpm2-tools/specid-vendordata.bin": true, "go-attestation/short_no_action_eventlog": true}
	for _, c := range append(logs, att...) {
		if (len(c.Expect) == 0) != noValues[c.Name] {
			t.Errorf("%s: %d expected values", c.Name, len(c.Expect))
		}
		delete(noValues, c.Name)
	}
	if len(noValues) != 0 {
		t.Errorf("not among the event logs: %v", noValues)
	}
}

// Hostile manifests: a line that is not "SHA256  PATH" and an empty file are
// errors, not a shorter list.
func TestManifestMalformed(t *testing.T) {
	for name, body := range map[string]string{
		"no separator": strings.Repeat("a", 64) + " ./x\n",
		"short sum":    "abcd  ./x\n",
		"no name":      strings.Repeat("a", 64) + "  \n",
		"empty":        "",
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, Sums), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := Manifest(dir); err == nil {
			t.Errorf("%s: Manifest = %v, want an error", name, got)
		}
	}
	if _, err := Manifest(t.TempDir()); !errors.Is(err, ErrNoCorpus) {
		t.Errorf("no %s: %v, want ErrNoCorpus", Sums, err)
	}
}

// FuzzManifest: no SHA256SUMS panics Manifest; what it accepts lists only
// non-empty, sorted names.
func FuzzManifest(f *testing.F) {
	f.Add([]byte(strings.Repeat("a", 64) + "  ./x/y\n" + strings.Repeat("b", 64) + "  *z\n"))
	f.Add([]byte("\n\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, Sums), b, 0o600); err != nil {
			t.Fatal(err)
		}
		names, err := Manifest(dir)
		if err != nil {
			return
		}
		for i, n := range names {
			if n == "" || i > 0 && names[i-1] > n {
				t.Fatalf("names %q", names)
			}
		}
	})
}
