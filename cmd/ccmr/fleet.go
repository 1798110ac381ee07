package main

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ccmr-dev/ccmr/bundle"
	"github.com/ccmr-dev/ccmr/bundle/collect"
	"github.com/ccmr-dev/ccmr/bundle/tail"
	"github.com/ccmr-dev/ccmr/eventlog/cel"
	"github.com/ccmr-dev/ccmr/fleet"
	"github.com/ccmr-dev/ccmr/internal/termsafe"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/serve/client"
	"github.com/ccmr-dev/ccmr/verifier"
	"github.com/ccmr-dev/ccmr/verifier/ear"
	"github.com/ccmr-dev/ccmr/verifier/simverify"
	"github.com/ccmr-dev/ccmr/verifier/tpmverify"
	"github.com/ccmr-dev/ccmr/vmr"
)

// newVerifierCmd is the fleet verifier (docs/fleet.md): a service whose
// state lives in SQLite or PostgreSQL.
func newVerifierCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verifier",
		Short: "Fleet verifier: an HTTP service judging many machines' evidence, its state in SQLite or PostgreSQL",
	}
	cmd.AddCommand(newVerifierServeCmd(g), newVerifierEnrollCmd(g))
	return cmd
}

func newVerifierServeCmd(g *globals) *cobra.Command {
	var listen, db, groupsDir, earKey string
	var maxBundle int64
	var nonceTTL, readTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "serve --listen ADDR --db URL",
		Short: "Serve the fleet verifier API (docs/openapi-fleet.yaml); SIGHUP reloads the group policies",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if db == "" || listen == "" {
				return usageError("--listen and --db are required")
			}
			cfg := fleet.Config{Build: buildVersion(), MaxBundle: maxBundle, NonceTTL: nonceTTL}
			if earKey != "" {
				pemBytes, err := readInputFile(ctx, earKey)
				if err != nil {
					return err
				}
				if cfg.EARKey, err = ear.ParseKey(pemBytes); err != nil {
					return usageError("--ear-key %s: %v", earKey, err)
				}
			}
			if groupsDir != "" {
				var err error
				if cfg.Groups, err = fleet.LoadGroups(groupsDir); err != nil {
					return &exitError{code: exitUsage, err: err}
				}
			}
			st, err := fleet.Open(ctx, db)
			if err != nil {
				return err
			}
			defer st.Close()
			cfg.Store = st
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			srv := &http.Server{Handler: fleet.New(cfg), ReadHeaderTimeout: 10 * time.Second,
				ReadTimeout: readTimeout, IdleTimeout: 2 * time.Minute}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					if cfg.Groups == nil {
						continue
					}
					// A folder that does not load keeps the policies in force.
					if err := cfg.Groups.Reload(); err != nil {
						fmt.Fprintf(g.stderr, "ccmr verifier: reload: %s (the previous policies stay)\n", termsafe.String(err.Error()))
					} else {
						fmt.Fprintf(g.stderr, "ccmr verifier: policies reloaded\n")
					}
				}
			}()
			fmt.Fprintf(g.stderr, "ccmr verifier: listening on %s\n", ln.Addr())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ln) }()
			select {
			case err := <-done:
				return err
			case <-ctx.Done():
			}
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return srv.Shutdown(sctx)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&listen, "listen", "", "address to listen on (host:port)")
	fl.StringVar(&db, "db", "", "state store: sqlite:PATH (one host) or postgres://… (several replicas)")
	fl.StringVar(&groupsDir, "groups", "", "folder of policies by machine group: DIR/GROUP.json (docs/policy.md); without it, no policy is judged")
	fl.StringVar(&earKey, "ear-key", "", "sign each verdict as an EAR with this PEM private key (P-256, P-384 or Ed25519)")
	fl.Int64Var(&maxBundle, "max-bundle", fleet.DefaultMaxBundle, "largest bundle accepted (bytes)")
	fl.DurationVar(&nonceTTL, "nonce-ttl", 5*time.Minute, "how long a challenge's nonce is good for")
	fl.DurationVar(&readTimeout, "read-timeout", 2*time.Minute, "time to receive a whole request: a slower client is refused")
	return cmd
}

