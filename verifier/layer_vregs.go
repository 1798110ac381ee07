package verifier

import (
	"context"
	"fmt"
	"sort"

	"github.com/ccmr-dev/ccmr/mr"
)

// ---- layer 2: virtual registers ------------------------------------------

func (r *run) virtualRegs(ctx context.Context, l *LayerResult) error {
	names := make([]string, 0, len(r.virtual))
	for n := range r.virtual {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		l.Checked = append(l.Checked, fmt.Sprintf("%s = %v (%d records)", n, r.virtual[n], r.counts[n]))
	}
	for _, c := range r.b.Registers {
		if !mr.IsVirtualName(c.Name) {
			continue
		}
		got, ok := r.virtual[c.Name]
		if !ok {
			return &failError{&Failure{Record: -1, Register: c.Name, Computed: c.Digest.String(), Reason: "claimed virtual register has no records in any trusted runtime log"}}
		}
		if !got.Equal(c.Digest) {
			return &failError{&Failure{Record: -1, Register: c.Name, Expected: got.String(), Computed: c.Digest.String(), Reason: "claimed virtual register value differs from the one derived from the runtime log"}}
		}
	}
	if len(names) == 0 {
		l.NotChecked = append(l.NotChecked, "no virtual registers")
	}
	return nil
}
