package aattrpc_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/ccmr-dev/ccmr/serve/aattrpc/aapb"
)

// BenchmarkAAExtend is one ttrpc client's ExtendRuntimeMeasurement
// through the daemon, one call at a time (the data hub's pattern);
// compare serve's BenchmarkExtendServe (HTTP) and BenchmarkExtendFloor.
func BenchmarkAAExtend(b *testing.B) {
	d := startDaemon(b, nil)
	c := dialAA(b, d.aaSock)
	ctx := context.Background()
	req := &aapb.ExtendRuntimeMeasurementRequest{Domain: "github.com/confidential-containers", Operation: "PullImage"}
	b.ResetTimer()
	for i := range b.N {
		req.Content = strconv.Itoa(i)
		if _, err := c.extend(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
