package aattrpc_test

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ccmr-dev/ccmr/backend/sim"
	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/bundle/collect"
	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/serve"
	"github.com/ccmr-dev/ccmr/serve/aattrpc"
	"github.com/ccmr-dev/ccmr/serve/aattrpc/aapb"
	"github.com/ccmr-dev/ccmr/serve/client"
	"github.com/ccmr-dev/ccmr/verifier"
	"github.com/ccmr-dev/ccmr/vmr"
)

// syncBuffer collects the daemon's log for the checks of refusals.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// daemon is `ccmr serve` in-process on the sim device: the HTTP API on
// sock, the agent's ttrpc API on aaSock.
type daemon struct {
	dir, sock, aaSock string
	dev               *sim.Device
	store             *vmr.Store
	http              *client.Client
	aa                *aattrpc.Server
	log               *syncBuffer
}

func startDaemon(t testing.TB, pol *serve.Policy) *daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{dir: t.TempDir(), log: &syncBuffer{}}
	d.sock = filepath.Join(d.dir, "sock", "ccmr.sock")
	d.aaSock = filepath.Join(d.dir, "sock", "aa.sock")
	var err error
	if d.dev, err = sim.Open(ctx, filepath.Join(d.dir, "sim")); err != nil {
		t.Fatal(err)
	}
	if d.store, err = vmr.Open(ctx, d.dev, vmr.Options{Dir: filepath.Join(d.dir, "log")}); err != nil {
		t.Fatal(err)
	}
	l, err := serve.Listen(d.sock, 0o666, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	al, err := serve.Listen(d.aaSock, 0o666, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(d.log, nil))
	srv := serve.New(serve.Config{Device: d.dev, Store: d.store, Policy: pol, Logger: logger,
		Quote: collect.Options{NoIMA: true, NoSystemdLog: true}})
	d.aa = aattrpc.New(aattrpc.Config{Store: d.store, Policy: pol, Logger: logger})
	done := make(chan error, 2)
	go func() { done <- srv.Serve(ctx, l) }()
	go func() { done <- d.aa.Serve(ctx, al) }()
	d.http = client.New(d.sock)
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}
		d.http.Close()
		d.store.Close()
		d.dev.Close()
	})
	return d
}

// aaClient is a ttrpc client of the agent's API on sock, as the data hub
// is one.
type aaClient struct{ c *ttrpc.Client }

func dialAA(t testing.TB, sock string) *aaClient {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn)
	t.Cleanup(func() { c.Close() })
	return &aaClient{c}
}

