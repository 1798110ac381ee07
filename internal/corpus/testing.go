package corpus

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// EnvRequire names the environment variable that, set to 1, turns a missing
// corpus or corpus file into a test failure (make conformance sets it): a
// run that is meant to check the corpus must not pass by skipping it.
const EnvRequire = "CCMR_REQUIRE_CORPUS"

// Required reports whether $CCMR_REQUIRE_CORPUS is 1.
func Required() bool { return os.Getenv(EnvRequire) == "1" }

// absent skips tb with one line naming what is missing, or fails it when
// the corpus is required.
func absent(tb testing.TB, what error) {
	tb.Helper()
	if Required() {
		tb.Fatalf("corpus: %v (%s=1: required)", what, EnvRequire)
	}
	tb.Skipf("corpus: %v (skipped; %s=1 makes this a failure)", what, EnvRequire)
}

// Require returns the corpus folder. When it is absent the test is skipped
// with one line saying where it looked, or fails when $CCMR_REQUIRE_CORPUS=1.
// Every test that reads the corpus goes through Require, Path, Read or
// Seeds, so none skips silently.
func Require(tb testing.TB) string {
	tb.Helper()
	dir, err := Dir()
	if err != nil {
		absent(tb, err)
	}
	return dir
}

// Path returns the full path of rel (slash-separated, relative to the
// corpus folder). A missing corpus or a missing file skips the test with
// one line, or fails it when $CCMR_REQUIRE_CORPUS=1.
func Path(tb testing.TB, rel string) string {
	tb.Helper()
	p := filepath.Join(Require(tb), filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			tb.Fatalf("corpus: %v", err)
		}
		absent(tb, fmt.Errorf("file %s is missing from the corpus: %w", rel, err))
	}
	return p
}

// Read returns the bytes of the corpus file rel, skipping or failing like
// Path when it is missing.
func Read(tb testing.TB, rel string) []byte {
	tb.Helper()
	b, err := os.ReadFile(Path(tb, rel))
	if err != nil {
		tb.Fatalf("corpus: %v", err)
	}
	return b
}

// Seeds returns the bytes of every corpus file rels names (a rel may be a
// filepath.Match pattern, which must match at least one file), for fuzz
// seeds.
// A fuzz target must still run on its own seeds without the corpus, so an
// absent corpus is not a skip: it logs one line and returns nil (it fails
// when $CCMR_REQUIRE_CORPUS=1). A file missing from a present corpus is
// treated the same way: one line, and only the seeds found are returned.
func Seeds(tb testing.TB, rels ...string) [][]byte {
	tb.Helper()
	dir, err := Dir()
	if err != nil {
		missing(tb, fmt.Errorf("%w; fuzzing without its %d seed files", err, len(rels)))
		return nil
	}
	out := make([][]byte, 0, len(rels))
	for _, rel := range rels {
		files, err := filepath.Glob(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			tb.Fatalf("corpus seed %s: %v", rel, err)
		}
		if len(files) == 0 {
			missing(tb, fmt.Errorf("seed %s: no such file in %s", rel, dir))
			continue
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				tb.Fatalf("corpus seed: %v", err)
			}
			out = append(out, b)
		}
	}
	return out
}

// missing logs one line, or fails tb when the corpus is required.
func missing(tb testing.TB, what error) {
	tb.Helper()
	if Required() {
		tb.Fatalf("corpus: %v (%s=1: required)", what, EnvRequire)
	}
	tb.Logf("corpus: %v", what)
}
