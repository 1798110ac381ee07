package ima

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/ccmr-dev/ccmr/internal/imatest"
)

func aggregateOf(t *testing.T, specs []imatest.Spec) string {
	t.Helper()
	d, _, err := Aggregate(context.Background(), NewBinaryReader(bytes.NewReader(imatest.Binary(specs, binary.LittleEndian)), Options{}), -1)
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// Two lists with the same files in different orders have the same
// aggregate; one more file, or one changed file, changes it.
func TestAggregateOrderIndependent(t *testing.T) {
	var specs []imatest.Spec
	for i := 0; i < 50; i++ {
		specs = append(specs, imatest.NG(i))
	}
	base := aggregateOf(t, specs)
	shuffled := append([]imatest.Spec(nil), specs...)
	rand.New(rand.NewPCG(7, 9)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	if got := aggregateOf(t, shuffled); got != base {
		t.Fatalf("shuffled list: %s, want %s", got, base)
	}
	// A file measured twice counts once.
	if got := aggregateOf(t, append(append([]imatest.Spec(nil), shuffled...), specs[3])); got != base {
		t.Fatal("a repeated measurement changed the aggregate")
	}
	if got := aggregateOf(t, append(append([]imatest.Spec(nil), specs...), imatest.NG(50))); got == base {
		t.Fatal("one more file did not change the aggregate")
	}
	changed := append([]imatest.Spec(nil), specs...)
	changed[10].Name += ".new"
	if got := aggregateOf(t, changed); got == base {
		t.Fatal("a changed file did not change the aggregate")
	}
}