func newVerifierEnrollCmd(g *globals) *cobra.Command {
	var db, id, group, platform, keyFile, from, hwID, snpCRL, collateral string
	var allowTCB []string
	var allowMissing bool
	cmd := &cobra.Command{
		Use:   "enroll --db URL --machine ID --group G (--platform sim|tpm --key PEM | --platform tdx|snp (--from EVIDENCE | --hw-id HEX))",
		Short: "Enrol a machine: its id, policy group and what it pins (sim/TPM: a key; TDX/SNP: its hardware, with its trust options); a new pin drops its state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if db == "" || id == "" || group == "" {
				return usageError("--db, --machine and --group are required")
			}
			m := fleet.Machine{ID: id, Group: group, Platform: platform}
			hwFlags := []string{"from", "hw-id", "snp-crl", "collateral", "allow-tcb", "allow-missing-collateral"}
			switch platform {
			case "sim", "tpm":
				for _, f := range hwFlags {
					if cmd.Flags().Changed(f) {
						return usageError("--%s is for TDX and SNP machines: a %s machine pins its key (--key)", f, platform)
					}
				}
				if keyFile == "" {
					return usageError("--key is required for a %s machine", platform)
				}
				key, err := readInputFile(ctx, keyFile)
				if err != nil {
					return err
				}
				if platform == "sim" {
					err = onePEMKey(key, func(b []byte) (any, error) { return simverify.ParsePublicKey(b) })
				} else {
					err = onePEMKey(key, tpmverify.ParseAKPublic)
				}
				if err != nil {
					return usageError("--key %s: %v", keyFile, err)
				}
				m.KeyPEM = string(key)
			case "tdx", "snp":
				if keyFile != "" {
					return usageError("--key: a %s machine has no key of its own: it pins its hardware (--from or --hw-id)", platform)
				}
				var err error
				if m.Identity, err = hardwareIdentity(ctx, mr.Platform(platform), from, hwID); err != nil {
					return err
				}
				if m.Trust, err = hardwareTrust(mr.Platform(platform), snpCRL, collateral, allowTCB, allowMissing); err != nil {
					return err
				}
			default:
				return usageError("--platform %q: want sim, tpm, tdx or snp", platform)
			}
			st, err := fleet.Open(ctx, db)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.Enroll(ctx, m); err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if m.Identity != "" {
				fmt.Fprintf(g.stdout, "%s: %s\n", termsafe.String(id), m.Identity)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&db, "db", "", "state store: sqlite:PATH or postgres://…")
	fl.StringVar(&id, "machine", "", "machine id (1-128 of A-Z a-z 0-9 . _ : -)")
	fl.StringVar(&group, "group", "default", "policy group (the verifier's --groups DIR/GROUP.json)")
	fl.StringVar(&platform, "platform", "tpm", "sim, tpm, tdx or snp")
	fl.StringVar(&keyFile, "key", "", "sim or TPM machine: its pinned key, PEM (ccmr key)")
	fl.StringVar(&from, "from", "", "TDX or SNP machine: evidence of it (a bundle, an SNP report or a TDX quote) naming its hardware: the SNP CHIP_ID, the TDX PPID of the PCK certificate")
	fl.StringVar(&hwID, "hw-id", "", "TDX or SNP machine: its hardware identity in hex instead of --from (SNP CHIP_ID, 64 bytes; TDX PPID, 16 bytes)")
	fl.StringVar(&snpCRL, "snp-crl", "", "SNP machine: AMD's CRL (DER or PEM) for its product line, kept with the machine")
	fl.StringVar(&collateral, "collateral", "", "TDX machine: Intel collateral (QuoteCollateralV3 JSON) to judge its quotes with instead of theirs")
	fl.StringSliceVar(&allowTCB, "allow-tcb", nil, "TDX machine: TCB statuses to trust besides UpToDate")
	fl.BoolVar(&allowMissing, "allow-missing-collateral", false, "TDX machine: let a quote without collateral pass, weakened")
	return cmd
}

