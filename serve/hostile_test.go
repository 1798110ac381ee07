package serve_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/ccmr-dev/ccmr/serve"
)

// Clients that stall mid-request, send 1 GB, send garbage or disconnect
// mid-request harm no other client: a well-behaved client's extends all
// succeed meanwhile, the big body is cut off after MaxRequestBody (the
// daemon answers 413 and stops reading long before 1 GB), and nothing the
// hostile clients sent reaches the log.
func TestHostileClients(t *testing.T) {
	d := startDaemon(t, nil, 0o600)
	ctx := context.Background()
	sizeBefore := logSize(t, d)

	// Stalled: half a request line, then nothing (held open to the end).
	stalled := rawConn(t, d.sock)
	if _, err := io.WriteString(stalled, "POST /v1/extend HTTP/1.1\r\nHost: ccmr\r\nContent-Length: 100\r\n\r\n{\"regis"); err != nil {
		t.Fatal(err)
	}
	stalled2 := rawConn(t, d.sock)
	io.WriteString(stalled2, "GET /v1/hea")

	var wg sync.WaitGroup
	// 1 GB body: the daemon must answer 413 and close, not read it all.
	var sent int64
	var bigAnswer string
	wg.Go(func() {
		c := rawConn(t, d.sock)
		fmt.Fprintf(c, "POST /v1/extend HTTP/1.1\r\nHost: ccmr\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"register\":\"mr_big\",\"data\":\"", 1<<30)
		chunk := bytes.Repeat([]byte("A"), 1<<20)
		for sent < 1<<30 {
			n, err := c.Write(chunk)
			sent += int64(n)
			if err != nil {
				break
			}
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			bigAnswer = resp.Status
			resp.Body.Close()
		} else {
			bigAnswer = err.Error()
		}
	})
	// Garbage: random bytes, then a well-formed line of nonsense.
	wg.Go(func() {
		c := rawConn(t, d.sock)
		junk := make([]byte, 64<<10)
		rand.Read(junk)
		c.Write(junk)
		c.Write([]byte("\r\n\r\nNOT HTTP AT ALL\r\n\r\n"))
		io.Copy(io.Discard, c)
	})
	// Disconnect mid-body.
	wg.Go(func() {
		for range 20 {
			c := rawConn(t, d.sock)
			io.WriteString(c, "POST /v1/extend HTTP/1.1\r\nHost: ccmr\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"register\":\"mr_gone\",\"digest\":\"sha384:")
			c.Close()
		}
	})
	// The well-behaved client.
	const good = 100
	wg.Go(func() {
		for i := range good {
			if _, err := d.cl.Extend(ctx, "mr_good", digestOf(1, i)); err != nil {
				t.Errorf("well-behaved extend %d: %v", i, err)
				return
			}
		}
	})
	wg.Wait()

	if sent >= 1<<30 {
		t.Errorf("the daemon read the whole 1 GB body")
	}
	if !strings.HasPrefix(bigAnswer, "413") && !strings.Contains(bigAnswer, "reset") && !strings.Contains(bigAnswer, "EOF") {
		t.Errorf("1 GB body answered %q, want 413 or a closed connection", bigAnswer)
	}
	t.Logf("1 GB client: %d MiB written before the daemon stopped reading; answer %s", sent>>20, bigAnswer)
	if n, err := d.store.Records(ctx, "mr_good"); err != nil || n != good {
		t.Errorf("mr_good: %d records (%v), want %d", n, err, good)
	}
	for _, name := range []string{"mr_big", "mr_gone"} {
		if n, _ := d.store.Records(ctx, name); n != 0 {
			t.Errorf("%s: %d records from a hostile client", name, n)
		}
	}
	if got, want := logSize(t, d), sizeBefore; got <= want {
		t.Errorf("log did not grow: %d", got)
	}
	if err := d.store.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}

