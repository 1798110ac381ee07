package aattrpc

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccmr-dev/ccmr/eventlog/aael"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/serve"
	"github.com/ccmr-dev/ccmr/serve/aattrpc/aapb"
	"github.com/ccmr-dev/ccmr/vmr"
)

// The agent's names on the wire.
const (
	// Service is the ttrpc service name: the proto package and service.
	Service = "attestation_agent.AttestationAgentService"
	// MethodExtend is the one method served.
	MethodExtend = "ExtendRuntimeMeasurement"
	// DefaultSocket is where CoCo clients look for the agent
	// (guest-components ttrpc-aa.rs, the data hub's aa_socket default).
	DefaultSocket = "/run/confidential-containers/attestation-agent/attestation-agent.sock"
	// DefaultPCR is the agent's default RegisterIndex (eventlog_config.init_pcr).
	DefaultPCR = 17
)

// Config is what a Server serves.
type Config struct {
	// Store holds the runtime log and its backing register.
	Store *vmr.Store
	// Policy authorizes peers, as for the HTTP API; nil admits root alone.
	Policy *serve.Policy
	// Logger receives refusals and failures (nil: slog.Default()).
	Logger *slog.Logger
	// MaxConns overrides serve.DefaultMaxConns when positive (one uid
	// holds at most a quarter of them).
	MaxConns int
}

// Server answers ExtendRuntimeMeasurement on the sockets it serves.
type Server struct {
	cfg Config
	log *slog.Logger
}

// New builds a Server.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s
}

// Serve serves l until ctx ends, then stops accepting, lets the calls in
// flight finish (for up to serve.WriteTimeout), closes the connections and
// returns.
//
// ttrpc hands a method neither its connection nor its peer, so each
// connection gets a ttrpc server of its own whose method knows the peer
// identified when it was accepted.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	l = serve.LimitListener(l, s.cfg.MaxConns)
	outer := ctx
	// Returning for any reason shuts the connections down first: wait
	// for them only after cancel (defers run last first).
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if outer.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of descriptors and the like: wait, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
				}
				continue
			}
			return err
		}
		backoff = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c)
		}()
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// serveConn serves one connection until it closes or ctx ends.
func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	peer, perr := serve.PeerOf(c)
	ts, err := ttrpc.NewServer()
	if err != nil {
		s.log.Error("aa: ttrpc server", "err", err)
		c.Close()
		return
	}
	ts.RegisterService(Service, &ttrpc.ServiceDesc{Methods: map[string]ttrpc.Method{
		MethodExtend: func(ctx context.Context, unmarshal func(any) error) (any, error) {
			var req aapb.ExtendRuntimeMeasurementRequest
			if err := unmarshal(&req); err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "request: %v", err)
			}
			if perr != nil {
				s.log.Warn("refused: peer unknown", "op", serve.OpAA.String(), "domain", clipDomain(req.Domain), "err", perr)
				return nil, status.Error(codes.PermissionDenied, "peer cannot be identified")
			}
			return s.Extend(ctx, peer, &req)
		},
	}})
	one := newConnListener(c)
	go func() {
		select {
		case <-ctx.Done():
		case <-one.gone:
			return
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), serve.WriteTimeout)
		defer cancel()
		if ts.Shutdown(sctx) != nil {
			ts.Close()
		}
		// Through the tracked conn: when ttrpc never took it (Shutdown
		// came first), this is what ends the wait below.
		one.c.Close()
	}()
	// The calls' contexts end with their connection or their own
	// timeout, not with the daemon's: Shutdown lets them finish.
	_ = ts.Serve(context.WithoutCancel(ctx), one)
	<-one.gone
}

// connListener hands out one connection, then blocks until that
// connection is closed (by ttrpc when the peer leaves, or by shutdown)
// and reports itself closed, which ends ttrpc's Serve.
type connListener struct {
	c       *trackedConn
	handed  bool
	mu      sync.Mutex
	closed  chan struct{}
	closeMu sync.Once
	gone    chan struct{}
}

type trackedConn struct {
	net.Conn
	once sync.Once
	gone chan struct{}
	m    meter
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.gone) })
	c.m.close()
	return err
}

func (c *trackedConn) Read(p []byte) (int, error) { return c.m.read(c.Conn, p) }

func (c *trackedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.m.wrote(p[:n])
	return n, err
}

func newConnListener(c net.Conn) *connListener {
	gone := make(chan struct{})
	tc := &trackedConn{Conn: c, gone: gone}
	tc.m.init()
	return &connListener{c: tc, closed: make(chan struct{}), gone: gone}
}

func (l *connListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if !l.handed {
		l.handed = true
		l.mu.Unlock()
		return l.c, nil
	}
	l.mu.Unlock()
	select {
	case <-l.gone:
	case <-l.closed:
	}
	return nil, net.ErrClosed
}

