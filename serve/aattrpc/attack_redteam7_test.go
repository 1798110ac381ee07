package aattrpc_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ccmr-dev/ccmr/serve"
	"github.com/ccmr-dev/ccmr/serve/aattrpc"
	"github.com/ccmr-dev/ccmr/serve/aattrpc/aapb"
)

// Red team 7. The attacks on `ccmr serve --aa-socket` (docs/threat-model.md,
// Round 7).

// rawRequest is one ttrpc request message (header and Request) of the
// agent's method on stream id.
func rawRequest(t testing.TB, id uint32, req *aapb.ExtendRuntimeMeasurementRequest) []byte {
	t.Helper()
	payload, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := proto.Marshal(&ttrpc.Request{Service: aattrpc.Service, Method: aattrpc.MethodExtend, Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	h := binary.BigEndian.AppendUint32(nil, uint32(len(msg)))
	h = binary.BigEndian.AppendUint32(h, id)
	h = append(h, 1, 0) // a request, no flags
	return append(h, msg...)
}

// readAnswer reads one ttrpc message from r and returns its stream id and
// the status code of the Response it holds.
func readAnswer(t testing.TB, r io.Reader) (uint32, codes.Code) {
	t.Helper()
	var h [10]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		t.Fatalf("reading an answer: %v", err)
	}
	b := make([]byte, binary.BigEndian.Uint32(h[:4]))
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("reading an answer: %v", err)
	}
	if h[8] != 2 {
		t.Fatalf("message type %d, want a response", h[8])
	}
	var resp ttrpc.Response
	if err := proto.Unmarshal(b, &resp); err != nil {
		t.Fatal(err)
	}
	return binary.BigEndian.Uint32(h[4:8]), codes.Code(resp.GetStatus().GetCode())
}

