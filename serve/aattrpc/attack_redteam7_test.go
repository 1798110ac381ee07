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
	"google.golang.org/protobuf/proto"

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
