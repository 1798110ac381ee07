package fleet

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/bundle/tail"
	"github.com/ccmr-dev/ccmr/eventlog"
	"github.com/ccmr-dev/ccmr/verifier"
	"github.com/ccmr-dev/ccmr/verifier/ear"
)

// Config configures a Service.
type Config struct {
	Store Store
	// Groups are the policies by group; nil judges without a policy (as
	// `ccmr verify` without --policy).
	Groups *Groups
	// EARKey, when set, signs each verdict as an EAR; Build is the ccmr
	// version it names.
	EARKey *ear.Key
	Build  string
	// MaxBundle bounds a request body (default DefaultMaxBundle).
	MaxBundle int64
	// NonceTTL is how long a challenge is good for (default 5 minutes).
	NonceTTL time.Duration
	// TempDir holds bundles while they are judged (default os.TempDir()).
	TempDir string
}

// DefaultMaxBundle is the default bound on a bundle received.
const DefaultMaxBundle = 256 << 20

// Service is the fleet verifier's HTTP API (docs/openapi-fleet.yaml).
type Service struct {
	cfg     Config
	mux     *http.ServeMux
	reg     *prometheus.Registry
	verdict *prometheus.CounterVec
	refused *prometheus.CounterVec
	latency prometheus.Histogram
}

// New builds the service over cfg.Store.
func New(cfg Config) *Service {
	if cfg.MaxBundle <= 0 {
		cfg.MaxBundle = DefaultMaxBundle
	}
	if cfg.NonceTTL <= 0 {
		cfg.NonceTTL = 5 * time.Minute
	}
	s := &Service{cfg: cfg, mux: http.NewServeMux(), reg: prometheus.NewRegistry()}
	s.verdict = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ccmr_fleet_verdicts_total", Help: "Bundles judged, by result (trusted, untrusted, replayed)."}, []string{"result"})
	s.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ccmr_fleet_refused_total", Help: "Evidence requests refused before a verdict, by HTTP status."}, []string{"status"})
	s.latency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ccmr_fleet_evidence_seconds", Help: "Time to judge a bundle, from its last byte received to the commit.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)})
	s.reg.MustRegister(s.verdict, s.refused, s.latency, prometheus.NewGoCollector())
	s.mux.HandleFunc("POST /v1/challenge", s.challenge)
	s.mux.HandleFunc("POST /v1/machines/{id}/evidence", s.evidence)
	s.mux.HandleFunc("GET /v1/machines/{id}", s.machine)
	s.mux.HandleFunc("GET /v1/machines", s.machines)
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	return s
}

// ServeHTTP serves the API.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// apiError is every error response's body.
type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (s *Service) fail(w http.ResponseWriter, status int, err error) {
	s.refused.WithLabelValues(fmt.Sprint(status)).Inc()
	writeJSON(w, status, apiError{Error: err.Error()})
}

// Challenge is POST /v1/challenge's answer.
type Challenge struct {
	Nonce   string    `json:"nonce"` // hex
	Expires time.Time `json:"expires"`
}

func (s *Service) challenge(w http.ResponseWriter, r *http.Request) {
	n := make([]byte, 32)
	rand.Read(n)
	exp := time.Now().UTC().Add(s.cfg.NonceTTL).Truncate(time.Second)
	if err := s.cfg.Store.IssueNonce(r.Context(), n, exp); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, Challenge{Nonce: hex.EncodeToString(n), Expires: exp})
}

// Result is POST /v1/machines/{id}/evidence's answer.
type Result struct {
	Machine  string          `json:"machine"`
	Trusted  bool            `json:"trusted"`
	Verdict  string          `json:"verdict"`
	Advanced bool            `json:"advanced"`
	Replayed bool            `json:"replayed"`
	Report   json.RawMessage `json:"report"`
	EAR      string          `json:"ear,omitempty"`
	// Since is where the machine's monitor state stands after this
	// verdict (absent on a replay, and before a first trusted verdict):
	// the machine's next bundle may carry only its logs' tails from there.
	Since *tail.Since `json:"since,omitempty"`
}

// spool copies the body to a private temporary file, hashing it. A body
// over the bound is ErrTooLarge; a body not received whole (a client that
// stops, a read timeout) is the read error.
var errTooLarge = errors.New("bundle larger than the service accepts")

func (s *Service) spool(w http.ResponseWriter, r *http.Request) (string, string, error) {
	f, err := os.CreateTemp(s.cfg.TempDir, "ccmr-fleet-*.bundle")
	if err != nil {
		return "", "", err
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), http.MaxBytesReader(w, r.Body, s.cfg.MaxBundle))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return "", "", errTooLarge
		}
		return "", "", fmt.Errorf("bundle not received whole: %w", err)
	}
	return f.Name(), hex.EncodeToString(h.Sum(nil)), nil
}

