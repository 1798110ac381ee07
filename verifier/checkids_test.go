package verifier

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// docCheckIDs returns the IDs docs/cli.md lists in its "Check IDs" table.
func docCheckIDs(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile("../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(doc), "#### Check IDs")
	if !ok {
		t.Fatal(`docs/cli.md has no "Check IDs" section`)
	}
	if i := strings.Index(sec, "\n#"); i >= 0 {
		sec = sec[:i]
	}
	var ids []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9.-]+)` \\|").FindAllStringSubmatch(sec, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

// TestCheckIDsDocumented checks that the table names every check once and
// that docs/cli.md documents exactly the IDs the table can give, each once.
func TestCheckIDsDocumented(t *testing.T) {
	table := map[string]bool{}
	for _, c := range checkIDs {
		if table[c.id] {
			t.Errorf("check ID %s appears twice in the table: one ID per check", c.id)
		}
		table[c.id] = true
		if !strings.HasPrefix(c.id, "layer"+string(rune('0'+c.layer))+".") {
			t.Errorf("check ID %s is in layer %d", c.id, c.layer)
		}
	}
	for _, id := range otherIDs {
		table[id] = true
	}
	documented := map[string]bool{}
	for _, id := range docCheckIDs(t) {
		if documented[id] {
			t.Errorf("docs/cli.md lists %s twice", id)
		}
		documented[id] = true
		if !table[id] {
			t.Errorf("docs/cli.md lists %s, which the verifier never gives", id)
		}
	}
	for id := range table {
		if !documented[id] {
			t.Errorf("check ID %s is not documented in docs/cli.md", id)
		}
	}
}

// TestCheckIDsEmitted verifies real bundles, trusted and refused, and
// checks that every line of their JSON reports has a documented ID of its
// own (not layerN.other), and that no failure says record -1.
func TestCheckIDsEmitted(t *testing.T) {
	documented := map[string]bool{}
	for _, id := range docCheckIDs(t) {
		documented[id] = true
	}
	b, o := e2eTrustedTPM(t)
	reps := []*Report{verifyT(t, b, o)}
	// Refused: a wrong nonce (a failure outside any log) and no trusted key.
	wrong := o
	wrong.Nonce = []byte("not the nonce")
	reps = append(reps, verifyT(t, b, wrong))
	nokey := o
	nokey.TrustedKeys = nil
	reps = append(reps, verifyT(t, b, nokey))
	b2, o2 := e2eTPM(t)
	reps = append(reps, verifyT(t, b2, o2))
	seen := map[string]bool{}
	for _, rep := range reps {
		out, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(out, []byte(`"record":-1`)) {
			t.Errorf("a report says record -1: %s", out)
		}
		var back struct {
			Layers []struct {
				Checked    []string `json:"checked"`
				NotChecked []string `json:"not_checked"`
				Failure    *struct {
					ID string `json:"id"`
				} `json:"failure"`
				Checks []Check `json:"checks"`
			} `json:"layers"`
		}
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatal(err)
		}
		for i, l := range back.Layers {
			n := len(l.Checked) + len(l.NotChecked)
			if l.Failure != nil {
				n++
				if l.Failure.ID == "" {
					t.Errorf("layer %d: failure without an ID", i)
				}
			}
			if len(l.Checks) != n {
				t.Errorf("layer %d: %d checks for %d lines", i, len(l.Checks), n)
			}
			for _, c := range l.Checks {
				seen[c.ID] = true
				if !documented[c.ID] || strings.HasSuffix(c.ID, ".other") {
					t.Errorf("layer %d: %q has the ID %s", i, c.Text, c.ID)
				}
			}
		}
	}
	for _, id := range []string{"layer0.tpm.quote-signature", "layer0.nonce", "layer1.replay", "layer3.ima.boot-aggregate", "layer4.none"} {
		if !seen[id] {
			t.Errorf("no line has the ID %s", id)
		}
	}
}

// TestFailureJSON checks that record and offset are written only where
// they apply, and read back as the verifier holds them.
func TestFailureJSON(t *testing.T) {
	for _, tc := range []struct {
		f    Failure
		want string
	}{
		{Failure{Record: -1, Reason: "nonce differs from the expected one"}, `{"reason":"nonce differs from the expected one"}`},
		{Failure{Log: "logs[0] (tcg2)", Record: -1, Register: "pcr0", Reason: "x"}, `{"log":"logs[0] (tcg2)","register":"pcr0","reason":"x"}`},
		{Failure{Log: "ima list", Record: -1, Offset: 300, Reason: "x"}, `{"log":"ima list","offset":300,"reason":"x"}`},
		{Failure{Log: "logs[1] (ccel)", Record: 0, Offset: 0, Reason: "x"}, `{"log":"logs[1] (ccel)","record":0,"offset":0,"reason":"x"}`},
		{Failure{Log: "logs[1] (ccel)", Record: 7, Offset: 812, Reason: "x"}, `{"log":"logs[1] (ccel)","record":7,"offset":812,"reason":"x"}`},
	} {
		out, err := json.Marshal(tc.f)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != tc.want {
			t.Errorf("%+v: %s, want %s", tc.f, out, tc.want)
		}
		var back Failure
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatal(err)
		}
		if back != tc.f {
			t.Errorf("read back %+v, want %+v", back, tc.f)
		}
	}
	l := LayerResult{Layer: 0, Name: "evidence", Status: Fail, Failure: &Failure{Record: -1, Reason: "nonce differs from the expected one"}}
	out, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(`"failure":{"id":"layer0.nonce","reason":"nonce differs from the expected one"}`)) ||
		!bytes.Contains(out, []byte(`"checks":[{"id":"layer0.nonce","result":"fail","text":"nonce differs from the expected one"}]`)) {
		t.Errorf("layer JSON: %s", out)
	}
}