// hardwareIdentity is the identity a TDX or SNP machine is enrolled with:
// named by hand (--hw-id) or read from its evidence (--from: a bundle, or
// the raw report or quote). Only the identity is read: the evidence need
// not verify at enrolment (it may be old), and every bundle the machine
// sends later must verify in full and name the same hardware.
func hardwareIdentity(ctx context.Context, p mr.Platform, from, hwID string) (string, error) {
	switch {
	case (from == "") == (hwID == ""):
		return "", usageError("a %s machine: give one of --from and --hw-id", p)
	case hwID != "":
		id, err := fleet.ParseIdentity(p, hwID)
		if err != nil {
			return "", usageError("--hw-id: %v", err)
		}
		return id, nil
	}
	raw, err := readInputFile(ctx, from)
	if err != nil {
		return "", err
	}
	evidence := raw
	if b, berr := bundle.ReadContext(ctx, bytes.NewReader(raw), from); berr == nil {
		defer b.Close()
		if b.Platform != p {
			return "", usageError("--from %s: a %s bundle, not %s", from, b.Platform, p)
		}
		evidence = b.Evidence.Report
	}
	id, err := fleet.Identity(p, evidence)
	if err != nil {
		return "", usageError("--from %s: %v", from, err)
	}
	return id, nil
}

// hardwareTrust is a TDX or SNP machine's trust options, checked as
// `ccmr verify` checks its flags (the SNP CRL by loadTrust), as the store
// keeps them.
func hardwareTrust(p mr.Platform, snpCRL, collateral string, allowTCB []string, allowMissing bool) ([]byte, error) {
	if p == mr.PlatformSNP && (collateral != "" || len(allowTCB) > 0 || allowMissing) {
		return nil, usageError("--collateral, --allow-tcb and --allow-missing-collateral are for TDX machines")
	}
	if p == mr.PlatformTDX && snpCRL != "" {
		return nil, usageError("--snp-crl is for SNP machines")
	}
	var o verifier.Options
	if err := loadTrust(&o, nil, nil, snpCRL, ""); err != nil {
		return nil, err
	}
	if err := loadTDXTrust(&o, collateral, allowTCB); err != nil {
		return nil, err
	}
	tr := fleet.Trust{SNPCRL: o.SNPCRL, TDXCollateral: o.TDXCollateral, AllowedTCB: o.AllowedTCB, AllowMissingCollateral: allowMissing}
	if tr.SNPCRL == nil && tr.TDXCollateral == nil && len(tr.AllowedTCB) == 0 && !tr.AllowMissingCollateral {
		return nil, nil
	}
	return tr.Marshal()
}

