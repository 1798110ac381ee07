package verifier

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/vmr"
)

// guest is a sim device with virtual registers, able to quote bundles.
type guest struct {
	t    *testing.T
	dev  *sim.Device
	s    *vmr.Store
	list string
	key  []byte
}

func newGuest(t *testing.T) *guest {
	ctx := context.Background()
	dir := t.TempDir()
	dev, err := sim.Open(ctx, filepath.Join(dir, "sim"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := vmr.Open(ctx, dev, vmr.Options{Dir: filepath.Join(dir, "log")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	key, _ := dev.PublicKeyPEM(ctx)
	return &guest{t: t, dev: dev, s: s, list: filepath.Join(dir, "ima.bin"), key: key}
}

// imaUpTo makes the guest's IMA list the first n entries of the real list
// and forwards it.
func (g *guest) imaUpTo(n int) {
	data, err := os.ReadFile(realIMA)
	if err != nil {
		g.t.Fatal(err)
	}
	es := imaEntries(g.t, data)
	if err := os.WriteFile(g.list, join(es[:n]), 0o600); err != nil {
		g.t.Fatal(err)
	}
	if _, err := g.s.Forward(context.Background(), vmr.ForwardOptions{List: g.list}); err != nil {
		g.t.Fatal(err)
	}
}

func (g *guest) extend(name, what string) {
	if _, err := g.s.Extend(context.Background(), name, mr.SHA384.Sum([]byte(what))); err != nil {
		g.t.Fatal(err)
	}
}

// quote makes a bundle with every archived segment (oldest first) and the
// current one, and the IMA list.
func (g *guest) quote(withArchives bool) *bundle.Bundle {
	ctx := context.Background()
	var ev *mr.Evidence
	cur, err := g.s.Snapshot(ctx, func() error {
		var err error
		ev, err = g.dev.Attest(ctx, []byte("n"))
		return err
	})
	if err != nil {
		g.t.Fatal(err)
	}
	var logs []bundle.Log
	if withArchives {
		arch, _ := g.s.Archives()
		for _, a := range arch {
			b, err := os.ReadFile(a)
			if err != nil {
				g.t.Fatal(err)
			}
			logs = append(logs, bundle.Log{Format: "runtime", Register: "rtmr3", Alg: "sha384", Data: b})
		}
	}
	logs = append(logs, bundle.Log{Format: "runtime", Register: "rtmr3", Alg: "sha384", Data: cur})
	if data, err := os.ReadFile(g.list); err == nil {
		logs = append(logs, bundle.Log{Format: "ima-binary", Data: data})
	}
	virt, _ := g.s.List(ctx)
	return bundle.New(ev, logs, virt)
}

func (g *guest) opts() Options {
	return Options{AllowSim: true, SimKeys: [][]byte{g.key}, Nonce: []byte("n")}
}

func verifyT(t *testing.T, b *bundle.Bundle, o Options) *Report {
	t.Helper()
	// Through JSON, as on disk.
	var buf bytes.Buffer
	b.Write(&buf)
	b2, err := bundle.Read(&buf, "b")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(context.Background(), b2, o)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func reportText(r *Report) string {
	var b strings.Builder
	r.WriteText(&b)
	return b.String()
}

// Three segments chain; dropping or altering the middle one fails and says
// which; a first segment whose snapshot nothing proves fails.
func TestSegmentChain(t *testing.T) {
	g := newGuest(t)
	g.imaUpTo(10)
	g.extend("mr_ctr.a", "1")
	if _, err := g.s.Cut(context.Background()); err != nil {
		t.Fatal(err)
	}
	g.imaUpTo(20)
	g.extend("mr_ctr.a", "2")
	if _, err := g.s.Cut(context.Background()); err != nil {
		t.Fatal(err)
	}
	g.imaUpTo(32)
	b := g.quote(true)
	if n := len(b.Logs); n != 4 {
		t.Fatalf("%d logs, want 3 segments and the IMA list", n)
	}
	if rep := verifyT(t, b, g.opts()); !rep.Trusted {
		t.Fatalf("chain of three segments not trusted:\n%s", reportText(rep))
	}

	drop := g.quote(true)
	drop.Logs = append(drop.Logs[:1:1], drop.Logs[2:]...)
	rep := verifyT(t, drop, g.opts())
	if rep.Trusted || rep.FailedLayer() != 1 || !strings.Contains(rep.Layers[1].Failure.Log, "logs[1]") ||
		!strings.Contains(rep.Layers[1].Failure.Reason, "segment 1 does not start where segment 0 ended") {
		t.Fatalf("middle segment dropped:\n%s", reportText(rep))
	}

	alter := g.quote(true)
	mid := alter.Logs[1].Data
	i := bytes.LastIndex(mid, []byte("mr_ctr.a extend sha384/"))
	mid[i+len("mr_ctr.a extend sha384/")] ^= 1 // a record of the middle segment
	rep = verifyT(t, alter, g.opts())
	if rep.Trusted || rep.FailedLayer() != 1 || !strings.Contains(rep.Layers[1].Failure.Log, "logs[1]") {
		t.Fatalf("middle segment altered:\n%s", reportText(rep))
	}

	alone := g.quote(false)
	rep = verifyT(t, alone, g.opts())
	if rep.Trusted || rep.FailedLayer() != 1 || !strings.Contains(rep.Layers[1].Failure.Reason, "snapshot that nothing proves") {
		t.Fatalf("unproven snapshot:\n%s", reportText(rep))
	}
}

// A snapshot that lies: a compromised guest ends a segment and starts its
// own new one whose snapshot claims another mr_ima value, extending the
// register consistently, so the quote covers the lie. The chain check
// against the segment before catches it and names the register.
func TestLyingSnapshot(t *testing.T) {
	ctx := context.Background()
	g := newGuest(t)
	g.imaUpTo(5)
	var ev *mr.Evidence
	prev, err := g.s.Snapshot(ctx, func() error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	vs, _ := g.dev.Read(ctx, "rtmr3")
	seg, err := runtimeInit(vs[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	lie, d := entryDigest(t, "ccmr snapshot mr_ima=sha384/"+strings.Repeat("ee", 48))
	seg = append(seg, lie...)
	if err := g.dev.Extend(ctx, "rtmr3", d); err != nil {
		t.Fatal(err)
	}
	if ev, err = g.dev.Attest(ctx, []byte("n")); err != nil {
		t.Fatal(err)
	}
	b := bundle.New(ev, []bundle.Log{
		{Format: "runtime", Register: "rtmr3", Alg: "sha384", Data: prev},
		{Format: "runtime", Register: "rtmr3", Alg: "sha384", Data: seg},
	}, nil)
	// The forged segment does replay to the quoted rtmr3: only the chain
	// check can catch it.
	if rep := verifyT(t, &bundle.Bundle{Format: b.Format, Platform: b.Platform, Nonce: b.Nonce, Time: b.Time, Evidence: b.Evidence,
		Logs: b.Logs[1:]}, Options{AllowSim: true, SimKeys: [][]byte{g.key}, Nonce: []byte("n"), Monitor: &MonitorState{Format: StateFormat,
		Machines: map[string]*MachineState{MachineID(b): {Runtime: []*RuntimeState{{Register: "rtmr3", Value: vs[0].Digest}}}}}}); rep.Trusted ||
		!strings.Contains(rep.Layers[1].Failure.Reason, "snapshot") {
		t.Fatalf("forged segment against a state with no virtual values:\n%s", reportText(rep))
	}
	rep := verifyT(t, b, g.opts())
	if rep.Trusted || rep.FailedLayer() != 1 || !strings.Contains(rep.Layers[1].Failure.Reason, "snapshot lies about mr_ima") {
		t.Fatalf("lying snapshot:\n%s", reportText(rep))
	}
	// The same lie with no previous segment: unproven, also refused.
	b.Logs = b.Logs[1:]
	if rep := verifyT(t, b, g.opts()); rep.Trusted {
		t.Fatalf("lying snapshot alone trusted:\n%s", reportText(rep))
	}
}

func runtimeInit(v mr.Digest) ([]byte, error) { return aael.AppendInit(nil, 4, v) }

// entryDigest builds a runtime log entry for rtmr3 and the digest it extends.
func entryDigest(t *testing.T, rec string) ([]byte, mr.Digest) {
	r, err := aael.ParseRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	b, d, err := aael.AppendEntry(nil, 4, mr.SHA384, r)
	if err != nil {
		t.Fatal(err)
	}
	return b, d
}
