package tpm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// DefaultDevice is the TPM opened when the spec names none: the kernel's
// resource-managed TPM device.
const DefaultDevice = "/dev/tpmrm0"

// DefaultTimeout bounds every TPM command unless WithTimeout says otherwise.
// RSA key generation on a slow TPM is the longest operation ccmr asks for.
const DefaultTimeout = 30 * time.Second

// maxResponse is the largest TPM response accepted (TPM responses are a few
// KiB; the PC Client profile's maximum buffer is 4 KiB).
const maxResponse = 1 << 16

// ErrNeedsLinux: a TPM device node is opened through the Linux driver only;
// on another system use a simulator at tcp://HOST:PORT or unix:PATH.
var ErrNeedsLinux = errors.New("a TPM device node needs Linux (a simulator at tcp://HOST:PORT or unix:PATH works anywhere)")

// ErrTimeout is returned (wrapped, together with os.ErrDeadlineExceeded or
// context.DeadlineExceeded) when the TPM does not answer a command in time.
// The connection is unusable afterwards: the TPM may still answer late.
var ErrTimeout = errors.New("TPM did not answer")

// ErrClosed is returned for commands on a closed or broken connection.
var ErrClosed = errors.New("TPM connection closed")

// stream is what a TPM connection is made of: a device file or a socket.
type stream interface {
	io.ReadWriteCloser
	SetDeadline(time.Time) error
}

// conn is a go-tpm transport.TPM that sends one command at a time over a
// stream, with a deadline on every command. go-tpm's own transports have no
// deadlines, and its tcp transport speaks the Microsoft simulator framing,
// which swtpm's --server port does not (swtpm takes the raw command stream
// there, like a device file), so this small transport is written here.
type conn struct {
	s       stream
	what    string // for messages: "/dev/tpmrm0", "tcp://127.0.0.1:2321"
	timeout time.Duration
	// deadlineOK is false for streams without deadline support (some
	// device files); then the command runs in a goroutine and is abandoned
	// on timeout.
	deadlineOK bool

	mu     sync.Mutex
	ctx    context.Context // of the current operation; set by Device.op
	broken error
}

// dial opens the stream a spec names. spec has no "tpm:" prefix.
func dial(ctx context.Context, spec string, timeout time.Duration) (*conn, error) {
	if spec == "" {
		spec = DefaultDevice
		if _, err := os.Stat(DefaultDevice); errors.Is(err, os.ErrNotExist) {
			if _, err := os.Stat("/dev/tpm0"); err == nil {
				spec = "/dev/tpm0" // no kernel resource manager; ccmr flushes what it loads
			}
		}
	}
	c := &conn{what: spec, timeout: timeout, deadlineOK: true}
	switch {
	case strings.HasPrefix(spec, "tcp://"):
		addr := strings.TrimPrefix(spec, "tcp://")
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("tpm: device %q: want tcp://HOST:PORT: %v", spec, err)
		}
		d := net.Dialer{Timeout: timeout}
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("tpm: connecting to %s: %w", spec, err)
		}
		c.s = nc
	case strings.HasPrefix(spec, "unix:"):
		path := strings.TrimPrefix(strings.TrimPrefix(spec, "unix:"), "//")
		d := net.Dialer{Timeout: timeout}
		nc, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			return nil, fmt.Errorf("tpm: connecting to %s: %w", spec, err)
		}
		c.s = nc
	default:
		fi, err := os.Stat(spec)
		if err != nil {
			return nil, fmt.Errorf("tpm: %w", err)
		}
		if fi.Mode()&os.ModeSocket != 0 {
			return dial(ctx, "unix:"+spec, timeout)
		}
		if fi.Mode()&os.ModeDevice == 0 {
			return nil, fmt.Errorf("tpm: %s is not a device (mode %v); for a simulator use tcp://HOST:PORT or unix:PATH", spec, fi.Mode())
		}
		f, err := openDeviceNode(spec)
		if err != nil {
			return nil, fmt.Errorf("tpm: %s: %w", spec, err)
		}
		c.s = f
		c.deadlineOK = false
	}
	return c, nil
}