// newAttestCmd is the agent side: fetch a challenge, quote (from the
// device, or from the `ccmr serve` daemon where one runs), post.
func newAttestCmd(g *globals) *cobra.Command {
	a := &attester{g: g}
	var server, earPub string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "attest --to URL --machine ID [--server SOCKET]",
		Short: "Take a challenge from a fleet verifier, quote it (through ccmr serve with --server) and post the bundle; exit 0 trusted, 1 not trusted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			if a.to == "" || a.id == "" {
				return usageError("--to and --machine are required")
			}
			var err error
			if a.server, err = g.serverClient(server); err != nil {
				return err
			}
			if a.server != nil {
				defer a.server.Close()
				for _, f := range []string{"ima-log", "systemd-log"} {
					if cmd.Flags().Changed(f) {
						return usageError("--%s cannot be used through the daemon (%s): it decides what its bundles carry; --server %s works on the device directly", f, a.server.Socket(), noServer)
					}
				}
			}
			if earPub != "" {
				raw, err := readInputFile(ctx, earPub)
				if err != nil {
					return err
				}
				if a.pub, err = ear.ParsePublicKey(raw); err != nil {
					return usageError("--ear-pub %s: %v", earPub, err)
				}
			}
			a.base = strings.TrimSuffix(a.to, "/")
			return a.run(ctx)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&a.to, "to", "", "fleet verifier base URL (http://host:port)")
	fl.StringVar(&a.id, "machine", "", "this machine's id at the verifier")
	fl.StringVar(&a.imaList, "ima-log", vmr.DefaultIMAList, "binary IMA list to include when readable (\"\" for none)")
	fl.StringVar(&a.systemdLog, "systemd-log", cel.SystemdLogPath, "systemd's measurement log to include on a TPM (\"\" for none)")
	fl.DurationVar(&timeout, "timeout", 5*time.Minute, "give up after this long")
	fl.BoolVar(&a.whole, "whole", false, "send the whole logs, not their tails past where the verifier's monitor state stands")
	fl.StringVar(&earPub, "ear-pub", "", "the verifier's EAR public key (PEM): trust only an answer whose EAR it signed, on this challenge's nonce and this machine (the verifier runs with --ear-key)")
	addServerFlag(cmd, &server)
	return cmd
}

// attester is one `ccmr attest`: its flags, the daemon's client (nil: the
// device) and the verifier's EAR key (nil: the channel is trusted).
type attester struct {
	g                                 *globals
	to, base, id, imaList, systemdLog string
	whole                             bool
	server                            *client.Client
	pub                               crypto.PublicKey
}

// run takes a challenge, posts a bundle for it (tails where the verifier's
// monitor stands, the whole logs when it refuses them) and judges the
// answer.
func (a *attester) run(ctx context.Context) error {
	g := a.g
	var since *tail.Since
	if !a.whole {
		var err error
		if since, err = a.since(ctx); err != nil {
			return err
		}
	}
	res, err := a.attempt(ctx, since)
	var se *statusError
	if since != nil && errors.As(err, &se) && se.status == http.StatusConflict {
		// The state moved (another agent, a restored backup, a new boot
		// or policy): the whole logs, which are always judged, with a
		// new challenge.
		g.verbosef("tails refused (%v): sending the whole logs", err)
		res, err = a.attempt(ctx, nil)
	}
	if err != nil {
		return err
	}
	// The answer must be a verdict on the bundle just posted: one that
	// names another machine is some other request's, and a replayed one
	// an earlier bundle's (a bundle answering a fresh challenge was never
	// judged before). Neither says anything about this machine now.
	switch {
	case res.Machine != a.id:
		return &exitError{code: exitFail, err: fmt.Errorf("%s: the verifier's answer is a verdict on machine %q, not %q", a.to, termsafe.String(res.Machine), a.id)}
	case res.Replayed:
		return &exitError{code: exitFail, err: fmt.Errorf("%s: the verifier's answer is a replayed verdict on an earlier bundle, not on the one posted", a.to)}
	}
	if a.pub == nil && strings.HasPrefix(strings.ToLower(a.to), "http://") {
		// Nothing authenticated the answer: anyone on the path could
		// have written it. Said, not refused: an operator on loopback or
		// a private network may accept that.
		tprintf(g.stderr, "ccmr: warning: %s answered over plain HTTP and no --ear-pub checks its EAR: the verdict is not authenticated\n", termsafe.String(a.to))
	}
	if g.json() {
		err = writeJSON(g.stdout, res)
	} else {
		_, err = fmt.Fprintf(g.stdout, "%s: %s\n", termsafe.String(a.id), termsafe.String(res.Verdict))
	}
	if err != nil {
		return err
	}
	if !res.Trusted {
		return &exitError{code: exitFail, err: fmt.Errorf("%s: not trusted", a.id)}
	}
	return nil
}