// A peer that pipelines requests and never reads the answers: ttrpc read
// every request and started a goroutine for it that lived until its
// answer could be written, so 50,000 requests of 40 bytes (refused ones:
// domain ccmr is nobody's) held 50,000 goroutines and some 330 MB of the
// daemon, and more bytes would have taken all its memory from every
// client. The daemon must stop reading such a peer, hold a bounded number
// of its calls, serve other clients meanwhile, and answer every call once
// the peer reads again.
//
// The test waits for the daemon to stop reading the peer (its refusal
// count unchanged while the peer's writer is blocked); what it asserts
// are counts, not durations.
func TestRedteam7PipelinedCallsBounded(t *testing.T) {
	d := startDaemon(t, nil)
	base := runtime.NumGoroutine()
	const bound = 200 // the daemon's goroutines above base, at most
	c, err := net.Dial("unix", d.aaSock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := &aapb.ExtendRuntimeMeasurementRequest{Domain: "ccmr", Operation: "snapshot", Content: "mr_x=sha384/" + strings.Repeat("00", 48)}
	const n = 50000
	var buf []byte
	for i := range n {
		buf = append(buf, rawRequest(t, uint32(2*i+1), req)...)
	}
	written := make(chan error, 1)
	go func() {
		_, err := c.Write(buf)
		written <- err
	}()
	refusals := func() int { return strings.Count(d.log.String(), "refused: reserved domain") }
	peak := 0
	check := func() {
		t.Helper()
		g := runtime.NumGoroutine() - base
		peak = max(peak, g)
		if g > bound {
			t.Fatalf("the daemon holds %d goroutines more than before for one peer that reads no answer (%d calls refused so far): unbounded", g, refusals())
		}
	}
	last, same := -1, 0
	for same < 20 {
		check()
		select {
		case err := <-written:
			t.Fatalf("the daemon read all %d requests (%d bytes) of a peer that reads no answer (write: %v; %d goroutines more than before)",
				n, len(buf), err, runtime.NumGoroutine()-base)
		case <-time.After(100 * time.Millisecond):
		}
		if r := refusals(); r == last {
			same++
		} else {
			last, same = r, 0
		}
	}
	check()
	// Meanwhile another client is served.
	if _, err := dialAA(t, d.aaSock).extend(context.Background(), &aapb.ExtendRuntimeMeasurementRequest{Domain: "d", Operation: "o", Content: "good"}); err != nil {
		t.Fatalf("a good client beside the stalled peer: %v", err)
	}
	// The peer reads again: every call is answered, once, refused.
	br := bufio.NewReader(c)
	seen := make(map[uint32]bool, n)
	for i := range n {
		id, code := readAnswer(t, br)
		if code != codes.PermissionDenied || seen[id] || id%2 != 1 || id > 2*n {
			t.Fatalf("answer %d: stream %d, %v (seen before: %v)", i, id, code, seen[id])
		}
		seen[id] = true
		if i%1000 == 0 {
			check()
		}
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if recs := d.records(t); len(recs) != 1 || recs[0].Content != "good" {
		t.Errorf("records %v, want the good one alone", recs)
	}
	t.Logf("%d calls of one peer, at most %d goroutines above base", n, peak)
}

// FuzzRedteam7Frames writes arbitrary bytes, ttrpc frames or not, to the
// agent's socket and reads whatever comes back until the daemon or the
// peer ends the connection: the daemon, which now reads a connection
// frame by frame (meter), neither panics nor stops serving other clients.
func FuzzRedteam7Frames(f *testing.F) {
	req := &aapb.ExtendRuntimeMeasurementRequest{Domain: "ccmr", Operation: "x", Content: "y"}
	f.Add(rawRequest(f, 1, req))
	f.Add(append(rawRequest(f, 1, req), rawRequest(f, 1, req)...))
	f.Add(append(rawRequest(f, 2, req), 0, 0, 0, 0, 0, 0, 0, 3, 3, 4))
	f.Add([]byte{0x00, 0x40, 0x00, 0x01, 0, 0, 0, 1, 1, 0, 1, 2, 3})
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 5, 9, 0, 0})
	d := startDaemon(f, nil)
	good := dialAA(f, d.aaSock)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := net.Dial("unix", d.aaSock)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(b); err != nil {
			t.Logf("write: %v", err)
		}
		c.(*net.UnixConn).CloseWrite()
		io.Copy(io.Discard, c) // until the daemon closes its side
		c.Close()
		if _, err := good.extend(context.Background(), &aapb.ExtendRuntimeMeasurementRequest{Domain: "d", Operation: "o", Content: "good"}); err != nil {
			t.Fatalf("a good client after %x: %v", b, err)
		}
	})
}

// rawCall sends one request whose payload is wire (the agent's message as
// bytes, as a hostile client may write it) and returns the answer's code.
func rawCall(t testing.TB, sock string, wire []byte, md []*ttrpc.KeyValue) codes.Code {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg, err := proto.Marshal(&ttrpc.Request{Service: aattrpc.Service, Method: aattrpc.MethodExtend, Payload: wire, Metadata: md})
	if err != nil {
		t.Fatal(err)
	}
	h := binary.BigEndian.AppendUint32(nil, uint32(len(msg)))
	h = binary.BigEndian.AppendUint32(h, 1)
	h = append(h, 1, 0)
	if _, err := c.Write(append(h, msg...)); err != nil {
		t.Fatal(err)
	}
	_, code := readAnswer(t, c)
	return code
}

// rawSend sends one request as rawCall does and reads its answer; it
// returns an error when the daemon closes the connection instead (reading
// stops at the deadline: a daemon that neither answers nor closes fails).
func rawSend(sock string, wire []byte, md []*ttrpc.KeyValue) error {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	msg, err := proto.Marshal(&ttrpc.Request{Service: aattrpc.Service, Method: aattrpc.MethodExtend, Payload: wire, Metadata: md})
	if err != nil {
		return err
	}
	h := binary.BigEndian.AppendUint32(nil, uint32(len(msg)))
	h = binary.BigEndian.AppendUint32(h, 1)
	h = append(h, 1, 0)
	if _, err := c.Write(append(h, msg...)); err != nil {
		return err
	}
	var hdr [10]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return nil // neither answered nor closed: the test fails
		}
		return err
	}
	return nil
}

