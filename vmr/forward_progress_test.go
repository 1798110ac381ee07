package vmr

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/internal/imatest"
)

// ForwardOptions.Progress is told of the list bytes read: the whole list on
// a first pass, only what was appended on the next.
func TestForwardProgress(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	_, s := openSim(t, dir)
	list := filepath.Join(dir, "ima.bin")
	data := realList(t)
	if err := os.WriteFile(list, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var read int64
	opts := ForwardOptions{List: list, Progress: func(n int64) { read += n }}
	if _, err := s.Forward(ctx, opts); err != nil {
		t.Fatal(err)
	}
	if read != int64(len(data)) {
		t.Fatalf("progress told of %d bytes, the list has %d", read, len(data))
	}
	extra := imatest.Binary([]imatest.Spec{imatest.NG(1)}, binary.LittleEndian)
	appendFile(t, list, extra)
	read = 0
	if n, err := s.Forward(ctx, opts); err != nil || n != 1 {
		t.Fatalf("Forward after append = %d, %v", n, err)
	}
	if read != int64(len(extra)) {
		t.Fatalf("progress told of %d bytes, %d were appended", read, len(extra))
	}
}