func (s *Service) evidence(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !validName.MatchString(id) {
		s.fail(w, http.StatusBadRequest, fmt.Errorf("machine id %q: want 1-128 of A-Z a-z 0-9 . _ : -", id))
		return
	}
	path, sum, err := s.spool(w, r)
	if errors.Is(err, errTooLarge) {
		s.fail(w, http.StatusRequestEntityTooLarge, err)
		return
	}
	if err != nil {
		s.fail(w, http.StatusRequestTimeout, err)
		return
	}
	defer os.Remove(path)
	ctx := r.Context()
	b, err := bundle.Open(ctx, path)
	if err != nil {
		s.fail(w, http.StatusBadRequest, fmt.Errorf("bundle: %w", err))
		return
	}
	defer b.Close()
	if len(b.Nonce) == 0 {
		s.fail(w, http.StatusBadRequest, errors.New("bundle carries no nonce: take one from POST /v1/challenge"))
		return
	}
	start := time.Now()
	at := start.UTC()
	var since *tail.Since
	v, replayed, err := s.cfg.Store.Submit(ctx, Submission{Machine: id, Bundle: sum, Nonce: b.Nonce, At: at, Policy: s.policyDigest},
		func(ctx context.Context, m *Machine) (*Outcome, error) {
			out, err := s.judge(ctx, b, m, at)
			if err == nil {
				since, err = sinceAfter(m, out)
			}
			return out, err
		})
	switch {
	case errors.Is(err, ErrUnknownMachine):
		s.fail(w, http.StatusNotFound, err)
		return
	case errors.Is(err, ErrNonce), errors.Is(err, ErrIdentity), errors.Is(err, ErrStaleVerdict):
		s.fail(w, http.StatusForbidden, err)
		return
	case errors.Is(err, ErrConflict), errors.Is(err, ErrTailBase):
		s.fail(w, http.StatusConflict, err)
		return
	case errors.As(err, new(*inputError)):
		s.fail(w, http.StatusBadRequest, err)
		return
	case err != nil:
		s.fail(w, http.StatusServiceUnavailable, err)
		return
	}
	s.latency.Observe(time.Since(start).Seconds())
	switch {
	case replayed:
		s.verdict.WithLabelValues("replayed").Inc()
	case v.Trusted:
		s.verdict.WithLabelValues("trusted").Inc()
	default:
		s.verdict.WithLabelValues("untrusted").Inc()
	}
	writeJSON(w, http.StatusOK, Result{Machine: id, Trusted: v.Trusted, Verdict: v.Line, Advanced: v.Advanced && !replayed,
		Replayed: replayed, Report: v.Report, EAR: v.Token, Since: since})
}

// sinceAfter is where m's monitor state stands once out is committed.
func sinceAfter(m *Machine, out *Outcome) (*tail.Since, error) {
	row := *m
	if out.State != nil {
		row.State = out.State
	}
	return SinceOf(&row)
}

// SinceOf is where m's monitor state stands, as a since file
// (ccmr-since/v1) naming m's id; nil before its first trusted verdict.
func SinceOf(m *Machine) (*tail.Since, error) {
	if len(m.State) == 0 {
		return nil, nil
	}
	st, err := MonitorFor(m)
	if err != nil {
		return nil, err
	}
	s, _ := st.Since(m.ID)
	return s, nil
}

// checkIdentity refuses a bundle of another platform than m's, and a TDX
// or SNP bundle whose evidence names other hardware than m's enrolled
// identity. It runs before the verifier: evidence from another chip is not
// this machine's, so it is refused (403) rather than recorded in its
// history. The platform is checked for every machine: the verifier holds
// a sim or TPM bundle to m's key, but judges a TDX or SNP bundle by its
// own chain and never looks at that key, so genuine evidence of any TDX or
// SNP host would otherwise pass as a keyed machine's.
func checkIdentity(b *bundle.Bundle, m *Machine) error {
	if string(b.Platform) != m.Platform {
		return fmt.Errorf("%w: machine %s is a %s machine, the bundle's platform is %q", ErrIdentity, m.ID, m.Platform, b.Platform)
	}
	if m.Platform != "tdx" && m.Platform != "snp" {
		return nil
	}
	id, err := Identity(b.Platform, b.Evidence.Report)
	if err != nil {
		return fmt.Errorf("%w: machine %s: %v", ErrIdentity, m.ID, err)
	}
	if id != m.Identity {
		return fmt.Errorf("%w: machine %s is enrolled as %s, the evidence names %s", ErrIdentity, m.ID, m.Identity, id)
	}
	return nil
}

