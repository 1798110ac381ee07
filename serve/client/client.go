// Package client talks to a `ccmr serve` daemon over its Unix socket
// (docs/openapi-serve.yaml): for agents that extend, read and quote
// without being root or linking the store.
package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"

	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/serve"
)

// maxResponse bounds a JSON answer (a list of every virtual register).
const maxResponse = 16 << 20

// Client is a connection pool to one daemon. It is safe for concurrent use.
type Client struct {
	socket string
	hc     *http.Client
}

// Error is an answer of the daemon other than 200.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("ccmr serve: %d: %s", e.Status, e.Message) }

// ErrForbidden is wrapped by an Error with status 403: the daemon's policy
// refused the call and wrote nothing.
var ErrForbidden = errors.New("refused by the daemon's policy")

// ErrNotFound is wrapped by an Error with status 404.
var ErrNotFound = mr.ErrUnknownRegister

// Unwrap maps statuses to sentinel errors.
func (e *Error) Unwrap() error {
	switch e.Status {
	case http.StatusForbidden:
		return ErrForbidden
	case http.StatusNotFound:
		return ErrNotFound
	}
	return nil
}

// ErrUntrustedServer is returned when the process answering on the socket
// runs as a user the client was not told to trust (Option ServerUIDs).
var ErrUntrustedServer = errors.New("the process on the socket runs as an untrusted user")

// Option configures a Client.
type Option func(*options)

type options struct {
	serverUIDs []uint32
}

// ServerUIDs makes the client check, on every connection, that the process
// listening on the socket runs as one of uids (SO_PEERCRED). A client that
// found the socket by itself, rather than being given it, needs this: a
// program of another user that bound the path would otherwise receive its
// extends and answer its reads. On systems without SO_PEERCRED every
// connection then fails.
func ServerUIDs(uids ...uint32) Option {
	return func(o *options) { o.serverUIDs = append(o.serverUIDs, uids...) }
}

// New returns a client of the daemon listening on socket.
func New(socket string, opts ...Option) *Client {
	var o options
	for _, f := range opts {
		f(&o)
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", socket)
			if err != nil || o.serverUIDs == nil {
				return c, err
			}
			uid, err := serverUID(c)
			if err != nil {
				c.Close()
				return nil, fmt.Errorf("%s: who listens: %w", socket, err)
			}
			if !slices.Contains(o.serverUIDs, uid) {
				c.Close()
				return nil, fmt.Errorf("%s: uid %d: %w", socket, uid, ErrUntrustedServer)
			}
			return c, nil
		},
		MaxIdleConnsPerHost: 64,
	}
	return &Client{socket: socket, hc: &http.Client{Transport: tr}}
}

// Socket is the path of the daemon's socket.
func (c *Client) Socket() string { return c.socket }

// Close closes idle connections.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

func (c *Client) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://ccmr"+path, r)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ccmr serve %s: %w", c.socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var e serve.ErrorResponse
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = http.StatusText(resp.StatusCode)
		}
		return nil, &Error{Status: resp.StatusCode, Message: e.Error}
	}
	return resp, nil
}

func (c *Client) values(ctx context.Context, method, path string, body any) ([]serve.Value, error) {
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var v serve.ValuesResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponse)).Decode(&v); err != nil {
		return nil, fmt.Errorf("ccmr serve %s: answer: %w", c.socket, err)
	}
	return v.Values, nil
}

// Extend extends register name (virtual: mr_…, or real) with d and
// returns the register's values after it.
func (c *Client) Extend(ctx context.Context, name string, d mr.Digest) ([]serve.Value, error) {
	return c.values(ctx, http.MethodPost, "/v1/extend", serve.ExtendRequest{Register: name, Digest: d.String()})
}

// ExtendData extends register name with the hash of data (sha384 for a
// virtual register; each bank's own for a real one).
func (c *Client) ExtendData(ctx context.Context, name string, data []byte) ([]serve.Value, error) {
	return c.values(ctx, http.MethodPost, "/v1/extend", serve.ExtendRequest{Register: name, Data: base64.StdEncoding.EncodeToString(data)})
}

// Read returns the values of one register (virtual or real).
func (c *Client) Read(ctx context.Context, name string) ([]serve.Value, error) {
	return c.values(ctx, http.MethodGet, "/v1/registers/"+url.PathEscape(name), nil)
}

// List returns every virtual register with its value.
func (c *Client) List(ctx context.Context) ([]serve.Value, error) {
	return c.values(ctx, http.MethodGet, "/v1/registers", nil)
}

// Quote writes an evidence bundle (ccmr-evidence/v2) for nonce to w.
func (c *Client) Quote(ctx context.Context, nonce []byte, w io.Writer) error {
	resp, err := c.do(ctx, http.MethodPost, "/v1/quote", serve.QuoteRequest{Nonce: hex.EncodeToString(nonce)})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("ccmr serve %s: quote: %w", c.socket, err)
	}
	return nil
}

// Cut archives the runtime log's segment and starts a new one (as `ccmr
// log cut` does); it returns the archive's path and the log's. A log with
// no record since its segment started answers 409.
func (c *Client) Cut(ctx context.Context) (*serve.CutResponse, error) {
	resp, err := c.do(ctx, http.MethodPost, "/v1/cut", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r serve.CutResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponse)).Decode(&r); err != nil {
		return nil, fmt.Errorf("ccmr serve %s: cut: %w", c.socket, err)
	}
	return &r, nil
}

// Health returns the daemon's health answer.
func (c *Client) Health(ctx context.Context) (*serve.HealthResponse, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/health", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var h serve.HealthResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponse)).Decode(&h); err != nil {
		return nil, fmt.Errorf("ccmr serve %s: health: %w", c.socket, err)
	}
	return &h, nil
}
