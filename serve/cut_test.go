package serve_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/ccmr-dev/ccmr/serve/client"

	"github.com/ccmr-dev/ccmr/vmr"
)

// A segment cut by another process (`ccmr log cut`) while the daemon
// runs: the daemon's next extends go to the new segment, and its quote
// (archive and new segment) verifies, proving every record.
func TestCutWhileServing(t *testing.T) {
	d := startDaemon(t, nil, 0o600)
	ctx := context.Background()
	for i := range 3 {
		if _, err := d.cl.Extend(ctx, "mr_cut", digestOf(5, i)); err != nil {
			t.Fatal(err)
		}
	}
	other, err := vmr.Open(ctx, d.dev, vmr.Options{Dir: filepath.Join(d.dir, "log")})
	if err != nil {
		t.Fatal(err)
	}
	archive, err := other.Cut(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	for i := 3; i < 6; i++ {
		if _, err := d.cl.Extend(ctx, "mr_cut", digestOf(5, i)); err != nil {
			t.Fatalf("extend after the cut: %v", err)
		}
	}
	rep := quoteAndVerify(t, d)
	found := false
	for _, v := range rep.Proven.Virtual {
		if v.Name == "mr_cut" {
			found = true
			if want := fold(5, 6); !v.Digest.Equal(want) {
				t.Errorf("mr_cut proven %s, want %s", v.Digest, want)
			}
		}
	}
	if !found {
		t.Errorf("mr_cut not proven (archive %s)", archive)
	}
}

// A cut through the API (POST /v1/cut): the archive holds the records
// before it, the daemon's next extends go to the new segment, the quote
// verifies. A cut of a log with no record is 409 and archives nothing; a
// body is refused with 400.
func TestCutThroughAPI(t *testing.T) {
	d := startDaemon(t, nil, 0o600)
	ctx := context.Background()
	_, err := d.cl.Cut(ctx)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusConflict {
		t.Errorf("a cut of an empty log: %v, want 409", err)
	}
	if a, _ := d.store.Archives(); len(a) != 0 {
		t.Errorf("archives %v after the refused cut, want none", a)
	}
	for i := range 3 {
		if _, err := d.cl.Extend(ctx, "mr_cut", digestOf(6, i)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := d.cl.Cut(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Log != d.store.Path() || filepath.Dir(r.Archive) != filepath.Dir(r.Log) {
		t.Errorf("cut answered %+v; the log is %s", r, d.store.Path())
	}
	if a, _ := d.store.Archives(); len(a) != 1 {
		t.Errorf("archives %v, want one", a)
	}
	for i := 3; i < 5; i++ {
		if _, err := d.cl.Extend(ctx, "mr_cut", digestOf(6, i)); err != nil {
			t.Fatal(err)
		}
	}
	rep := quoteAndVerify(t, d)
	found := false
	for _, v := range rep.Proven.Virtual {
		if v.Name == "mr_cut" {
			found = v.Digest.Equal(fold(6, 5))
		}
	}
	if !found {
		t.Errorf("mr_cut not proven at its value after the cut")
	}
	c := rawConn(t, d.sock)
	fmt.Fprintf(c, "POST /v1/cut HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("cut with a body: %d, want 400", resp.StatusCode)
	}
	if a, _ := d.store.Archives(); len(a) != 1 {
		t.Errorf("archives after the refused cut %v, want one", a)
	}
}