func (a *aaClient) extend(ctx context.Context, req *aapb.ExtendRuntimeMeasurementRequest) (*aapb.ExtendRuntimeMeasurementResponse, error) {
	var resp aapb.ExtendRuntimeMeasurementResponse
	if err := a.c.Call(ctx, aattrpc.Service, aattrpc.MethodExtend, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// state is what a refused call must leave unchanged.
type state struct {
	size int64
	reg  mr.Digest
}

func (d *daemon) state(t testing.TB) state {
	t.Helper()
	fi, err := os.Stat(d.store.Path())
	if err != nil {
		t.Fatal(err)
	}
	vs, err := d.dev.Read(context.Background(), d.store.Backing().Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if v.Register.Alg == d.store.Backing().Alg {
			return state{fi.Size(), v.Digest}
		}
	}
	t.Fatalf("no %v bank of %s", d.store.Backing().Alg, d.store.Backing().Name)
	return state{}
}

// records are the AAEL records of the runtime log, in order.
func (d *daemon) records(t testing.TB) []aael.Record {
	t.Helper()
	f, err := os.Open(d.store.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd := aael.NewReader(f, aael.Options{File: d.store.Path()})
	var out []aael.Record
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if !e.Record.IsZero() {
			out = append(out, e.Record)
		}
	}
}

// quoteAndVerify asks the daemon's HTTP API for a bundle and verifies it.
func quoteAndVerify(t *testing.T, d *daemon) {
	t.Helper()
	ctx := context.Background()
	nonce := []byte("aa-test-nonce-0123456789abcdef")
	var buf bytes.Buffer
	if err := d.http.Quote(ctx, nonce, &buf); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.ReadAt(ctx, bytes.NewReader(buf.Bytes()), int64(buf.Len()), "quote.zip")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	key, err := d.dev.PublicKeyPEM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := verifier.Verify(ctx, b, verifier.Options{AllowSim: true, SimKeys: [][]byte{key}, Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Trusted {
		var w bytes.Buffer
		rep.WriteText(&w)
		t.Fatalf("bundle from the daemon not trusted:\n%s", w.String())
	}
}

// agentEntry is the TCG_PCR_EVENT2 entry the attestation agent writes for
// a record (guest-components eventlog/tcg2.rs), built here by hand from
// that layout, not with aael: MR index, EV_EVENT_TAG (6), one digest
// (TPM_ALG_SHA384 0x000c), the event size, the tagged event "AAEL".
func agentEntry(mrIndex uint32, text string) []byte {
	ev := binary.LittleEndian.AppendUint32(nil, 0x4141454c)
	ev = binary.LittleEndian.AppendUint32(ev, uint32(len(text)))
	ev = append(ev, text...)
	h := sha512.Sum384(ev)
	b := binary.LittleEndian.AppendUint32(nil, mrIndex)
	b = binary.LittleEndian.AppendUint32(b, 6)
	b = binary.LittleEndian.AppendUint32(b, 1)
	b = binary.LittleEndian.AppendUint16(b, 0x000c)
	b = append(b, h[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ev)))
	return append(b, ev...)
}

// The data hub's image-pull record, sent by a ttrpc client as the hub
// sends it, lands in the runtime log byte for byte as the agent writes it,
// is extended into the backing register (the register equals the replay)
// and the daemon's quote verifies.
func TestExtendRuntimeMeasurement(t *testing.T) {
	d := startDaemon(t, nil)
	ctx := context.Background()
	// A virtual register first, so the AA record is not at offset 0.
	if _, err := d.http.Extend(ctx, "mr_app.x", mr.Digest{Alg: mr.SHA384, Bytes: make([]byte, 48)}); err != nil {
		t.Fatal(err)
	}
	before := d.state(t)
	req := &aapb.ExtendRuntimeMeasurementRequest{
		Domain:    "github.com/confidential-containers",
		Operation: "PullImage",
		Content:   `{"image":"docker.io/library/busybox:latest", "digest":"sha256:0123456789abcdef"}`,
	}
	resp, err := dialAA(t, d.aaSock).extend(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetResult() != aapb.RuntimeMeasurementResult_OK {
		t.Errorf("Result %v, want OK", resp.GetResult())
	}
	log, err := os.ReadFile(d.store.Path())
	if err != nil {
		t.Fatal(err)
	}
	backing := d.store.Backing()
	if backing.Name != "rtmr3" || backing.Index != 4 {
		t.Fatalf("backing %s index %d: the test expects rtmr3 (CC MR 4)", backing.Name, backing.Index)
	}
	want := agentEntry(4, req.Domain+" "+req.Operation+" "+req.Content)
	if !bytes.Equal(log[before.size:], want) {
		t.Errorf("log grew by\n%x\nwant the agent's entry\n%x", log[before.size:], want)
	}
	after := d.state(t)
	ev := want[len(want)-8-len(req.Domain+req.Operation+req.Content)-2:]
	h := sha512.Sum384(ev)
	x := sha512.New384()
	x.Write(before.reg.Bytes)
	x.Write(h[:])
	if !bytes.Equal(after.reg.Bytes, x.Sum(nil)) {
		t.Errorf("register %x, want extend(before, H(tagged event))", after.reg.Bytes)
	}
	if err := d.store.Verify(ctx); err != nil {
		t.Errorf("register and replay: %v", err)
	}
	quoteAndVerify(t, d)
}

// The agent's own test vector (guest-components eventlog/mod.rs,
// test_event_digest): the digest of "domain operation content" in sha384.
func TestAgentDigestVector(t *testing.T) {
	d := startDaemon(t, nil)
	ctx := context.Background()
	before := d.state(t)
	if _, err := dialAA(t, d.aaSock).extend(ctx, &aapb.ExtendRuntimeMeasurementRequest{
		Domain: "domain", Operation: "operation", Content: "content", RegisterIndex: proto.Uint64(aattrpc.DefaultPCR)}); err != nil {
		t.Fatal(err)
	}
	vec, _ := hex.DecodeString("dad5f0e226318ffa9839b75a472c6aa7fdb5834949d0a0a22990cf04d5692440fb00f3aa0609db7e49cd8d793f670d02")
	x := sha512.New384()
	x.Write(before.reg.Bytes)
	x.Write(vec)
	if got := d.state(t).reg.Bytes; !bytes.Equal(got, x.Sum(nil)) {
		t.Errorf("register %x, want the extend by the agent's digest %x", got, vec)
	}
}

// Requests the agent's API must refuse: InvalidArgument or
// PermissionDenied, nothing in the log, the register unchanged.
func TestRefusedRequests(t *testing.T) {
	d := startDaemon(t, nil)
	ctx := context.Background()
	// mr_app.a holds sha384 records: a sha256 one is refused.
	if _, err := d.http.Extend(ctx, "mr_app.a", mr.Digest{Alg: mr.SHA384, Bytes: make([]byte, 48)}); err != nil {
		t.Fatal(err)
	}
	snap, err := aael.SnapshotRecord([]aael.Snapshot{{Name: "mr_app.a", Value: mr.Zero(mr.SHA384)}})
	if err != nil {
		t.Fatal(err)
	}
	ok := func(r *aapb.ExtendRuntimeMeasurementRequest) *aapb.ExtendRuntimeMeasurementRequest {
		if r.Domain == "" {
			r.Domain = "github.com/confidential-containers"
		}
		if r.Operation == "" {
			r.Operation = "PullImage"
		}
		if r.Content == "" {
			r.Content = "x"
		}
		return r
	}
	for _, tc := range []struct {
		name string
		req  *aapb.ExtendRuntimeMeasurementRequest
		code codes.Code
	}{
		{"RegisterIndex of rtmr2 (PCR 8)", ok(&aapb.ExtendRuntimeMeasurementRequest{RegisterIndex: proto.Uint64(8)}), codes.InvalidArgument},
		{"RegisterIndex of rtmr0 (PCR 1)", ok(&aapb.ExtendRuntimeMeasurementRequest{RegisterIndex: proto.Uint64(1)}), codes.InvalidArgument},
		{"RegisterIndex of rtmr1 (PCR 2)", ok(&aapb.ExtendRuntimeMeasurementRequest{RegisterIndex: proto.Uint64(2)}), codes.InvalidArgument},
		{"LF in content", ok(&aapb.ExtendRuntimeMeasurementRequest{Content: "a\nmr_app.a extend sha384/" + strings.Repeat("00", 48)}), codes.InvalidArgument},
		{"CR in content", ok(&aapb.ExtendRuntimeMeasurementRequest{Content: "a\rb"}), codes.InvalidArgument},
		{"NUL in content", ok(&aapb.ExtendRuntimeMeasurementRequest{Content: "a\x00b"}), codes.InvalidArgument},
		{"ESC in content", ok(&aapb.ExtendRuntimeMeasurementRequest{Content: "\x1b[2Jclear"}), codes.InvalidArgument},
		{"space in domain", ok(&aapb.ExtendRuntimeMeasurementRequest{Domain: "mr_app.a extend"}), codes.InvalidArgument},
		{"empty domain", &aapb.ExtendRuntimeMeasurementRequest{Operation: "op", Content: "c"}, codes.InvalidArgument},
		{"record over aael.MaxRecordSize", ok(&aapb.ExtendRuntimeMeasurementRequest{Content: strings.Repeat("a", aael.MaxRecordSize)}), codes.InvalidArgument},
		{"INIT domain", ok(&aapb.ExtendRuntimeMeasurementRequest{Domain: "INIT", Operation: "sha384/" + strings.Repeat("00", 48)}), codes.InvalidArgument},
		{"ccmr snapshot", &aapb.ExtendRuntimeMeasurementRequest{Domain: snap.Domain, Operation: snap.Operation, Content: snap.Content}, codes.PermissionDenied},
		{"virtual record, not canonical", ok(&aapb.ExtendRuntimeMeasurementRequest{Domain: "mr_app.a", Operation: "extend", Content: "SHA384/" + strings.Repeat("00", 48)}), codes.InvalidArgument},
		{"virtual record, other operation", ok(&aapb.ExtendRuntimeMeasurementRequest{Domain: "mr_app.a", Operation: "reset", Content: "now"}), codes.InvalidArgument},
		{"virtual record, second algorithm", ok(&aapb.ExtendRuntimeMeasurementRequest{Domain: "mr_app.a", Operation: "extend", Content: "sha256/" + strings.Repeat("00", 32)}), codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := d.state(t)
			_, err := dialAA(t, d.aaSock).extend(ctx, tc.req)
			if got := status.Code(err); got != tc.code {
				t.Fatalf("code %v (%v), want %v", got, err, tc.code)
			}
			if after := d.state(t); after.size != before.size || !after.reg.Equal(before.reg) {
				t.Errorf("refused call wrote: log %d → %d bytes, register %x → %x", before.size, after.size, before.reg.Bytes, after.reg.Bytes)
			}
		})
	}
	if err := d.store.Verify(ctx); err != nil {
		t.Error(err)
	}
}

// RegisterIndex absent, the agent's default (17) and every PCR the agent
// maps to RTMR3 are the backing register; the records land in order.
func TestRegisterIndexOfBacking(t *testing.T) {
	d := startDaemon(t, nil)
	ctx := context.Background()
	c := dialAA(t, d.aaSock)
	var want []aael.Record
	for i, idx := range []*uint64{nil, proto.Uint64(17), proto.Uint64(0), proto.Uint64(23)} {
		req := &aapb.ExtendRuntimeMeasurementRequest{Domain: "test", Operation: "op", Content: fmt.Sprint(i), RegisterIndex: idx}
		if _, err := c.extend(ctx, req); err != nil {
			t.Fatalf("RegisterIndex %v: %v", idx, err)
		}
		want = append(want, aael.Record{Domain: "test", Operation: "op", Content: fmt.Sprint(i)})
	}
	if got := d.records(t); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("records %v, want %v", got, want)
	}
}

// The mapping of the agent's PCR numbers, table by table from
// guest-components' pcr_to_ccmr.
func TestNames(t *testing.T) {
	rtmr := func(i int) mr.Register { return mr.Register{Name: fmt.Sprintf("rtmr%d", i), Index: i + 1} }
	for pcr := range uint64(30) {
		want := 3
		switch {
		case pcr == 1 || pcr == 7:
			want = 0
		case pcr >= 2 && pcr <= 6:
			want = 1
		case pcr >= 8 && pcr <= 15:
			want = 2
		}
		for i := range 4 {
			if got := aattrpc.Names(rtmr(i), pcr); got != (i == want) {
				t.Errorf("PCR %d names rtmr%d: %v", pcr, i, got)
			}
		}
	}
	pcr14 := mr.Register{Name: "pcr14", Index: 14}
	for pcr := range uint64(30) {
		if got := aattrpc.Names(pcr14, pcr); got != (pcr == 14) {
			t.Errorf("PCR %d names pcr14: %v", pcr, got)
		}
	}
	if aattrpc.Names(mr.Register{Name: "measurement", Index: -1}, 0) {
		t.Error("an index names a register that is neither an RTMR nor a PCR")
	}
}

// The agent's other methods are not served.
func TestOtherMethodsUnimplemented(t *testing.T) {
	d := startDaemon(t, nil)
	c := dialAA(t, d.aaSock)
	var resp aapb.ExtendRuntimeMeasurementResponse
	err := c.c.Call(context.Background(), aattrpc.Service, "GetEvidence", &aapb.ExtendRuntimeMeasurementRequest{}, &resp)
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("GetEvidence: %v, want Unimplemented", err)
	}
}

// Authorization is the HTTP API's policy, judged on the peer: a record
// domain needs an "aa" pattern, a virtual register's record the right to
// extend it, domain ccmr is nobody's, and root in a container (no
// CAP_SYS_ADMIN) is not root. Each refusal writes nothing and is logged
// with the peer.
func TestAuthorization(t *testing.T) {
	pol, err := serve.ParsePolicy([]byte(`{"format":"ccmr-serve-policy/v1","rules":[
		{"uids":[1000],"aa":["github.com/*"],"extend":["mr_app.alice"]},
		{"uids":[1001],"extend":["*"]},
		{"uids":[1002],"aa":["*"]}
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, pol)
	ctx := context.Background()
	alice := serve.Peer{UID: 1000, GID: 1000, PID: 1}
	bob := serve.Peer{UID: 1001, GID: 1001, PID: 1}
	admin := serve.Peer{UID: 0, Admin: true, PID: 1}
	carol := serve.Peer{UID: 1002, GID: 1002, PID: 1}
	ctrRoot := serve.Peer{UID: 0, Admin: false, PID: 1}
	zero := "sha384/" + strings.Repeat("00", 48)
	for _, tc := range []struct {
		name string
		peer serve.Peer
		req  *aapb.ExtendRuntimeMeasurementRequest
		code codes.Code
	}{
		{"alice, her domain", alice, &aapb.ExtendRuntimeMeasurementRequest{Domain: "github.com/confidential-containers", Operation: "PullImage", Content: "x"}, codes.OK},
		{"alice, another domain", alice, &aapb.ExtendRuntimeMeasurementRequest{Domain: "example.org/other", Operation: "op", Content: "x"}, codes.PermissionDenied},
		{"alice, her virtual register", alice, &aapb.ExtendRuntimeMeasurementRequest{Domain: "mr_app.alice", Operation: "extend", Content: zero}, codes.OK},
		{"alice forges mr_app.bob through the AA API", alice, &aapb.ExtendRuntimeMeasurementRequest{Domain: "mr_app.bob", Operation: "extend", Content: zero}, codes.PermissionDenied},
		{"carol may record every domain without '/'", carol, &aapb.ExtendRuntimeMeasurementRequest{Domain: "example", Operation: "op", Content: "x"}, codes.OK},
		{"carol's aa domains do not make mr_app.bob hers", carol, &aapb.ExtendRuntimeMeasurementRequest{Domain: "mr_app.bob", Operation: "extend", Content: zero}, codes.PermissionDenied},
		{"carol's aa domains do not cover ccmr", carol, &aapb.ExtendRuntimeMeasurementRequest{Domain: "ccmr", Operation: "snapshot", Content: "mr_app.bob=" + zero}, codes.PermissionDenied},
		{"bob may extend everything but has no aa domain", bob, &aapb.ExtendRuntimeMeasurementRequest{Domain: "github.com/confidential-containers", Operation: "PullImage", Content: "x"}, codes.PermissionDenied},
		{"root in a container", ctrRoot, &aapb.ExtendRuntimeMeasurementRequest{Domain: "github.com/confidential-containers", Operation: "PullImage", Content: "x"}, codes.PermissionDenied},
		{"admin, domain ccmr", admin, &aapb.ExtendRuntimeMeasurementRequest{Domain: "ccmr", Operation: "snapshot", Content: "mr_app.alice=" + zero}, codes.PermissionDenied},
		{"admin, any domain", admin, &aapb.ExtendRuntimeMeasurementRequest{Domain: "example.org/other", Operation: "op", Content: "x"}, codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := d.state(t)
			_, err := d.aa.Extend(ctx, tc.peer, tc.req)
			if got := status.Code(err); got != tc.code {
				t.Fatalf("code %v (%v), want %v", got, err, tc.code)
			}
			after := d.state(t)
			wrote := after.size != before.size || !after.reg.Equal(before.reg)
			if wrote != (tc.code == codes.OK) {
				t.Errorf("wrote %v (log %d → %d bytes)", wrote, before.size, after.size)
			}
			if tc.code == codes.PermissionDenied && !strings.Contains(d.log.String(), fmt.Sprintf("uid=%d ", tc.peer.UID)) {
				t.Errorf("refusal not logged with the peer:\n%s", d.log.String())
			}
		})
	}
	if n, err := d.store.Records(ctx, "mr_app.alice"); err != nil || n != 1 {
		t.Errorf("mr_app.alice: %d records (%v), want 1", n, err)
	}
	if n, err := d.store.Records(ctx, "mr_app.bob"); err != nil || n != 0 {
		t.Errorf("mr_app.bob: %d records (%v), want 0", n, err)
	}
	if err := d.store.Verify(ctx); err != nil {
		t.Error(err)
	}
}

// Concurrent agent-API records and HTTP virtual extends share the group
// commit: none is lost or doubled, the register equals the replay, the
// quote verifies.
func TestConcurrentWithHTTP(t *testing.T) {
	d := startDaemon(t, nil)
	ctx := context.Background()
	const workers, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers)
	for w := range workers {
		wg.Add(2)
		c := dialAA(t, d.aaSock)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := c.extend(ctx, &aapb.ExtendRuntimeMeasurementRequest{Domain: "aa.test", Operation: fmt.Sprintf("w%d", w), Content: fmt.Sprint(i)}); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := range each {
				h := sha512.Sum384(fmt.Appendf(nil, "%d/%d", w, i))
				if _, err := d.http.Extend(ctx, fmt.Sprintf("mr_app.w%d", w), mr.Digest{Alg: mr.SHA384, Bytes: h[:]}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	next := map[string]int{}
	for _, r := range d.records(t) {
		if r.Domain != "aa.test" {
			continue
		}
		if r.Content != fmt.Sprint(next[r.Operation]) {
			t.Fatalf("%s: record %q after %d records", r.Operation, r.Content, next[r.Operation])
		}
		next[r.Operation]++
	}
	for w := range workers {
		if n := next[fmt.Sprintf("w%d", w)]; n != each {
			t.Errorf("w%d: %d agent records, want %d", w, n, each)
		}
		if n, err := d.store.Records(ctx, fmt.Sprintf("mr_app.w%d", w)); err != nil || n != each {
			t.Errorf("mr_app.w%d: %d records (%v), want %d", w, n, err, each)
		}
	}
	if err := d.store.Verify(ctx); err != nil {
		t.Error(err)
	}
	quoteAndVerify(t, d)
}

// Serve returns when its context ends, closing an idle client's
// connection (the data hub keeps one open), and when its listener fails,
// with the error and the connections closed.
func TestServeStops(t *testing.T) {
	d := startDaemon(t, nil)
	for _, how := range []string{"context", "listener"} {
		t.Run(how, func(t *testing.T) {
			sock := filepath.Join(d.dir, "sock", how+".sock")
			l, err := serve.Listen(sock, 0o600, -1, -1)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			srv := aattrpc.New(aattrpc.Config{Store: d.store, Logger: slog.New(slog.NewTextHandler(d.log, nil))})
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx, l) }()
			conn, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			c := ttrpc.NewClient(conn)
			var resp aapb.ExtendRuntimeMeasurementResponse
			if err := c.Call(ctx, aattrpc.Service, aattrpc.MethodExtend, &aapb.ExtendRuntimeMeasurementRequest{Domain: "d", Operation: "o", Content: how}, &resp); err != nil {
				t.Fatal(err)
			}
			if how == "context" {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Serve: %v", err)
				}
			} else {
				l.Close()
				if err := <-done; err == nil {
					t.Error("Serve returned nil after its listener failed")
				}
			}
			// The connection was closed by the daemon: the next call fails.
			if err := c.Call(context.Background(), aattrpc.Service, aattrpc.MethodExtend, &aapb.ExtendRuntimeMeasurementRequest{Domain: "d", Operation: "o", Content: "after"}, &resp); err == nil {
				t.Error("a call after Serve returned succeeded")
			}
		})
	}
}

// A client that sends garbage, a header announcing 1 GiB, or stalls
// mid-message writes nothing and harms no other client.
func TestHostileClients(t *testing.T) {
	d := startDaemon(t, nil)
	before := d.state(t)
	var held []net.Conn
	for _, b := range [][]byte{
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		{0x40, 0x00, 0x00, 0x00, 0, 0, 0, 1, 1, 0}, // 1 GiB announced, 2 bytes sent
		{0, 0, 0, 20, 0, 0, 0, 3, 1, 0, 0x0a},      // stalls inside a request
	} {
		c, err := net.Dial("unix", d.aaSock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	if after := d.state(t); after.size != before.size || !after.reg.Equal(before.reg) {
		t.Fatalf("hostile bytes wrote: log %d → %d", before.size, after.size)
	}
	if _, err := dialAA(t, d.aaSock).extend(context.Background(), &aapb.ExtendRuntimeMeasurementRequest{Domain: "d", Operation: "o", Content: "good"}); err != nil {
		t.Fatalf("a good client beside %d hostile ones: %v", len(held), err)
	}
	if recs := d.records(t); len(recs) != 1 || recs[0].Content != "good" {
		t.Errorf("records %v, want the good one alone", recs)
	}
}
