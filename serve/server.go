package serve

import (
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ccmr-dev/ccmr/bundle/collect"
	"github.com/ccmr-dev/ccmr/internal/strictjson"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/vmr"
)

// Limits of the service (docs/serve.md, "Limits"). A request past them is
// refused or its connection closed; other clients are not affected.
const (
	// MaxRequestBody bounds a request's body: an extend's data is at most
	// MaxData bytes, base64 in JSON.
	MaxRequestBody = 1 << 20
	// MaxData bounds the data of one extend by data (the daemon holds it).
	MaxData = 512 << 10
	// MaxNonce bounds a quote's nonce.
	MaxNonce = 64
	// DefaultMaxConns is how many connections are served at once; more
	// wait in the listen backlog. One uid may hold a quarter of them;
	// its further connections are closed at once.
	DefaultMaxConns = 256
	// ReadHeaderTimeout, ReadTimeout and IdleTimeout bound a client that
	// stalls; WriteTimeout bounds a response, QuoteWriteTimeout a bundle
	// (which streams the whole runtime log).
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second
	WriteTimeout      = 30 * time.Second
	QuoteWriteTimeout = 10 * time.Minute
	IdleTimeout       = 60 * time.Second
)

// Config is what a Server serves.
type Config struct {
	// Device holds the real registers and makes the evidence.
	Device mr.Device
	// Store holds the virtual registers on Device's backing register.
	Store *vmr.Store
	// Policy authorizes peers; nil admits root alone.
	Policy *Policy
	// Logger receives refusals and failures (nil: slog.Default()).
	Logger *slog.Logger
	// Quote says what a bundle carries besides the evidence and the
	// runtime log (the IMA list, systemd's log).
	Quote collect.Options
	// MaxConns overrides DefaultMaxConns when positive.
	MaxConns int
}

// Server is the daemon's HTTP service.
type Server struct {
	cfg  Config
	log  *slog.Logger
	mux  *http.ServeMux
	http *http.Server
}

type peerKey struct{}

// peerResult is the peer of a connection or why it is unknown.
type peerResult struct {
	peer Peer
	err  error
}

// New builds a Server.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux()}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.mux.HandleFunc("POST /v1/extend", s.extend)
	s.mux.HandleFunc("GET /v1/registers", s.list)
	s.mux.HandleFunc("GET /v1/registers/{name}", s.read)
	s.mux.HandleFunc("POST /v1/quote", s.quote)
	s.mux.HandleFunc("POST /v1/cut", s.cut)
	s.mux.HandleFunc("GET /v1/health", s.health)
	s.http = &http.Server{
		Handler:           http.MaxBytesHandler(s.mux, MaxRequestBody),
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if lc, ok := c.(*limitedConn); ok {
				c = lc.Conn
			}
			p, err := peerOf(c)
			return context.WithValue(ctx, peerKey{}, peerResult{p, err})
		},
	}
	return s
}

// Serve serves l until ctx ends, then stops accepting, lets requests in
// flight finish (for up to WriteTimeout) and returns.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	n := s.cfg.MaxConns
	if n <= 0 {
		n = DefaultMaxConns
	}
	l = &limitListener{Listener: l, sem: make(chan struct{}, n), perUID: max(1, n/4), held: map[uint32]int{}}
	done := make(chan error, 1)
	go func() { done <- s.http.Serve(l) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), WriteTimeout)
	defer cancel()
	err := s.http.Shutdown(sctx)
	if e := <-done; !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
}

// limitListener admits at most cap(sem) connections at once, and at most
// perUID of them from one uid: one local user holding every slot (idle
// keep-alive connections, renewed) would stop every other client, root's
// measurement writers too. A connection past its uid's share is closed at
// once.
type limitListener struct {
	net.Listener
	sem    chan struct{}
	perUID int
	mu     sync.Mutex
	held   map[uint32]int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		l.sem <- struct{}{}
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.sem
			return nil, err
		}
		uid, ok := peerUID(c)
		if !ok {
			// Unidentified: served (and refused by authorize) in the
			// shared pool.
			return &limitedConn{Conn: c, release: func() { <-l.sem }}, nil
		}
		l.mu.Lock()
		if l.held[uid] >= l.perUID {
			l.mu.Unlock()
			c.Close()
			<-l.sem
			continue
		}
		l.held[uid]++
		l.mu.Unlock()
		return &limitedConn{Conn: c, release: func() {
			l.mu.Lock()
			if l.held[uid]--; l.held[uid] == 0 {
				delete(l.held, uid)
			}
			l.mu.Unlock()
			<-l.sem
		}}, nil
	}
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// ExtendRequest is the body of POST /v1/extend: exactly one of Digest
// (ALG:HEX) and Data (base64; hashed with sha384 for a virtual register,
// with each bank's hash for a real one).
type ExtendRequest struct {
	Register string `json:"register"`
	Digest   string `json:"digest,omitempty"`
	Data     string `json:"data,omitempty"`
}

// Value is one register's value in a response.
type Value struct {
	Register string `json:"register"`
	Value    string `json:"value"`
}

