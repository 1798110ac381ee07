package verifier

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/internal/imatest"
	"github.com/ccmr-dev/ccmr/vmr"
)

// feedGuest forwards an n-entry list (more than one chunk of the feed).
func feedGuest(t *testing.T, n int) (*guest, []byte) {
	g := newGuest(t)
	var lb bytes.Buffer
	if _, err := imatest.WriteBinary(&lb, n, binary.LittleEndian, imatest.NG); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g.list, lb.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := g.s.Forward(context.Background(), vmr.ForwardOptions{List: g.list}); err != nil {
		t.Fatal(err)
	}
	return g, lb.Bytes()
}

// An entry changed beyond the first chunk of records is named by its
// index and record number over the whole list, as one replay would.
func TestIMAFeedNamesEntryPastFirstChunk(t *testing.T) {
	n, bad := 2*recordChunk+100, recordChunk+7
	g, list := feedGuest(t, n)
	b := g.quote(false)
	rep := verifyT(t, b, g.opts())
	if !rep.Trusted || !strings.Contains(reportText(rep), fmt.Sprintf("%d IMA entries match the %d records of mr_ima", n, n)) {
		t.Fatalf("the honest list:\n%s", reportText(rep))
	}
	es := imaEntries(t, list)
	es[bad] = bytes.Clone(es[bad])
	es[bad][len(es[bad])-1] ^= 0x01 // the last byte of its file name
	for i := range b.Logs {
		if b.Logs[i].Format == "ima-binary" {
			b.Logs[i] = bundle.Log{Format: "ima-binary", Data: join(es)}
		}
	}
	rep = verifyT(t, b, g.opts())
	f := rep.Layers[LayerApp].Failure
	if rep.Trusted || f == nil || f.Record != bad || !strings.HasSuffix(f.Reason, fmt.Sprintf("does not match mr_ima record %d", bad)) {
		t.Fatalf("want entry %d named, got:\n%s", bad, reportText(rep))
	}
}

// A list shorter than mr_ima's records, by more than a chunk: the first
// record without an entry is named over the whole list.
func TestIMAFeedNamesMissingEntryPastFirstChunk(t *testing.T) {
	n, keep := 2*recordChunk+100, recordChunk+50
	g, list := feedGuest(t, n)
	b := g.quote(false)
	es := imaEntries(t, list)
	for i := range b.Logs {
		if b.Logs[i].Format == "ima-binary" {
			b.Logs[i] = bundle.Log{Format: "ima-binary", Data: join(es[:keep])}
		}
	}
	rep := verifyT(t, b, g.opts())
	f := rep.Layers[LayerApp].Failure
	if rep.Trusted || f == nil || f.Record != keep || !strings.Contains(f.Reason, fmt.Sprintf("record %d has no IMA entry (the list has %d entries)", keep, keep)) {
		t.Fatalf("want record %d named, got:\n%s", keep, reportText(rep))
	}
}