// Protobuf edge cases of the request, sent as bytes: a field repeated (the
// last one counts, for the check and for the record alike, so an aa-only
// peer cannot slip an mr_ record past the check behind a harmless first
// domain), unknown fields (ignored, never logged), invalid UTF-8 (refused
// by the decoder), RegisterIndex 2^64-1 (the agent's mapping: RTMR3 on
// TDX, accepted once), 4 MiB of ttrpc metadata (the connection is closed at
// the message's header, as any message over the request limit). Nothing panics; every
// accepted call logs exactly the record that was checked; the register
// follows the log.
func TestRedteam7WireEdgeCases(t *testing.T) {
	pol, err := serve.ParsePolicy([]byte(`{"format":"ccmr-serve-policy/v1","rules":[{"uids":[1002],"aa":["*"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, pol)
	ctx := context.Background()
	str := func(b []byte, n protowire.Number, s string) []byte {
		b = protowire.AppendTag(b, n, protowire.BytesType)
		return protowire.AppendString(b, s)
	}
	zero := "sha384/" + strings.Repeat("00", 48)
	// Domain d, then domain mr_app.bob: the request is an extend of mr_app.bob.
	twice := str(str(str(str(str(nil, 1, "d"), 2, "o"), 3, "c"), 1, "mr_app.bob"), 2, "extend")
	twice = str(twice, 3, zero)
	var req aapb.ExtendRuntimeMeasurementRequest
	if err := proto.Unmarshal(twice, &req); err != nil {
		t.Fatal(err)
	}
	carol := serve.Peer{UID: 1002, GID: 1002, PID: 1}
	before := d.state(t)
	if _, err := d.aa.Extend(ctx, carol, &req); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a repeated domain: %v (request %v), want PermissionDenied", err, &req)
	}
	if after := d.state(t); after.size != before.size || !after.reg.Equal(before.reg) {
		t.Fatal("a refused call wrote")
	}
	// As root over the socket the same bytes extend mr_app.bob, once.
	if code := rawCall(t, d.aaSock, twice, nil); code != codes.OK {
		t.Fatalf("root, repeated domain: %v", code)
	}
	// Unknown fields, a varint and a length-delimited one, are dropped.
	unk := str(str(str(nil, 1, "d"), 2, "o"), 3, "c")
	unk = protowire.AppendVarint(protowire.AppendTag(unk, 99, protowire.VarintType), 7)
	unk = str(unk, 5, "hidden field")
	if code := rawCall(t, d.aaSock, unk, nil); code != codes.OK {
		t.Fatalf("unknown fields: %v", code)
	}
	// Invalid UTF-8 in a proto3 string: the decoder refuses it.
	if code := rawCall(t, d.aaSock, str(str(str(nil, 1, "d\xff"), 2, "o"), 3, "c"), nil); code != codes.InvalidArgument {
		t.Fatalf("invalid UTF-8: %v", code)
	}
	// RegisterIndex 2^64-1.
	maxIdx := protowire.AppendVarint(protowire.AppendTag(str(str(str(nil, 1, "d"), 2, "o"), 3, "max"), 4, protowire.VarintType), 1<<64-1)
	if code := rawCall(t, d.aaSock, maxIdx, nil); code != codes.OK {
		t.Fatalf("RegisterIndex 2^64-1: %v", code)
	}
	// 4 MiB less a little of metadata: a message over the request limit
	// (aael.MaxRecordSize and 64 KiB) closes the connection at its
	// header, before ttrpc allocates it; nothing is written.
	md := []*ttrpc.KeyValue{{Key: "k", Value: strings.Repeat("v", 4<<20-200)}}
	if err := rawSend(d.aaSock, str(str(str(nil, 1, "d"), 2, "o"), 3, "md"), md); err == nil {
		t.Fatal("4 MiB of metadata: answered, want the connection closed")
	}
	// Metadata within the limit is served.
	md = []*ttrpc.KeyValue{{Key: "k", Value: strings.Repeat("v", 32<<10)}}
	if code := rawCall(t, d.aaSock, str(str(str(nil, 1, "d"), 2, "o"), 3, "md"), md); code != codes.OK {
		t.Fatalf("metadata: %v", code)
	}
	var got []string
	for _, r := range d.records(t) {
		got = append(got, r.String())
	}
	want := []string{"mr_app.bob extend " + zero, "d o c", "d o max", "d o md"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("records\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := d.store.Verify(ctx); err != nil {
		t.Error(err)
	}
}

// Clients that leave in the middle of their call (the request written,
// the connection closed before the answer), many at once beside clients
// that wait: each record is either logged and extended or neither, never
// logged twice; the register equals the replay and the quote verifies.
func TestRedteam7DisconnectMidCall(t *testing.T) {
	d := startDaemon(t, nil)
	const n = 200
	done := make(chan error, n)
	// At most 16 at once: one uid holds at most a quarter of the
	// daemon's connections (its further ones are closed at once).
	slots := make(chan struct{}, 16)
	for i := range n {
		req := &aapb.ExtendRuntimeMeasurementRequest{Domain: "d", Operation: "o", Content: "call-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + "-" + string(rune('a'+i/26))}
		wire := rawRequest(t, 1, req)
		go func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			c, err := net.Dial("unix", d.aaSock)
			if err != nil {
				done <- err
				return
			}
			if i%2 == 0 {
				_, err = c.Write(wire)
				c.Close()
				done <- err
				return
			}
			c.Close()
			if c, err = net.Dial("unix", d.aaSock); err != nil {
				done <- err
				return
			}
			tc := ttrpc.NewClient(c)
			defer tc.Close()
			var resp aapb.ExtendRuntimeMeasurementResponse
			done <- tc.Call(context.Background(), aattrpc.Service, aattrpc.MethodExtend, req, &resp)
		}()
	}
	for range n {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for _, r := range d.records(t) {
		if seen[r.Content] {
			t.Fatalf("record %q logged twice", r.Content)
		}
		seen[r.Content] = true
	}
	if len(seen) < n/2 {
		t.Errorf("%d records, want at least the %d of the clients that waited", len(seen), n/2)
	}
	if err := d.store.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	quoteAndVerify(t, d)
}

// A segment that holds agent records alone (no virtual register) is cut
// like any other: the new segment is its INIT entry alone (no snapshot
// record, since no virtual register has a value) and nothing is extended.
// The daemon's quote (archive and new segment) verifies before and after
// the next agent record, and a second cut with nothing new is refused.
// (Found by red team 7: the cut failed, so such a guest could not bound
// its log.)
func TestRedteam7CutOfAgentRecordsAlone(t *testing.T) {
	d := startDaemon(t, nil)
	ctx := context.Background()
	aa := dialAA(t, d.aaSock)
	if _, err := aa.extend(ctx, &aapb.ExtendRuntimeMeasurementRequest{Domain: "d", Operation: "o", Content: "c"}); err != nil {
		t.Fatal(err)
	}
	before := d.state(t)
	r, err := d.http.Cut(ctx)
	if err != nil {
		t.Fatalf("cut of a segment of agent records alone: %v", err)
	}
	if a, err := d.store.Archives(); err != nil || len(a) != 1 || a[0] != r.Archive {
		t.Fatalf("archives %v (%v), want %s", a, err, r.Archive)
	}
	if after := d.state(t); !after.reg.Equal(before.reg) {
		t.Fatal("a cut with nothing to snapshot extended the register")
	}
	if err := d.store.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	quoteAndVerify(t, d)
	if _, err := d.http.Cut(ctx); err == nil {
		t.Fatal("a second cut with nothing new succeeded")
	}
	if _, err := aa.extend(ctx, &aapb.ExtendRuntimeMeasurementRequest{Domain: "d", Operation: "o", Content: "after"}); err != nil {
		t.Fatal(err)
	}
	if err := d.store.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	quoteAndVerify(t, d)
}
