package aattrpc_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ccmr-dev/ccmr/serve"
	"github.com/ccmr-dev/ccmr/serve/aattrpc/aapb"
)

// FuzzExtend sends the agent's request, as its wire bytes, through the
// method's handling (unmarshal, checks, authorization as root, write):
// an accepted call appends exactly the record asked for and the register
// follows the log; a refused one writes nothing. Nothing panics.
func FuzzExtend(f *testing.F) {
	for _, r := range []*aapb.ExtendRuntimeMeasurementRequest{
		{Domain: "github.com/confidential-containers", Operation: "PullImage", Content: `{"image":"a", "digest":"b"}`},
		{Domain: "mr_app.x", Operation: "extend", Content: "sha384/000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"},
		{Domain: "ccmr", Operation: "snapshot", Content: "mr_app.x=sha384/00"},
		{Domain: "d", Operation: "o", Content: "c\n", RegisterIndex: proto.Uint64(17)},
		{Domain: "d", Operation: "o", Content: "c", RegisterIndex: proto.Uint64(8)},
	} {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	d := startDaemon(f, nil)
	root := serve.Peer{UID: 0, Admin: true, PID: 1}
	f.Fuzz(func(t *testing.T, wire []byte) {
		var req aapb.ExtendRuntimeMeasurementRequest
		if proto.Unmarshal(wire, &req) != nil {
			return // ttrpc answers InvalidArgument before the method runs
		}
		before := d.state(t)
		n := len(d.records(t))
		_, err := d.aa.Extend(context.Background(), root, &req)
		after := d.state(t)
		if err != nil {
			if c := status.Code(err); c != codes.InvalidArgument && c != codes.PermissionDenied {
				t.Fatalf("code %v: %v", c, err)
			}
			if after.size != before.size || !after.reg.Equal(before.reg) {
				t.Fatalf("refused call (%v) wrote", err)
			}
			return
		}
		recs := d.records(t)
		if len(recs) != n+1 {
			t.Fatalf("%d records after an accepted call, want %d", len(recs), n+1)
		}
		if r := recs[n]; r.Domain != req.Domain || r.Operation != req.Operation || r.Content != req.Content {
			t.Fatalf("logged %q, asked %q %q %q", r, req.Domain, req.Operation, req.Content)
		}
		if after.reg.Equal(before.reg) {
			t.Fatal("accepted call did not extend the register")
		}
		if err := d.store.Verify(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}