// since is where the verifier's monitor stands for this machine: the logs
// need only their tails from there. Nil (the whole logs) when it has no
// state, or one that does not read strictly as a since file.
func (a *attester) since(ctx context.Context) (*tail.Since, error) {
	var view fleet.MachineView
	var se *statusError
	err := call(ctx, http.MethodGet, a.base+"/v1/machines/"+url.PathEscape(a.id), nil, &view)
	// An unknown machine: its evidence is refused (404) by the post,
	// where the service counts the refusal.
	if err != nil && !(errors.As(err, &se) && se.status == http.StatusNotFound) {
		return nil, err
	}
	if view.Since == nil || view.Since.Machine != a.id {
		return nil, nil
	}
	// Read as strictly as a since file (no negative offset, no register
	// twice); one that is not is no reason to fail: the whole logs go.
	raw, err := view.Since.Marshal()
	since, err := tail.ParseSince(raw)
	if err != nil {
		fmt.Fprintf(a.g.stderr, "ccmr: %s: the verifier's since: %s: sending the whole logs\n", termsafe.String(a.id), termsafe.String(err.Error()))
		return nil, nil
	}
	return since, nil
}

// attempt takes a challenge, quotes it (the logs' tails past since, or
// whole when since is nil) and posts the bundle; with --ear-pub the answer
// counts only if its EAR says so.
func (a *attester) attempt(ctx context.Context, since *tail.Since) (*fleet.Result, error) {
	g := a.g
	var ch fleet.Challenge
	if err := call(ctx, http.MethodPost, a.base+"/v1/challenge", nil, &ch); err != nil {
		return nil, err
	}
	nonce, err := hex.DecodeString(ch.Nonce)
	if err != nil || len(nonce) == 0 {
		return nil, fmt.Errorf("%s: challenge nonce %q is no hex", a.to, termsafe.String(ch.Nonce))
	}
	var b *bundle.Bundle
	if a.server != nil {
		b, err = quoteFromServer(ctx, a.server, nonce, since)
	} else {
		b, err = g.quoteFromDevice(ctx, nonce, collect.Options{IMAList: a.imaList, NoIMA: a.imaList == "",
			SystemdLog: a.systemdLog, NoSystemdLog: a.systemdLog == "", Since: since,
			Warn: func(m string) { fmt.Fprintf(g.stderr, "ccmr: %s\n", termsafe.String(m)) }})
	}
	if err != nil {
		return nil, err
	}
	defer b.Close()
	// Streamed: the logs go from their files to the request.
	pr, pw := io.Pipe()
	written := make(chan struct{})
	go func() { pw.CloseWithError(b.WriteArchive(ctx, pw)); close(written) }()
	var res fleet.Result
	err = call(ctx, http.MethodPost, a.base+"/v1/machines/"+url.PathEscape(a.id)+"/evidence", pr, &res)
	// A writer the request stopped reading ends before the bundle's files
	// are closed.
	pr.CloseWithError(errors.New("request done"))
	<-written
	if err == nil && a.pub != nil {
		// The answer travelled over a channel attest does not
		// authenticate: only the verifier's signed EAR on this
		// challenge's nonce and this machine decides.
		if eerr := checkEAR(res, a.pub, nonce, a.id); eerr != nil {
			return nil, &exitError{code: exitFail, err: fmt.Errorf("%s: %w", a.to, eerr)}
		}
	}
	return &res, err
}

// quoteFromDevice collects a bundle for nonce from the device and the
// runtime log store, as `ccmr quote` does. Closing the bundle releases them.
func (g *globals) quoteFromDevice(ctx context.Context, nonce []byte, opts collect.Options) (*bundle.Bundle, error) {
	dev, err := g.openDevice(ctx)
	if err != nil {
		return nil, err
	}
	s, err := g.openStore(ctx, dev, false)
	if err != nil {
		dev.Close()
		return nil, err
	}
	b, err := collect.Bundle(ctx, dev, s, nonce, opts)
	if err != nil {
		if s != nil {
			s.Close()
		}
		dev.Close()
		return nil, err
	}
	b.OnClose(closer(func() error {
		if s != nil {
			s.Close()
		}
		return dev.Close()
	}))
	return b, nil
}

