package fleet

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle/tail"
)

// docs/openapi-fleet.yaml describes exactly the service's paths, with the
// methods it serves (each answers something other than 404 and 405), and
// every member of the JSON answers: a field added to Result, MachineView,
// Machine, Challenge or the since file is documented.
func TestOpenAPIFleet(t *testing.T) {
	b, err := os.ReadFile("../docs/openapi-fleet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	pathRe := regexp.MustCompile(`^  (/[^:]*):$`)
	methodRe := regexp.MustCompile(`^    (get|post|put|delete|patch):$`)
	var paths []string
	ops := map[string][]string{}
	cur := ""
	for line := range strings.Lines(doc) {
		line = strings.TrimRight(line, "\n")
		if m := pathRe.FindStringSubmatch(line); m != nil {
			cur = m[1]
			paths = append(paths, cur)
		} else if m := methodRe.FindStringSubmatch(line); m != nil && cur != "" {
			ops[cur] = append(ops[cur], strings.ToUpper(m[1]))
		}
	}
	slices.Sort(paths)
	want := []string{"/healthz", "/metrics", "/v1/challenge", "/v1/machines", "/v1/machines/{id}", "/v1/machines/{id}/evidence"}
	if !slices.Equal(paths, want) {
		t.Fatalf("documented paths %v, the service's %v", paths, want)
	}
	st := openStore(t, "sqlite:"+filepath.Join(t.TempDir(), "f.db"))
	svc := New(Config{Store: st, TempDir: t.TempDir()})
	for _, p := range paths {
		for _, m := range ops[p] {
			w := httptest.NewRecorder()
			svc.ServeHTTP(w, httptest.NewRequest(m, strings.Replace(p, "{id}", "m1", 1), strings.NewReader("")))
			if w.Code == http.StatusMethodNotAllowed || (w.Code == http.StatusNotFound && !strings.Contains(w.Body.String(), "unknown machine")) {
				t.Errorf("%s %s: %d: documented, not served", m, p, w.Code)
			}
		}
	}
	for _, v := range []any{Result{}, MachineView{}, Machine{}, Verdict{}, Challenge{}, tail.Since{}, tail.SinceRuntime{}, tail.SinceIMA{}} {
		for _, name := range jsonNames(reflect.TypeOf(v)) {
			if !regexp.MustCompile(`(?m)^ +` + regexp.QuoteMeta(name) + `:`).MatchString(doc) {
				t.Errorf("%T.%s is not in docs/openapi-fleet.yaml", v, name)
			}
		}
	}
}

// jsonNames are the JSON member names of a struct type, embedded ones
// included.
func jsonNames(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			out = append(out, jsonNames(f.Type)...)
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "-" && name != "" {
			out = append(out, name)
		}
	}
	return out
}