func logSize(t *testing.T, d *daemon) int64 {
	t.Helper()
	fi, err := os.Stat(d.store.Path())
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// Bad requests get 4xx and write nothing: the log keeps its size.
func TestBadRequests(t *testing.T) {
	d := startDaemon(t, nil, 0o600)
	ctx := context.Background()
	if _, err := d.cl.Extend(ctx, "mr_x", digestOf(0, 0)); err != nil {
		t.Fatal(err)
	}
	size := logSize(t, d)
	zero48 := "sha384:" + strings.Repeat("00", 48)
	for _, tc := range []struct {
		name, method, path, ctype, body string
		want                            int
	}{
		{"not JSON", "POST", "/v1/extend", "", "register=mr_x", 400},
		{"unknown member", "POST", "/v1/extend", "", `{"register":"mr_x","digest":"` + zero48 + `","force":true}`, 400},
		{"member twice", "POST", "/v1/extend", "", `{"register":"mr_x","register":"mr_y","digest":"` + zero48 + `"}`, 400},
		{"member in another case", "POST", "/v1/extend", "", `{"Register":"mr_x","digest":"` + zero48 + `"}`, 400},
		{"trailing data", "POST", "/v1/extend", "", `{"register":"mr_x","digest":"` + zero48 + `"} {}`, 400},
		{"both digest and data", "POST", "/v1/extend", "", `{"register":"mr_x","digest":"` + zero48 + `","data":"AA=="}`, 400},
		{"neither", "POST", "/v1/extend", "", `{"register":"mr_x"}`, 400},
		{"bad digest", "POST", "/v1/extend", "", `{"register":"mr_x","digest":"sha384:zz"}`, 400},
		{"short digest", "POST", "/v1/extend", "", `{"register":"mr_x","digest":"sha384:00"}`, 400},
		{"other algorithm", "POST", "/v1/extend", "", `{"register":"mr_x","digest":"sha256:` + strings.Repeat("00", 32) + `"}`, 400},
		{"bad base64", "POST", "/v1/extend", "", `{"register":"mr_x","data":"!!"}`, 400},
		{"bad name", "POST", "/v1/extend", "", `{"register":"mr_X/../y","digest":"` + zero48 + `"}`, 400},
		{"name with a newline", "POST", "/v1/extend", "", `{"register":"mr_a\nmr_b extend","digest":"` + zero48 + `"}`, 400},
		{"unknown real register", "POST", "/v1/extend", "", `{"register":"pcr99","digest":"` + zero48 + `"}`, 404},
		{"read-only register", "POST", "/v1/extend", "", `{"register":"mrtd","digest":"` + zero48 + `"}`, 400},
		{"backing register", "POST", "/v1/extend", "", `{"register":"rtmr3","digest":"` + zero48 + `"}`, 403},
		{"wrong content type", "POST", "/v1/extend", "text/plain", `{"register":"mr_x","digest":"` + zero48 + `"}`, 415},
		{"content type with parameters, bad body", "POST", "/v1/extend", "application/json; charset=utf-8", `{"register":"mr_x"}`, 400},
		{"too big", "POST", "/v1/extend", "", `{"register":"mr_x","data":"` + strings.Repeat("A", serve.MaxRequestBody) + `"}`, 413},
		{"data too big", "POST", "/v1/extend", "", `{"register":"mr_x","data":"` + strings.Repeat("A", serve.MaxData*4/3+8) + `"}`, 413},
		{"GET extend", "GET", "/v1/extend", "", "", 405},
		{"no such path", "GET", "/v1/nothing", "", "", 404},
		{"quote without nonce", "POST", "/v1/quote", "", `{}`, 400},
		{"quote nonce too long", "POST", "/v1/quote", "", `{"nonce":"` + strings.Repeat("00", serve.MaxNonce+1) + `"}`, 400},
		{"read unknown virtual", "GET", "/v1/registers/mr_nothing", "", "", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := rawConn(t, d.sock)
			ct := tc.ctype
			if ct == "" {
				ct = "application/json"
			}
			fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: ccmr\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", tc.method, tc.path, ct, len(tc.body), tc.body)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if got := logSize(t, d); got != size {
				t.Errorf("log grew from %d to %d bytes", size, got)
			}
		})
	}
}