// ValuesResponse answers extend, read and list.
type ValuesResponse struct {
	Values []Value `json:"values"`
}

// QuoteRequest is the body of POST /v1/quote.
type QuoteRequest struct {
	Nonce string `json:"nonce"`
}

// CutResponse answers POST /v1/cut.
type CutResponse struct {
	// Archive is the archived segment's path, Log the new segment's.
	Archive string `json:"archive"`
	Log     string `json:"log"`
}

// HealthResponse answers GET /v1/health.
type HealthResponse struct {
	Status  string `json:"status"`
	Device  string `json:"device"`
	Backing string `json:"backing"`
	Log     string `json:"log"`
}

// ErrorResponse is the body of every 4xx and 5xx answer.
type ErrorResponse struct {
	Error string `json:"error"`
}

// authorize reports whether the request's peer may do op on reg; when it
// may not, or cannot be identified, it answers 403 and logs the refusal
// with the peer.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, op Op, reg string) bool {
	pr, _ := r.Context().Value(peerKey{}).(peerResult)
	if pr.err != nil {
		s.log.Warn("refused: peer unknown", "op", op.String(), "register", reg, "err", pr.err)
		writeError(w, http.StatusForbidden, "peer cannot be identified")
		return false
	}
	if !s.cfg.Policy.Allows(pr.peer, op, reg) {
		s.log.Warn("refused", "peer", pr.peer.String(), "op", op.String(), "register", reg)
		writeError(w, http.StatusForbidden, fmt.Sprintf("%s %s: not allowed for %s", op, reg, pr.peer))
		return false
	}
	return true
}

func (s *Server) extend(w http.ResponseWriter, r *http.Request) {
	var req ExtendRequest
	if !decode(w, r, &req) {
		return
	}
	virtual := strings.HasPrefix(req.Register, "mr_")
	if virtual && !mr.IsVirtualName(req.Register) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("register %q: a virtual register is mr_ and 1 to 60 of [a-z0-9_.-]", req.Register))
		return
	}
	if req.Register == "" || len(req.Register) > 64 {
		writeError(w, http.StatusBadRequest, "register: want a register name")
		return
	}
	if (req.Digest == "") == (req.Data == "") {
		writeError(w, http.StatusBadRequest, "give exactly one of digest and data")
		return
	}
	var d mr.Digest
	var data []byte
	var err error
	if req.Digest != "" {
		if d, err = mr.ParseDigest(req.Digest); err != nil {
			writeError(w, http.StatusBadRequest, "digest: "+err.Error())
			return
		}
	} else {
		if base64.StdEncoding.DecodedLen(len(req.Data)) > MaxData+3 {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("data: more than %d bytes", MaxData))
			return
		}
		if data, err = base64.StdEncoding.Strict().DecodeString(req.Data); err != nil {
			writeError(w, http.StatusBadRequest, "data: "+err.Error())
			return
		}
		if len(data) > MaxData {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("data: more than %d bytes", MaxData))
			return
		}
	}
	if !s.authorize(w, r, OpExtend, req.Register) {
		return
	}
	ctx := r.Context()
	if virtual {
		if data != nil {
			h := sha512.Sum384(data)
			d = mr.Digest{Alg: mr.SHA384, Bytes: h[:]}
		}
		v, err := s.extendVirtual(ctx, req.Register, d)
		if err != nil {
			s.fail(w, r, "extend "+req.Register, err)
			return
		}
		writeJSON(w, http.StatusOK, ValuesResponse{[]Value{{req.Register, v.String()}}})
		return
	}
	if req.Register == s.cfg.Store.Backing().Name {
		s.log.Warn("refused: direct extend of the backing register", "register", req.Register)
		writeError(w, http.StatusForbidden, fmt.Sprintf("%s is the backing register of the runtime log: extend a virtual register instead", req.Register))
		return
	}
	var vs []mr.Value
	err = s.device(ctx, func() error {
		// The lock is held: the extend itself is short and must not stop
		// half way because the client left (some banks extended, others
		// not).
		ctx := context.WithoutCancel(ctx)
		var err error
		if data != nil {
			err = s.cfg.Device.ExtendData(ctx, req.Register, data)
		} else {
			err = s.cfg.Device.Extend(ctx, req.Register, d)
		}
		if err != nil {
			return err
		}
		vs, err = s.cfg.Device.Read(ctx, req.Register)
		return err
	})
	if err != nil {
		s.fail(w, r, "extend "+req.Register, err)
		return
	}
	writeJSON(w, http.StatusOK, values(vs))
}

// extendVirtual extends one virtual register. Concurrent callers share the
// Store's group commit (one append and fsync per batch); a crash inside a
// batch is rolled forward by vmr's recovery (vmr.MaxBatch).
func (s *Server) extendVirtual(ctx context.Context, name string, d mr.Digest) (mr.Digest, error) {
	return s.cfg.Store.Extend(ctx, name, d)
}

// device runs fn, which uses the device directly, under the runtime log's
// lock: the store's writers use the device too, and a device serves one
// goroutine at a time.
func (s *Server) device(ctx context.Context, fn func() error) error {
	f, _, err := s.cfg.Store.SnapshotFile(ctx, fn)
	if f != nil {
		f.Close()
	}
	return err
}