func (l *connListener) Close() error {
	l.closeMu.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.c.LocalAddr() }

// Extend is ExtendRuntimeMeasurement for peer: it checks the request,
// authorizes it and writes the record, or answers a ttrpc status error
// with nothing written.
func (s *Server) Extend(ctx context.Context, peer serve.Peer, req *aapb.ExtendRuntimeMeasurementRequest) (*aapb.ExtendRuntimeMeasurementResponse, error) {
	rec := aael.Record{Domain: req.GetDomain(), Operation: req.GetOperation(), Content: req.GetContent()}
	if err := rec.Validate(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "record: %v", err)
	}
	backing := s.cfg.Store.Backing()
	if req.RegisterIndex != nil && !Names(backing, req.GetRegisterIndex()) {
		return nil, status.Errorf(codes.InvalidArgument,
			"RegisterIndex %d: the agent would extend another register than %s, the backing register of this runtime log (%s)",
			req.GetRegisterIndex(), backing.Name, indexHint(backing))
	}
	op, what := serve.OpAA, rec.Domain
	switch {
	case rec.IsVirtual():
		op = serve.OpExtend
	case rec.Domain == aael.DomainCCMR:
		s.log.Warn("refused: reserved domain", "peer", peer.String(), "op", serve.OpAA.String(), "domain", rec.Domain)
		return nil, status.Errorf(codes.PermissionDenied, "domain %s is reserved to ccmr", rec.Domain)
	}
	if !s.cfg.Policy.Allows(peer, op, what) {
		s.log.Warn("refused", "peer", peer.String(), "op", op.String(), "domain", clipDomain(what))
		return nil, status.Errorf(codes.PermissionDenied, "%s %s: not allowed for %s", op, clipDomain(what), peer)
	}
	var err error
	if rec.IsVirtual() {
		var name string
		var d mr.Digest
		if name, d, err = rec.Virtual(); err == nil {
			_, err = s.cfg.Store.Extend(ctx, name, d)
		}
	} else {
		err = s.cfg.Store.AppendRecord(ctx, rec)
	}
	if err != nil {
		return nil, s.fail(ctx, rec, err)
	}
	return &aapb.ExtendRuntimeMeasurementResponse{Result: aapb.RuntimeMeasurementResult_OK}, nil
}

// fail turns an error of the store into a status.
func (s *Server) fail(ctx context.Context, rec aael.Record, err error) error {
	switch {
	case errors.Is(err, mr.ErrMalformed), errors.Is(err, mr.ErrDigestSize), errors.Is(err, vmr.ErrReservedRecord):
		return status.Errorf(codes.InvalidArgument, "%v", err)
	case ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err()
	}
	s.log.Error("aa: extend", "domain", clipDomain(rec.Domain), "err", err)
	return status.Errorf(codes.Internal, "%v", err)
}

// Names reports whether the agent, given RegisterIndex pcr, would extend
// backing: on TDX (rtmrN, CC MR index N+1) through the agent's
// pcr_to_ccmr, on a TPM the PCR of that number.
func Names(backing mr.Register, pcr uint64) bool {
	switch {
	case strings.HasPrefix(backing.Name, "rtmr"):
		return backing.Index >= 1 && TDXCCMR(pcr) == backing.Index
	case strings.HasPrefix(backing.Name, "pcr"):
		return backing.Index >= 0 && pcr == uint64(backing.Index)
	}
	return false
}

// TDXCCMR is the CC MR index (1..4 = RTMR0..3) the agent extends on TDX
// for PCR index pcr (guest-components attester/src/tdx/mod.rs,
// pcr_to_ccmr, after the UEFI CC event log mapping).
func TDXCCMR(pcr uint64) int {
	switch {
	case pcr == 1 || pcr == 7:
		return 1
	case pcr >= 2 && pcr <= 6:
		return 2
	case pcr >= 8 && pcr <= 15:
		return 3
	}
	return 4
}

// indexHint says which indexes name backing.
func indexHint(backing mr.Register) string {
	switch {
	case strings.HasPrefix(backing.Name, "rtmr"):
		return "give none, or a PCR the agent maps to it: 1 and 7 to rtmr0, 2-6 to rtmr1, 8-15 to rtmr2, any other to rtmr3"
	case strings.HasPrefix(backing.Name, "pcr"):
		return "give none, or " + strings.TrimPrefix(backing.Name, "pcr")
	}
	return "give none"
}

// clipDomain bounds a domain in logs and errors (it may be up to a MiB).
func clipDomain(s string) string {
	if len(s) > 128 {
		return s[:128] + "..."
	}
	return s
}