// Send implements go-tpm's transport.TPM.
func (c *conn) Send(cmd []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return nil, c.broken
	}
	ctx := c.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tpm: %s: %w", c.what, err)
	}
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if c.deadlineOK {
		return c.sendDeadline(ctx, cmd, deadline)
	}
	return c.sendAbandon(ctx, cmd, deadline)
}

func (c *conn) sendDeadline(ctx context.Context, cmd []byte, deadline time.Time) ([]byte, error) {
	if err := c.s.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("tpm: %s: setting deadline: %w", c.what, err)
	}
	// Cancelling ctx moves the deadline to now, which unblocks I/O.
	stop := context.AfterFunc(ctx, func() { c.s.SetDeadline(time.Unix(1, 0)) })
	rsp, err := roundTrip(c.s, cmd)
	stop()
	if err != nil {
		return nil, c.fail(ctx, err, deadline)
	}
	return rsp, nil
}

func (c *conn) sendAbandon(ctx context.Context, cmd []byte, deadline time.Time) ([]byte, error) {
	type result struct {
		rsp []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		rsp, err := roundTrip(c.s, cmd)
		ch <- result{rsp, err}
	}()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, c.fail(ctx, r.err, deadline)
		}
		return r.rsp, nil
	case <-t.C:
		return nil, c.fail(ctx, os.ErrDeadlineExceeded, deadline)
	case <-ctx.Done():
		return nil, c.fail(ctx, ctx.Err(), deadline)
	}
}

// fail marks the connection broken (a late answer would be read as the
// answer to the next command) and builds the error.
func (c *conn) fail(ctx context.Context, err error, deadline time.Time) error {
	var out error
	switch {
	case ctx.Err() != nil:
		out = fmt.Errorf("tpm: %s: %w", c.what, ctx.Err())
	case errors.Is(err, os.ErrDeadlineExceeded) && ctxDeadlineFirst(ctx, deadline):
		out = fmt.Errorf("tpm: %s: %w before the context's deadline: %w", c.what, ErrTimeout, context.DeadlineExceeded)
	case errors.Is(err, os.ErrDeadlineExceeded):
		out = fmt.Errorf("tpm: %s: %w within %v: %w", c.what, ErrTimeout, c.timeout.Round(time.Millisecond), os.ErrDeadlineExceeded)
	default:
		out = fmt.Errorf("tpm: %s: %w", c.what, err)
	}
	c.broken = fmt.Errorf("%w after an earlier failure (%v)", ErrClosed, out)
	return out
}

// ctxDeadlineFirst reports whether ctx's deadline is the one that expired.
func ctxDeadlineFirst(ctx context.Context, deadline time.Time) bool {
	d, ok := ctx.Deadline()
	return ok && !d.After(deadline)
}

// roundTrip writes one command and reads one response. A device file
// returns the whole response to one read; a socket may deliver it in pieces,
// so reading continues until the size in the response header has arrived.
func roundTrip(s stream, cmd []byte) ([]byte, error) {
	if _, err := s.Write(cmd); err != nil {
		return nil, fmt.Errorf("sending command: %w", err)
	}
	buf := make([]byte, 4096)
	n := 0
	want := 10 // response header: tag, size, code
	for n < want {
		if n == len(buf) {
			buf = append(buf, make([]byte, len(buf))...)
		}
		m, err := s.Read(buf[n:])
		n += m
		if n >= 10 && want == 10 {
			want = int(binary.BigEndian.Uint32(buf[2:6]))
			if want < 10 || want > maxResponse {
				return nil, fmt.Errorf("%w: response header claims %d bytes", ErrBadResponse, want)
			}
			for len(buf) < want {
				buf = append(buf, make([]byte, len(buf))...)
			}
		}
		if err != nil {
			if n >= want {
				break
			}
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("reading response: connection closed after %d of %d bytes: %w", n, want, io.ErrUnexpectedEOF)
			}
			return nil, fmt.Errorf("reading response: %w", err)
		}
	}
	if n > want {
		return nil, fmt.Errorf("%w: %d bytes after a %d-byte response", ErrBadResponse, n-want, want)
	}
	return buf[:want], nil
}

// ErrBadResponse: the TPM's answer is not a well-formed response.
var ErrBadResponse = errors.New("malformed TPM response")

func (c *conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken == nil {
		c.broken = ErrClosed
	}
	return c.s.Close()
}
