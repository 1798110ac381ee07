package serve_test

import (
	"bufio"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docs/openapi-serve.yaml describes exactly the daemon's paths, with the
// methods it serves: each documented path and method answers something
// other than 404 or 405, and the file documents every path the daemon has.
func TestOpenAPIPaths(t *testing.T) {
	b, err := os.ReadFile("../docs/openapi-serve.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pathRe := regexp.MustCompile(`^  (/v1/[^:]*):$`)
	methodRe := regexp.MustCompile(`^    (get|post|put|delete|patch):$`)
	var paths []string
	ops := map[string][]string{}
	cur := ""
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\n")
		if m := pathRe.FindStringSubmatch(line); m != nil {
			cur = m[1]
			paths = append(paths, cur)
		} else if m := methodRe.FindStringSubmatch(line); m != nil && cur != "" {
			ops[cur] = append(ops[cur], strings.ToUpper(m[1]))
		}
	}
	slices.Sort(paths)
	want := []string{"/v1/cut", "/v1/extend", "/v1/health", "/v1/quote", "/v1/registers", "/v1/registers/{name}"}
	if !slices.Equal(paths, want) {
		t.Fatalf("documented paths %v, the daemon's %v", paths, want)
	}
	d := startDaemon(t, nil, 0o600)
	for _, p := range paths {
		for _, m := range ops[p] {
			c := rawConn(t, d.sock)
			u := strings.Replace(p, "{name}", "rtmr0", 1)
			req, _ := http.NewRequest(m, "http://ccmr"+u, strings.NewReader("{}"))
			req.Header.Set("Content-Type", "application/json")
			req.Close = true
			if err := req.Write(c); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == 404 || resp.StatusCode == 405 {
				t.Errorf("%s %s: %d: documented, not served", m, p, resp.StatusCode)
			}
		}
	}
}
