package fleet

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/bundle/collect"
	"github.com/ccmr-dev/ccmr/bundle/tail"
	"github.com/ccmr-dev/ccmr/mr"
)

// extend adds one event to g's runtime log.
func (g *guest) extend(t testing.TB) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n++
	h := sha512.Sum384([]byte(fmt.Sprintf("%s event %d", g.id, g.n)))
	if _, err := g.store.Extend(context.Background(), "mr_app", mr.Digest{Alg: mr.SHA384, Bytes: h[:]}); err != nil {
		t.Fatal(err)
	}
}

// quote collects a v2 bundle for nonce without extending, its logs cut
// to tails from since (nil: whole).
func (g *guest) quote(t testing.TB, nonce []byte, since *tail.Since) []byte {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	ctx := context.Background()
	b, err := collect.Bundle(ctx, g.dev, g.store, nonce, collect.Options{NoIMA: true, NoSystemdLog: true, Since: since})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var buf bytes.Buffer
	if err := b.WriteArchive(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// view is GET /v1/machines/{id}.
func (r *replica) view(t testing.TB, id string) MachineView {
	t.Helper()
	resp, err := http.Get(r.url + "/v1/machines/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v MachineView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 {
		t.Fatalf("machine view: %d %v", resp.StatusCode, err)
	}
	return v
}

// rowSnap is what a refused request must leave as it was.
type rowSnap struct {
	version int64
	state   string
	history int
}

func takeSnap(t testing.TB, st Store, id string) rowSnap {
	t.Helper()
	ctx := context.Background()
	m, _, err := st.Machine(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	h, err := st.History(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return rowSnap{m.Version, string(m.State), len(h)}
}

// tailOffset is the offset of the runtime log's tail in a bundle (0: whole).
func tailOffset(t testing.TB, body []byte) int64 {
	t.Helper()
	b := readBundle(t, body)
	for i := range b.Logs {
		if tail.IsRuntime(&b.Logs[i]) {
			return b.Logs[i].Offset
		}
	}
	t.Fatal("no runtime log in the bundle")
	return 0
}

// A machine that attested sends only its logs' tails from where the
// service says its monitor stands: accepted and advanced, O(new); the
// same tail twice advances once; a tail from another base (behind the
// state, past it: records skipped, or with no state at all) is refused
// 409 with nothing written and the nonce still usable; after a restart of
// the service the stored state takes tails as before; a whole bundle is
// always judged.
func TestTail(t *testing.T) {
	for name, url := range storeURLs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			r := newReplica(t, url, Config{})
			g := newGuest(t, 1)
			if err := r.st.Enroll(ctx, g.machine("default")); err != nil {
				t.Fatal(err)
			}
			// A first tail, before any state: refused.
			g.extend(t)
			g.extend(t)
			code, _ := r.post(t, g.id, g.quote(t, r.challenge(t), &tail.Since{Format: tail.SinceFormat, Machine: g.id,
				Runtime: []tail.SinceRuntime{{Register: g.store.Backing().Name, Offset: 1}}}))
			if code != http.StatusConflict {
				t.Fatalf("a tail before any state: status %d, want 409", code)
			}
			if v := r.view(t, g.id); v.Since != nil || v.Version != 0 {
				t.Fatalf("a refused tail wrote: %+v", v)
			}

			code, res := r.post(t, g.id, g.quote(t, r.challenge(t), nil))
			if code != 200 || !res.Trusted || !res.Advanced || res.Since == nil || len(res.Since.Runtime) != 1 || res.Since.Runtime[0].Offset == 0 {
				t.Fatalf("whole bundle: %d %+v", code, res)
			}
			first := r.view(t, g.id).Since
			if first == nil || first.Machine != g.id || !sameRuntime(first.Runtime[0], res.Since.Runtime[0]) {
				t.Fatalf("GET since %+v, the evidence answer said %+v", first, res.Since)
			}

			g.extend(t)
			body := g.quote(t, r.challenge(t), first)
			if off := tailOffset(t, body); off != first.Runtime[0].Offset {
				t.Fatalf("the bundle's runtime log starts at %d, want the tail from %d", off, first.Runtime[0].Offset)
			}
			if whole := g.quote(t, nil, nil); len(body) >= len(whole) {
				t.Errorf("the tail bundle (%d bytes) is not smaller than the whole one (%d)", len(body), len(whole))
			}
			code, res = r.post(t, g.id, body)
			if code != 200 || !res.Trusted || !res.Advanced || res.Since.Runtime[0].Offset <= first.Runtime[0].Offset {
				t.Fatalf("tail: %d %+v", code, res)
			}
			if !bytes.Contains(res.Report, []byte("a tail from byte")) && !bytes.Contains(res.Report, []byte("tail")) {
				t.Errorf("the report does not say the log was a tail: %s", res.Report)
			}
			// The same tail again: its recorded verdict, no advance.
			code, again := r.post(t, g.id, body)
			if code != 200 || !again.Replayed || again.Advanced || !again.Trusted {
				t.Fatalf("the same tail twice: %d %+v", code, again)
			}
			if v := r.view(t, g.id); v.Version != 2 {
				t.Fatalf("version %d after a tail sent twice, want 2", v.Version)
			}
			second := r.view(t, g.id).Since

			// Hostile: a tail from the old base (behind the state).
			before := takeSnap(t, r.st, g.id)
			g.extend(t)
			nonce := r.challenge(t)
			if code, _ := r.post(t, g.id, g.quote(t, nonce, first)); code != http.StatusConflict {
				t.Errorf("a tail from an old base: status %d, want 409", code)
			}
			// Hostile: a tail that skips a record (starts past the state).
			past := g.quote(t, nil, nil)
			pastEnd := int64(0)
			pb := readBundle(t, past)
			for i := range pb.Logs {
				if tail.IsRuntime(&pb.Logs[i]) {
					pastEnd = pb.Logs[i].Size()
				}
			}
			g.extend(t)
			skip := *second
			skip.Runtime = []tail.SinceRuntime{second.Runtime[0]}
			skip.Runtime[0].Offset = pastEnd
			if code, _ := r.post(t, g.id, g.quote(t, r.challenge(t), &skip)); code != http.StatusConflict {
				t.Errorf("a tail that skips a record: status %d, want 409", code)
			}
			if after := takeSnap(t, r.st, g.id); after != before {
				t.Errorf("refused tails wrote: %+v, was %+v", after, before)
			}
			// The nonce of a refused request is still good.
			code, res = r.post(t, g.id, g.quote(t, nonce, second))
			if code != 200 || !res.Trusted || !res.Advanced {
				t.Fatalf("tail with the refused request's nonce: %d %+v", code, res)
			}

			// A restart: a new service over the same database.
			r.srv.Close()
			r.st.Close()
			r = newReplica(t, url, Config{})
			g.extend(t)
			since := r.view(t, g.id).Since
			code, res = r.post(t, g.id, g.quote(t, r.challenge(t), since))
			if code != 200 || !res.Trusted || !res.Advanced || tailOffset(t, g.quote(t, nil, since)) == 0 {
				t.Fatalf("tail after a restart: %d %+v", code, res)
			}
			// A whole bundle is always judged.
			code, res = r.post(t, g.id, g.quote(t, r.challenge(t), nil))
			if code != 200 || !res.Trusted {
				t.Fatalf("whole bundle after tails: %d %+v", code, res)
			}
		})
	}
}

func sameRuntime(a, b tail.SinceRuntime) bool {
	return a.Register == b.Register && a.Offset == b.Offset && a.Value.Equal(b.Value) && a.SegmentInit.Equal(b.SegmentInit)
}

// A tail whose offsets are the state's but which the verifier cannot
// resume (the group's policy changed since: the entry is not used, the
// tail proves nothing) is refused 409 with nothing written, not recorded
// as the machine's verdict; the whole bundle the agent then sends is
// judged under the new policy.
func TestTailPolicyChanged(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pol := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, "web.json"), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pol(`{}`)
	groups, err := LoadGroups(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := newReplica(t, "sqlite:"+filepath.Join(t.TempDir(), "fleet.db"), Config{Groups: groups})
	g := newGuest(t, 1)
	if err := r.st.Enroll(ctx, g.machine("web")); err != nil {
		t.Fatal(err)
	}
	g.extend(t)
	if code, res := r.post(t, g.id, g.quote(t, r.challenge(t), nil)); code != 200 || !res.Trusted || res.Since == nil {
		t.Fatalf("whole bundle: %d %+v", code, res)
	}
	since := r.view(t, g.id).Since
	before := takeSnap(t, r.st, g.id)
	pol(`{"registers": {}}`)
	if err := groups.Reload(); err != nil {
		t.Fatal(err)
	}
	g.extend(t)
	if code, _ := r.post(t, g.id, g.quote(t, r.challenge(t), since)); code != http.StatusConflict {
		t.Fatalf("a tail the state cannot resume under a new policy: status %d, want 409", code)
	}
	if after := takeSnap(t, r.st, g.id); after != before {
		t.Errorf("the refused tail wrote: %+v, was %+v", after, before)
	}
	if code, res := r.post(t, g.id, g.quote(t, r.challenge(t), nil)); code != 200 || !res.Trusted || !res.Advanced {
		t.Fatalf("whole bundle under the new policy: %d %+v", code, res)
	}
}

// BenchmarkTail is the service's time to judge one new record of a
// machine whose runtime log holds FLEET_TAIL_RECORDS (default 2000)
// records, sent as a tail (tail) or whole (whole), on SQLite: the
// tail's cost follows the new bytes, the whole log's the log's length.
// The guest's quoting is outside the timer. go test -run '^$' -bench
// BenchmarkTail ./fleet/
func BenchmarkTail(b *testing.B) {
	for _, mode := range []string{"tail", "whole"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			r := newReplica(b, "sqlite:"+filepath.Join(b.TempDir(), "f.db"), Config{})
			g := newGuest(b, 1)
			if err := r.st.Enroll(ctx, g.machine("default")); err != nil {
				b.Fatal(err)
			}
			for range envInt("FLEET_TAIL_RECORDS", 2000) {
				g.extend(b)
			}
			if code, res := r.post(b, g.id, g.quote(b, r.challenge(b), nil)); code != 200 || !res.Trusted {
				b.Fatalf("first bundle: %d", code)
			}
			var sent int64
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				g.extend(b)
				var since *tail.Since
				if mode == "tail" {
					since = r.view(b, g.id).Since
				}
				body := g.quote(b, r.challenge(b), since)
				sent += int64(len(body))
				b.StartTimer()
				if code, res := r.post(b, g.id, body); code != 200 || !res.Trusted || !res.Advanced {
					b.Fatalf("%s: %d %+v", mode, code, res)
				}
			}
			b.ReportMetric(float64(sent)/float64(b.N), "bytes/bundle")
		})
	}
}