// quoteFromServer has the daemon quote nonce. Its bundle is spooled to a
// private temporary file and opened from there (each member's CRC checked),
// so that its logs can be cut to tails and streamed like a device's; a
// bundle that answers another nonce than the challenge's is refused here
// rather than sent to be refused.
func quoteFromServer(ctx context.Context, c *client.Client, nonce []byte, since *tail.Since) (*bundle.Bundle, error) {
	f, err := os.CreateTemp("", "ccmr-attest-*.zip")
	if err != nil {
		return nil, err
	}
	path := f.Name()
	err = c.Quote(ctx, nonce, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, serverError(err)
	}
	b, err := bundle.Open(ctx, path)
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("ccmr serve's bundle: %w", err)
	}
	b.OnClose(closer(func() error { return os.Remove(path) }))
	if !bytes.Equal(b.Nonce, nonce) {
		b.Close()
		return nil, fmt.Errorf("ccmr serve's bundle answers nonce %x, not the challenge's %x", b.Nonce, nonce)
	}
	if b.Logs, err = tail.Logs(b.Logs, since); err != nil {
		b.Close()
		return nil, fmt.Errorf("ccmr serve's bundle: %w", err)
	}
	return b, nil
}

// closer is a function as an io.Closer (bundle.OnClose).
type closer func() error

func (c closer) Close() error { return c() }

// statusError is an answer of the fleet verifier other than 200.
type statusError struct {
	target string
	status int
	msg    string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s: %d %s: %s", e.target, e.status, http.StatusText(e.status), termsafe.String(e.msg))
}

// call sends body to target with method and decodes a 200 answer into out;
// any other status is a *statusError carrying the service's message.
func call(ctx context.Context, method, target string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return usageError("%v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		json.Unmarshal(raw, &e)
		return &statusError{target: target, status: resp.StatusCode, msg: e.Error}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("%s: answer: %w", target, err)
	}
	if dec.More() {
		return errors.New(target + ": answer: more than one JSON value")
	}
	return nil
}

// checkEAR holds the verifier's answer to its EAR: the token must verify
// under pub, state the challenge's nonce, judge machine id (the report's
// bundle name, which the service sets to the machine), and say what the
// answer says: trusted exactly when its one appraisal is affirming or a
// warning. An answer without a token fails.
func checkEAR(res fleet.Result, pub crypto.PublicKey, nonce []byte, id string) error {
	if res.EAR == "" {
		return errors.New("the answer carries no EAR, and --ear-pub wants one")
	}
	claims, err := ear.Verify(res.EAR, pub)
	if err != nil {
		return err
	}
	if want := base64.RawURLEncoding.EncodeToString(nonce); claims.Nonce != want {
		return fmt.Errorf("EAR: eat_nonce %q is not this challenge's %q", termsafe.String(claims.Nonce), want)
	}
	if len(claims.Submods) != 1 {
		return fmt.Errorf("EAR: %d appraisals, want 1", len(claims.Submods))
	}
	for _, a := range claims.Submods {
		if a == nil || a.Report == nil || a.Report.Bundle != id {
			return fmt.Errorf("EAR: the appraisal is not of machine %q", id)
		}
		trusted := a.Status == ear.StatusAffirming || a.Status == ear.StatusWarning
		if trusted != res.Trusted || trusted != a.Report.Trusted {
			return fmt.Errorf("EAR: status %q, the answer says trusted %v", termsafe.String(string(a.Status)), res.Trusted)
		}
	}
	return nil
}