func values(vs []mr.Value) ValuesResponse {
	out := ValuesResponse{Values: make([]Value, 0, len(vs))}
	for _, v := range vs {
		out.Values = append(out.Values, Value{v.Register.Name, v.Digest.String()})
	}
	return out
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r, OpRead, "") {
		return
	}
	vs, err := s.cfg.Store.List(r.Context())
	if err != nil {
		s.fail(w, r, "list", err)
		return
	}
	writeJSON(w, http.StatusOK, values(vs))
}

func (s *Server) read(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !s.authorize(w, r, OpRead, name) {
		return
	}
	ctx := r.Context()
	if strings.HasPrefix(name, "mr_") {
		if !mr.IsVirtualName(name) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("register %q: not a virtual register name", name))
			return
		}
		n, err := s.cfg.Store.Records(ctx, name)
		if err == nil && n == 0 {
			err = fmt.Errorf("virtual register %q has no records: %w", name, mr.ErrUnknownRegister)
		}
		var d mr.Digest
		if err == nil {
			d, err = s.cfg.Store.Read(ctx, name)
		}
		if err != nil {
			s.fail(w, r, "read "+name, err)
			return
		}
		writeJSON(w, http.StatusOK, ValuesResponse{[]Value{{name, d.String()}}})
		return
	}
	var vs []mr.Value
	err := s.device(ctx, func() error {
		var err error
		vs, err = s.cfg.Device.Read(ctx, name)
		return err
	})
	if err != nil {
		s.fail(w, r, "read "+name, err)
		return
	}
	writeJSON(w, http.StatusOK, values(vs))
}

func (s *Server) quote(w http.ResponseWriter, r *http.Request) {
	var req QuoteRequest
	if !decode(w, r, &req) {
		return
	}
	nonce, err := hex.DecodeString(req.Nonce)
	if err != nil || len(nonce) == 0 || len(nonce) > MaxNonce {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("nonce: want 1 to %d bytes in hex", MaxNonce))
		return
	}
	if !s.authorize(w, r, OpQuote, "") {
		return
	}
	ctx := r.Context()
	opts := s.cfg.Quote
	opts.Warn = func(m string) { s.log.Warn("quote: " + m) }
	b, err := collect.Bundle(ctx, s.cfg.Device, s.cfg.Store, nonce, opts)
	if err != nil {
		s.fail(w, r, "quote", err)
		return
	}
	defer b.Close()
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(QuoteWriteTimeout))
	w.Header().Set("Content-Type", "application/zip")
	w.WriteHeader(http.StatusOK)
	if err := b.WriteArchive(ctx, w); err != nil {
		// The status is sent: a client sees a truncated zip, which no
		// reader accepts (its central directory is at the end).
		s.log.Error("quote: writing the bundle", "err", err)
		panic(http.ErrAbortHandler)
	}
}

// cut archives the runtime log's segment (vmr.Store.Cut). It takes no
// body; one is refused rather than ignored.
func (s *Server) cut(w http.ResponseWriter, r *http.Request) {
	if n, _ := r.Body.Read(make([]byte, 1)); n > 0 || r.ContentLength > 0 {
		writeError(w, http.StatusBadRequest, "cut takes no body")
		return
	}
	if !s.authorize(w, r, OpCut, "") {
		return
	}
	archive, err := s.cfg.Store.Cut(r.Context())
	if err != nil {
		s.fail(w, r, "cut", err)
		return
	}
	s.log.Info("cut", "archive", archive, "by", peerString(r))
	writeJSON(w, http.StatusOK, CutResponse{Archive: archive, Log: s.cfg.Store.Path()})
}

// peerString names the request's peer for the log.
func peerString(r *http.Request) string {
	pr, _ := r.Context().Value(peerKey{}).(peerResult)
	if pr.err != nil {
		return "unknown"
	}
	return pr.peer.String()
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, HealthResponse{Status: "ok", Device: s.cfg.Device.Kind(),
		Backing: s.cfg.Store.Backing().Name, Log: s.cfg.Store.Path()})
}

// fail answers an error of the device or the store.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, what string, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, mr.ErrUnknownRegister):
		code = http.StatusNotFound
	case errors.Is(err, mr.ErrNotExtendable), errors.Is(err, mr.ErrDigestSize):
		code = http.StatusBadRequest
	case errors.Is(err, vmr.ErrNothingToCut):
		code = http.StatusConflict
	case r.Context().Err() != nil:
		code = 499 // the client left; nobody reads this
	}
	if code >= 500 {
		s.log.Error(what, "err", err)
	}
	writeError(w, code, what+": "+err.Error())
}

// decode reads a strict-JSON body, answering 400 or 413 when it fails.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, "want Content-Type application/json")
			return false
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", MaxRequestBody))
		} else {
			writeError(w, http.StatusBadRequest, "reading the body: "+err.Error())
		}
		return false
	}
	if err := strictjson.Decode(body, v); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return false
	}
	return true
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, ErrorResponse{msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