// A tail from the right point whose new record was changed (a history
// rewritten past the state, signed by the machine's own key) is judged
// and fails: it is no refusal (the base check does not look at new
// records), and the state stays where it was; the genuine tail then
// advances it.
func TestTailForgedRecord(t *testing.T) {
	ctx := context.Background()
	r := newReplica(t, "sqlite:"+filepath.Join(t.TempDir(), "fleet.db"), Config{})
	g := newGuest(t, 1)
	if err := r.st.Enroll(ctx, g.machine("default")); err != nil {
		t.Fatal(err)
	}
	g.extend(t)
	if code, res := r.post(t, g.id, g.quote(t, r.challenge(t), nil)); code != 200 || !res.Trusted {
		t.Fatalf("whole bundle: %d %+v", code, res)
	}
	since := r.view(t, g.id).Since
	before := takeSnap(t, r.st, g.id)
	g.extend(t)
	nonce := r.challenge(t)
	genuine := readBundle(t, g.quote(t, nonce, since))
	forged := *genuine
	forged.Logs = append([]bundle.Log(nil), genuine.Logs...)
	changed := false
	for i := range forged.Logs {
		lg := &forged.Logs[i]
		if !tail.IsRuntime(lg) || lg.Offset == 0 {
			continue
		}
		data, err := lg.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		data = append([]byte(nil), data...)
		data[len(data)-1] ^= 1 // the last byte of the new record
		forged.Logs[i] = bundle.Log{Format: lg.Format, Register: lg.Register, Alg: lg.Alg, Source: lg.Source, Offset: lg.Offset, Data: data}
		changed = true
	}
	if !changed {
		t.Fatal("no runtime tail in the bundle")
	}
	var buf bytes.Buffer
	if err := forged.Write(&buf); err != nil {
		t.Fatal(err)
	}
	code, res := r.post(t, g.id, buf.Bytes())
	if res != nil {
		t.Logf("forged tail: %d %s", code, res.Verdict)
	}
	switch {
	case code == 200 && (res.Trusted || res.Advanced):
		t.Fatalf("a forged record in a tail: %+v", res)
	case code != 200 && code != 400:
		t.Fatalf("a forged record in a tail: status %d, want a verdict or 400", code)
	}
	after := takeSnap(t, r.st, g.id)
	if after.version != before.version || after.state != before.state {
		t.Fatalf("a forged tail moved the state: %+v, was %+v", after, before)
	}
	var good bytes.Buffer
	if err := genuine.Write(&good); err != nil {
		t.Fatal(err)
	}
	if code == 200 {
		nonce = r.challenge(t) // the forged bundle's verdict used it
		good.Reset()
		good.Write(g.quote(t, nonce, since))
	}
	if code, res := r.post(t, g.id, good.Bytes()); code != 200 || !res.Trusted || !res.Advanced {
		t.Fatalf("the genuine tail after the forged one: %d %+v", code, res)
	}
}