// ErrTailBase: the bundle carries a log as a tail (bundle.Log.Offset > 0)
// that does not start exactly where the machine's stored monitor state
// verified that log, or the verifier could not resume the state under it.
// The request is refused (409) with nothing written and the nonce unused:
// the agent takes the state's position again (GET /v1/machines/{id}) or
// sends whole logs, which are always judged.
var ErrTailBase = errors.New("the bundle's tails do not start where the machine's monitor state stands")

// hasTails reports whether b carries any log as a tail.
func hasTails(b *bundle.Bundle) bool {
	for i := range b.Logs {
		if b.Logs[i].Offset != 0 {
			return true
		}
	}
	return false
}

// checkTailBase refuses a bundle whose tails do not start exactly at the
// points of m's stored entry. The verifier alone would accept a tail that
// starts before the point (re-sending bytes it verified), and judge one
// that starts past it NOT TRUSTED; the service wants the base to be the
// one it told the agent, so that a tail that skips records or assumes
// another base is refused before anything is judged or written.
func checkTailBase(b *bundle.Bundle, m *Machine, st *verifier.MonitorState) error {
	e := st.Machines[m.ID]
	for i := range b.Logs {
		lg := &b.Logs[i]
		if lg.Offset == 0 {
			continue
		}
		if e == nil {
			return fmt.Errorf("%w: logs[%d] is a tail from byte %d, and the machine has no monitor state yet: send whole logs", ErrTailBase, i, lg.Offset)
		}
		// found says the state has a point for this log: a negative
		// offset must not meet a "nowhere" written as a number.
		var at int64
		found := false
		switch {
		case tail.IsRuntime(lg):
			for _, rs := range e.Runtime {
				if rs.Register == lg.Register {
					at, found = rs.Offset, true
				}
			}
		case lg.Format == string(eventlog.FormatIMABinary) || lg.Format == string(eventlog.FormatIMAASCII):
			if e.IMA != nil {
				at, found = e.IMA.Offset, true
			}
		}
		if !found {
			return fmt.Errorf("%w: logs[%d] (%s %s) is a tail from byte %d, and the state has no point for it", ErrTailBase, i, lg.Format, lg.Register, lg.Offset)
		}
		if at != lg.Offset {
			return fmt.Errorf("%w: logs[%d] (%s %s) is a tail from byte %d, the state stands at %d", ErrTailBase, i, lg.Format, lg.Register, lg.Offset, at)
		}
	}
	return nil
}

// tailRefused reports whether rep failed because the verifier could not
// resume the monitor state under a tail (checkTails: the entry was not
// used for this boot or policy, or keeps no hash state): the agent's base
// is not the state's, which is a refusal, not a verdict on the machine.
func tailRefused(b *bundle.Bundle, rep *verifier.Report) bool {
	if rep.Trusted || !hasTails(b) {
		return false
	}
	for _, l := range rep.Layers {
		if l.Failure.TailRefused() {
			return true
		}
	}
	return false
}

// inputError is a bundle the verifier cannot use at all (exit 2 of
// `ccmr verify`): the request is refused, nothing recorded.
type inputError struct{ err error }

func (e *inputError) Error() string { return e.err.Error() }
func (e *inputError) Unwrap() error { return e.err }

// Options are the verifier options for machine m's bundle: its pinned key,
// its group's policy, the nonce the bundle answers (which the service
// issued: the store consumes it in the same transaction), and a monitor
// state holding only m's entry.
func (s *Service) Options(m *Machine, nonce []byte, at time.Time) (verifier.Options, error) {
	opts := verifier.Options{Name: m.ID, Nonce: nonce, RequireNonce: true, At: at, Machine: m.ID}
	switch m.Platform {
	case "sim":
		opts.AllowSim, opts.SimKeys = true, [][]byte{[]byte(m.KeyPEM)}
	case "tpm":
		opts.TrustedKeys = [][]byte{[]byte(m.KeyPEM)}
	case "tdx", "snp":
		// No key: the hardware identity is checked on the bundle (judge),
		// and the chain to Intel's or AMD's roots by the verifier.
		tr, err := parseTrust(m.Trust)
		if err != nil {
			return opts, fmt.Errorf("machine %s: %w", m.ID, err)
		}
		opts.AllowedTCB, opts.AllowMissingCollateral = tr.AllowedTCB, tr.AllowMissingCollateral
		opts.TDXCollateral, opts.SNPCRL = tr.TDXCollateral, tr.SNPCRL
	default:
		return opts, fmt.Errorf("machine %s: platform %q", m.ID, m.Platform)
	}
	if s.cfg.Groups != nil {
		p, err := s.cfg.Groups.Policy(m.Group)
		if err != nil {
			return opts, err
		}
		opts.Policy = p
	}
	st, err := MonitorFor(m)
	if err != nil {
		return opts, err
	}
	opts.Monitor = st
	return opts, nil
}

