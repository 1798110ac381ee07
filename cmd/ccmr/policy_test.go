package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/verifier"
)

// schemaErrors validates doc against a JSON schema using the keywords
// Keylime's RUNTIME_POLICY_SCHEMA uses (type, required, properties,
// patternProperties, items, pattern, minItems, enum, minimum, maximum,
// $ref to #/definitions): what jsonschema checks when Keylime validates a
// runtime policy at upload.
func schemaErrors(root, s map[string]any, doc any, at string) []string {
	if ref, ok := s["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/definitions/")
		return schemaErrors(root, root["definitions"].(map[string]any)[name].(map[string]any), doc, at)
	}
	var errs []string
	bad := func(f string, a ...any) { errs = append(errs, at+": "+fmt.Sprintf(f, a...)) }
	switch s["type"] {
	case "object":
		m, ok := doc.(map[string]any)
		if !ok {
			bad("not an object")
			return errs
		}
		for _, r := range asList(s["required"]) {
			if _, ok := m[r.(string)]; !ok {
				bad("lacks required %s", r)
			}
		}
		props, _ := s["properties"].(map[string]any)
		for k, v := range m {
			if ps, ok := props[k].(map[string]any); ok {
				errs = append(errs, schemaErrors(root, ps, v, at+"."+k)...)
			}
			pp, _ := s["patternProperties"].(map[string]any)
			for pat, ps := range pp {
				if regexp.MustCompile(pat).MatchString(k) {
					errs = append(errs, schemaErrors(root, ps.(map[string]any), v, at+"."+k)...)
				}
			}
		}
	case "array":
		l, ok := doc.([]any)
		if !ok {
			bad("not an array")
			return errs
		}
		if n, ok := s["minItems"].(float64); ok && float64(len(l)) < n {
			bad("%d items, fewer than %v", len(l), n)
		}
		if is, ok := s["items"].(map[string]any); ok {
			for i, v := range l {
				errs = append(errs, schemaErrors(root, is, v, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	case "string":
		v, ok := doc.(string)
		if !ok {
			bad("not a string")
			return errs
		}
		if p, ok := s["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(v) {
			bad("%q does not match %s", v, p)
		}
		if e := asList(s["enum"]); e != nil {
			found := false
			for _, x := range e {
				found = found || x == v
			}
			if !found {
				bad("%q not in %v", v, e)
			}
		}
	case "integer":
		v, ok := doc.(float64)
		if !ok || v != float64(int64(v)) {
			bad("not an integer")
			return errs
		}
		if m, ok := s["minimum"].(float64); ok && v < m {
			bad("%v below %v", v, m)
		}
		if m, ok := s["maximum"].(float64); ok && v > m {
			bad("%v above %v", v, m)
		}
	case "null":
		if doc != nil {
			bad("not null")
		}
	}
	return errs
}

func asList(v any) []any { l, _ := v.([]any); return l }

// keylimeSchemaCheck validates a runtime policy against Keylime's schema
// (testdata/keylime/runtime-policy-schema.json) by schemaErrors.
func keylimeSchemaCheck(t *testing.T, policy []byte) []string {
	t.Helper()
	sb, err := os.ReadFile("testdata/keylime/runtime-policy-schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	var doc any
	if err := json.Unmarshal(sb, &schema); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(policy, &doc); err != nil {
		return []string{err.Error()}
	}
	return schemaErrors(schema, schema, doc, "policy")
}

// pythonSchemaCheck validates policies with the jsonschema package Keylime
// itself uses, in one python3 run (it starts slowly): "ok" or the error,
// per policy; nil when python3 or jsonschema is not there.
func pythonSchemaCheck(t *testing.T, policies [][]byte) []string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Log("no python3: validated by schemaErrors only")
		return nil
	}
	f := filepath.Join(t.TempDir(), "p.json")
	docs := make([]json.RawMessage, len(policies))
	for i, p := range policies {
		docs[i] = p
	}
	b, _ := json.Marshal(docs)
	os.WriteFile(f, b, 0o600)
	const prog = `import json, sys
try:
    import jsonschema
except ImportError:
    print("NOJSONSCHEMA"); sys.exit(0)
s = json.load(open(sys.argv[1]))
for d in json.load(open(sys.argv[2])):
    try:
        jsonschema.validate(d, s); print("ok")
    except jsonschema.ValidationError as e:
        print("invalid: " + e.message.replace("\n", " "))
`
	out, err := exec.Command(py, "-c", prog, "testdata/keylime/runtime-policy-schema.json", f).CombinedOutput()
	if err != nil {
		t.Fatalf("python3 jsonschema: %v\n%s", err, out)
	}
	if strings.TrimSpace(string(out)) == "NOJSONSCHEMA" {
		t.Log("python3 has no jsonschema: validated by schemaErrors only")
		return nil
	}
	res := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(res) != len(policies) {
		t.Fatalf("python3 jsonschema: %d answers for %d policies:\n%s", len(res), len(policies), out)
	}
	return res
}

// The schema check can fail: the hostile forms Keylime refuses at upload.
func TestKeylimeSchemaCheckRefuses(t *testing.T) {
	good := `{"meta": {"version": 1, "generator": 3}, "release": 0, "digests": {"/bin/sh": ["` + strings.Repeat("ab", 32) + `"]},
		"excludes": [], "keyrings": {}, "ima": {"ignored_keyrings": [], "log_hash_alg": "sha1", "dm_policy": null}, "ima-buf": {}, "verification-keys": ""}`
	if errs := keylimeSchemaCheck(t, []byte(good)); len(errs) > 0 {
		t.Fatalf("a valid policy is refused: %v", errs)
	}
	all := [][]byte{[]byte(good)}
	for _, bad := range []string{
		strings.Replace(good, "ab", "AB", 1),                               // uppercase hex
		strings.Replace(good, `["`+strings.Repeat("ab", 32)+`"]`, `[]`, 1), // empty list
		strings.Replace(good, `"/bin/sh": ["`, `"/bin/sh": ["sha256:`, 1),  // algorithm prefix
		strings.Replace(good, `"sha1"`, `"md5"`, 1),
		strings.Replace(good, `"dm_policy": null`, `"dm_policy": {}`, 1),
		strings.Replace(good, `"generator": 3`, `"generator": 4`, 1),
		strings.Replace(good, `"verification-keys": ""`, `"x": ""`, 1),
	} {
		if errs := keylimeSchemaCheck(t, []byte(bad)); len(errs) == 0 {
			t.Errorf("not refused:\n%s", bad)
		}
		all = append(all, []byte(bad))
	}
	// jsonschema agrees: the first is valid, the others not.
	for i, r := range pythonSchemaCheck(t, all) {
		if (r == "ok") != (i == 0) {
			t.Errorf("jsonschema on case %d: %s\n%s", i, r, all[i])
		}
	}
}

// policy create --runtime writes a policy Keylime's schema accepts and
// ccmr loads, from an IMA list (binary and ascii read alike) and from a
// file tree (Keylime's skipped folders left out, spaces written as "_",
// symbolic links not followed).
func TestPolicyCreateRuntime(t *testing.T) {
	guest := "../../testdata/e2e/guest/"
	var fromLists, written [][]byte
	for _, l := range []string{"binary_runtime_measurements", "ascii_runtime_measurements"} {
		out, errs, code := ccmrRun(t, nil, "policy", "create", "--runtime", "--ima", guest+l, "--exclude", "/tmp/.*", "--ignored-keyring", ".ima")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", l, code, errs)
		}
		if errs := keylimeSchemaCheck(t, []byte(out)); len(errs) > 0 {
			t.Fatalf("%s: not valid by Keylime's schema: %v\n%s", l, errs, out)
		}
		written = append(written, []byte(out))
		rp, err := verifier.ParseRuntimePolicy([]byte(out))
		if err != nil {
			t.Fatalf("%s: ccmr does not load it: %v", l, err)
		}
		if !rp.Allowed("/bin/busybox", "3d9f2889d6782537624a4e1a10e68a2ddd53e0ee8bac02676f27308f42ec6bf6") || rp.Allowed("/bin/busybox", strings.Repeat("0", 64)) {
			t.Errorf("%s: /bin/busybox's digest (line 2 of the ascii list) is not the one allowed", l)
		}
		if !rp.Excluded("/tmp/x") {
			t.Errorf("%s: --exclude lost", l)
		}
		var m map[string]any
		json.Unmarshal([]byte(out), &m)
		delete(m["meta"].(map[string]any), "timestamp")
		b, _ := json.Marshal(m)
		fromLists = append(fromLists, b)
	}
	if string(fromLists[0]) != string(fromLists[1]) {
		t.Errorf("the binary and ascii lists give different policies:\n%s\n%s", fromLists[0], fromLists[1])
	}

	root := t.TempDir()
	files := map[string]string{"usr/bin/a b": "tool\n", "etc/conf": "x=1\n", "tmp/scratch": "no\n", "var/log/l": "no\n", "opt/tmp/keep": "yes\n"}
	for f, c := range files {
		p := filepath.Join(root, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink("/etc/passwd", filepath.Join(root, "etc/link"))
	out, errs, code := ccmrRun(t, nil, "policy", "create", "--runtime", "--dir", root, "--skip-path", "opt/none")
	if code != 0 {
		t.Fatalf("--dir: exit %d: %s", code, errs)
	}
	if errs := keylimeSchemaCheck(t, []byte(out)); len(errs) > 0 {
		t.Fatalf("--dir: not valid by Keylime's schema: %v\n%s", errs, out)
	}
	written = append(written, []byte(out))
	for i, r := range pythonSchemaCheck(t, written) {
		if r != "ok" {
			t.Errorf("jsonschema refuses policy %d: %s\n%s", i, r, written[i])
		}
	}
	var rp struct{ Digests map[string][]string }
	json.Unmarshal([]byte(out), &rp)
	var names []string
	for n := range rp.Digests {
		names = append(names, n)
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "/etc/conf /opt/tmp/keep /usr/bin/a_b" {
		t.Errorf("--dir lists %v, want /etc/conf /opt/tmp/keep /usr/bin/a_b", names)
	}
	if d := rp.Digests["/usr/bin/a_b"]; len(d) != 1 || d[0] != mr.SHA256.Sum([]byte("tool\n")).Hex() {
		t.Errorf("/usr/bin/a_b digests %v", d)
	}
	out, _, code = ccmrRun(t, nil, "policy", "create", "--runtime", "--dir", root, "--algo", "sha1")
	if code != 0 || !strings.Contains(out, mr.SHA1.Sum([]byte("x=1\n")).Hex()) {
		t.Errorf("--algo sha1: exit %d\n%s", code, out)
	}

	// Bad input: exit 2, nothing written.
	for _, args := range [][]string{
		{"--runtime"},
		{"--runtime", "--ima", guest + "ascii_runtime_measurements", "--dir", root},
		{"--runtime", "--ima", guest + "ascii_runtime_measurements", "--log-hash-alg", "md5"},
		{"--runtime", "--dir", root, "--algo", "sm3"},
		{"--runtime", "--dir", filepath.Join(root, "etc/conf")},
		{"--runtime", "--ima", guest + "bundle.json"},
		{"--runtime", "--ima", "/dev/zero"},
		{"--runtime", "--dir", t.TempDir()},
		{"--runtime", "--ima", guest + "ascii_runtime_measurements", "--exclude", "a*+"}, // possessive: Python before 3.11 refuses it, ccmr refuses it, named
	} {
		if out, errs, code := ccmrRun(t, nil, append([]string{"policy", "create"}, args...)...); code != 2 || out != "" {
			t.Errorf("%v: exit %d, want 2 and no output\n%s%s", args, code, out, errs)
		}
	}
}

// policy create --measured-boot reads a real SeaBIOS log and the policy it
// writes passes its bundle (the e2e guest's); a log that is not a firmware
// log is refused.
func TestPolicyCreateMeasuredBoot(t *testing.T) {
	guest := "../../testdata/e2e/guest/"
	pol := filepath.Join(t.TempDir(), "mb.json")
	if _, errs, code := ccmrRun(t, nil, "policy", "create", "--measured-boot", "--log", guest+"tpm_eventlog.bin", "-O", pol); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	nonce, err := os.ReadFile("../../testdata/e2e/host/nonce.txt")
	if err != nil {
		t.Fatal(err)
	}
	out, errs, code := ccmrRun(t, nil, "verify", guest+"bundle.json", "--trust-ak", guest+"ak.pem", "--nonce", strings.TrimSpace(string(nonce)), "--policy", pol)
	if code != 0 || !strings.Contains(out, "measured_boot: the firmware events of pcr0 (1 events, sha1, sha256), pcr1 (2 events") {
		t.Fatalf("verify with the measured_boot policy: exit %d\n%s%s", code, out, errs)
	}
	out, _, code = ccmrRun(t, nil, "policy", "create", "--measured-boot", "--log", guest+"tpm_eventlog.bin", "--registers", "pcr4,pcr7")
	if code != 0 || !strings.Contains(out, `"pcr4"`) || strings.Contains(out, `"pcr0"`) {
		t.Errorf("--registers pcr4,pcr7: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{
		{"--measured-boot"},
		{"--measured-boot", "--log", guest + "ascii_runtime_measurements"},
		{"--measured-boot", "--log", guest + "tpm_eventlog.bin", "--registers", "pcr9"},
		{"--measured-boot", "--log", guest + "tpm_eventlog.bin", "--format", "ima-binary"},
	} {
		if out, errs, code := ccmrRun(t, nil, append([]string{"policy", "create"}, args...)...); code != 2 || out != "" {
			t.Errorf("%v: exit %d, want 2 and no output\n%s%s", args, code, out, errs)
		}
	}
}

// A real ima-buf keyring entry (Keylime's test list): --keyrings allows the
// certificate's digest under its keyring, schema-valid; ignoring that
// keyring leaves nothing to allow (exit 2).
func TestPolicyCreateRuntimeKeyrings(t *testing.T) {
	list := filepath.Join(corpusPath(t), "keylime/ima-buf-keyring.ascii")
	out, errs, code := ccmrRun(t, nil, "policy", "create", "--runtime", "--ima", list, "--keyrings")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if e := keylimeSchemaCheck(t, []byte(out)); len(e) > 0 {
		t.Fatalf("not valid by Keylime's schema: %v", e)
	}
	var rp struct{ Keyrings map[string][]string }
	json.Unmarshal([]byte(out), &rp)
	if k := rp.Keyrings[".ima"]; len(k) != 1 || k[0] != "a7d52aaa18c23d2d9bb2abb4308c0eeee67387a42259f4a6b1a42257065f3d5a" {
		t.Fatalf("keyrings %v", rp.Keyrings)
	}
	if out, _, code := ccmrRun(t, nil, "policy", "create", "--runtime", "--ima", list, "--keyrings", "--ignored-keyring", ".ima"); code != 2 || out != "" {
		t.Errorf("an ignored keyring: exit %d, want 2\n%s", code, out)
	}
}