// policyDigest is the digest of the policy a machine of group is judged
// under now, as a verdict records it (Outcome.Policy).
func (s *Service) policyDigest(group string) (string, error) {
	if s.cfg.Groups == nil {
		return digestOf(nil), nil
	}
	p, err := s.cfg.Groups.Policy(group)
	if err != nil {
		return "", &inputError{err}
	}
	return digestOf(p), nil
}

// digestOf names a policy by its digest, "none" for no policy (as a
// monitor state entry does).
func digestOf(p *verifier.Policy) string {
	if p == nil {
		return "none"
	}
	return p.Digest.String()
}

// MonitorFor is the monitor state of m alone, from its row, parsed as
// strictly as a state file.
func MonitorFor(m *Machine) (*verifier.MonitorState, error) {
	if len(m.State) == 0 {
		return verifier.NewState(), nil
	}
	doc, err := json.Marshal(struct {
		Format   string                     `json:"format"`
		Machines map[string]json.RawMessage `json:"machines"`
	}{verifier.StateFormat, map[string]json.RawMessage{m.ID: m.State}})
	if err != nil {
		return nil, fmt.Errorf("machine %s: stored state: %w", m.ID, err)
	}
	st, err := verifier.ParseState(doc, nil)
	if err != nil {
		return nil, fmt.Errorf("machine %s: stored state: %w", m.ID, err)
	}
	return st, nil
}

// judge verifies b from m's row with the existing verifier.
func (s *Service) judge(ctx context.Context, b *bundle.Bundle, m *Machine, at time.Time) (*Outcome, error) {
	opts, err := s.Options(m, b.Nonce, at)
	if err != nil {
		// The machine cannot be judged as enrolled (no policy for its
		// group): refused, never judged without it.
		return nil, &inputError{err}
	}
	if err := checkIdentity(b, m); err != nil {
		return nil, err
	}
	if hasTails(b) {
		if err := checkTailBase(b, m, opts.Monitor); err != nil {
			return nil, err
		}
	}
	rep, err := verifier.Verify(ctx, b, opts)
	if err != nil {
		return nil, &inputError{err}
	}
	if tailRefused(b, rep) {
		return nil, fmt.Errorf("%w: %s", ErrTailBase, rep.Layers[rep.FailedLayer()].Failure.Reason)
	}
	out := &Outcome{Trusted: rep.Trusted, Line: rep.Verdict, Policy: digestOf(opts.Policy)}
	if out.Report, err = json.Marshal(rep); err != nil {
		return nil, err
	}
	if s.cfg.EARKey != nil {
		res, err := ear.New(b, rep, opts, s.cfg.Build, time.Now())
		if err != nil {
			return nil, err
		}
		if out.Token, err = ear.Sign(res, s.cfg.EARKey); err != nil {
			return nil, err
		}
	}
	if rep.Trusted {
		if e := opts.Monitor.Machines[m.ID]; e != nil {
			nb, err := json.Marshal(e)
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(nb, m.State) {
				out.State = nb
			}
		}
	}
	return out, nil
}

// MachineView is GET /v1/machines/{id}'s answer: where the monitor stands
// and the last verdict.
type MachineView struct {
	Machine
	State json.RawMessage `json:"state"`
	// Since is State as a since file: the agent's next bundle may carry
	// its logs' tails from there (`ccmr quote --since`).
	Since *tail.Since `json:"since,omitempty"`
	Last  *Verdict    `json:"last,omitempty"`
	// LastReport is the last verdict's report.
	LastReport json.RawMessage `json:"last_report,omitempty"`
}

func (s *Service) machine(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !validName.MatchString(id) {
		s.fail(w, http.StatusBadRequest, fmt.Errorf("machine id %q: not a machine id", id))
		return
	}
	m, v, err := s.cfg.Store.Machine(r.Context(), id)
	if errors.Is(err, ErrUnknownMachine) {
		writeJSON(w, http.StatusNotFound, apiError{Error: err.Error()})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error()})
		return
	}
	view := MachineView{Machine: *m, State: json.RawMessage("null"), Last: v}
	if len(m.State) > 0 {
		view.State = m.State
	}
	if view.Since, err = SinceOf(m); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error()})
		return
	}
	if v != nil {
		view.LastReport = v.Report
	}
	writeJSON(w, http.StatusOK, view)
}

func (s *Service) machines(w http.ResponseWriter, r *http.Request) {
	ms, err := s.cfg.Store.Machines(r.Context())
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error()})
		return
	}
	if ms == nil {
		ms = []Machine{}
	}
	writeJSON(w, http.StatusOK, struct {
		Machines []Machine `json:"machines"`
	}{ms})
}

func (s *Service) healthz(w http.ResponseWriter, r *http.Request) {
	if _, err := s.cfg.Store.SchemaVersion(r.Context()); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Status string `json:"status"`
	}{"ok"})
}
