package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ccmr-dev/ccmr/bundle/collect"
	"github.com/ccmr-dev/ccmr/eventlog/cel"
	"github.com/ccmr-dev/ccmr/internal/safefs"
	"github.com/ccmr-dev/ccmr/mr"
	"github.com/ccmr-dev/ccmr/serve"
	"github.com/ccmr-dev/ccmr/serve/aattrpc"
	"github.com/ccmr-dev/ccmr/serve/client"
	"github.com/ccmr-dev/ccmr/vmr"
)

func newServeCmd(g *globals) *cobra.Command {
	var sock, aaSock, mode, owner, group, policyFile, imaList, systemdLog string
	var maxConns int
	cmd := &cobra.Command{
		Use:   "serve [--socket PATH] [--policy FILE]",
		Short: "Serve extend, read and quote to the guest's writers on a Unix socket, as a policy allows (docs/serve.md)",
		Long: `Run the logged-extend daemon: it owns the runtime log and its backing
register and serves HTTP/JSON on a Unix socket (docs/openapi-serve.yaml).
Peers are identified by the kernel (uid, gid, pid, cgroup); the policy file
(ccmr-serve-policy/v1) says which virtual registers each may extend and who
may read or quote. Without --policy only root may do anything. Under
systemd socket activation (LISTEN_FDS) the passed socket is served and
--socket is not used (--socket-mode and the owner flags then apply to
--aa-socket alone). With --aa-socket the CoCo attestation agent's ttrpc
method ExtendRuntimeMeasurement is served there too, under the same policy
(its "aa" domains), so the guest's CoCo clients record into this runtime
log. SIGTERM stops it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			perm, err := strconv.ParseUint(mode, 8, 32)
			if err != nil || perm > 0o777 {
				return usageError("--socket-mode %q: want an octal mode such as 0660", mode)
			}
			uid, gid, err := socketOwner(owner, group)
			if err != nil {
				return err
			}
			var pol *serve.Policy
			if policyFile != "" {
				if pol, err = readPolicy(policyFile); err != nil {
					return err
				}
			}
			dev, err := g.openDevice(ctx)
			if err != nil {
				return err
			}
			defer dev.Close()
			store, err := g.openStore(ctx, dev, true)
			if err != nil {
				return err
			}
			defer store.Close()
			l, err := serve.Activated(g.getenv)
			if err != nil {
				return err
			}
			if l == nil {
				if l, err = serve.Listen(sock, os.FileMode(perm), uid, gid); err != nil {
					return err
				}
				defer os.Remove(sock)
			}
			logger := slog.New(slog.NewTextHandler(g.stderr, nil))
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			var aaDone chan error
			if aaSock != "" {
				al, err := serve.Listen(aaSock, os.FileMode(perm), uid, gid)
				if err != nil {
					l.Close()
					return err
				}
				defer os.Remove(aaSock)
				logger.Info("serving the attestation agent's ExtendRuntimeMeasurement", "socket", aaSock)
				aaDone = make(chan error, 1)
				aa := aattrpc.New(aattrpc.Config{Store: store, Policy: pol, Logger: logger, MaxConns: maxConns})
				go func() {
					// Either service failing stops both.
					aaDone <- aa.Serve(ctx, al)
					cancel()
				}()
			}
			logger.Info("serving", "socket", l.Addr().String(), "device", dev.Kind(), "backing", store.Backing().Name, "log", store.Path())
			err = serve.New(serve.Config{Device: dev, Store: store, Policy: pol, Logger: logger, MaxConns: maxConns,
				Quote: collect.Options{IMAList: imaList, NoIMA: imaList == "", SystemdLog: systemdLog, NoSystemdLog: systemdLog == ""},
			}).Serve(ctx, l)
			cancel()
			if aaDone != nil {
				if aerr := <-aaDone; err == nil {
					err = aerr
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&sock, "socket", serve.DefaultSocket, "Unix socket to listen on")
	f.StringVar(&aaSock, "aa-socket", "", "also serve the CoCo attestation agent's ttrpc ExtendRuntimeMeasurement on this Unix socket (its clients' default: "+aattrpc.DefaultSocket+"; docs/serve.md)")
	f.StringVar(&mode, "socket-mode", "0660", "the socket's mode (octal): who may connect at all; the policy says what they may do")
	f.StringVar(&owner, "socket-owner", "", "the socket's owner (user name or uid; default the daemon's)")
	f.StringVar(&group, "socket-group", "", "the socket's group (group name or gid; default the daemon's)")
	f.StringVar(&policyFile, "policy", "", "authorization policy (ccmr-serve-policy/v1, docs/serve.md); default: root only")
	f.StringVar(&imaList, "ima-log", vmr.DefaultIMAList, "binary IMA list to include in quotes when readable (\"\" for none)")
	f.StringVar(&systemdLog, "systemd-log", cel.SystemdLogPath, "systemd's measurement log to include in quotes on a TPM (\"\" for none)")
	f.IntVar(&maxConns, "max-conns", serve.DefaultMaxConns, "connections served at once (more wait in the listen backlog; one uid may hold a quarter of them, its further connections are closed)")
	return cmd
}

// socketOwner resolves --socket-owner and --socket-group (-1: unchanged).
func socketOwner(owner, group string) (uid, gid int, err error) {
	uid, gid = -1, -1
	if owner != "" {
		if uid, err = strconv.Atoi(owner); err != nil {
			u, lerr := user.Lookup(owner)
			if lerr != nil {
				return 0, 0, usageError("--socket-owner %q: %v", owner, lerr)
			}
			uid, _ = strconv.Atoi(u.Uid)
		}
	}
	if group != "" {
		if gid, err = strconv.Atoi(group); err != nil {
			gr, lerr := user.LookupGroup(group)
			if lerr != nil {
				return 0, 0, usageError("--socket-group %q: %v", group, lerr)
			}
			gid, _ = strconv.Atoi(gr.Gid)
		}
	}
	return uid, gid, nil
}

// readPolicy reads the policy file. It must belong to the daemon's user or
// root and be writable by nobody else: whoever can write it grants
// himself every register.
func readPolicy(name string) (*serve.Policy, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, usageError("--policy: %v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, usageError("--policy: %v", err)
	}
	if err := serve.CheckPolicyFile(fi, os.Getuid()); err != nil {
		return nil, usageError("--policy %s: %v", name, err)
	}
	b, err := io.ReadAll(io.LimitReader(f, serve.MaxPolicySize+1))
	if err != nil {
		return nil, usageError("--policy %s: %v", name, err)
	}
	if len(b) > serve.MaxPolicySize {
		return nil, usageError("--policy %s: more than %d bytes", name, serve.MaxPolicySize)
	}
	p, err := serve.ParsePolicy(b)
	if err != nil {
		return nil, usageError("--policy %s: %v", name, err)
	}
	return p, nil
}

// addServerFlag adds --server to a command that can go through the daemon.
func addServerFlag(cmd *cobra.Command, server *string) {
	cmd.Flags().StringVar(server, "server", "", "talk to the `ccmr serve` daemon on this Unix socket instead of the device; \"none\": work on the device even when the default socket exists (env CCMR_SERVER)")
}

// noServer is the --server (CCMR_SERVER) value that works on the device
// directly, even when a daemon listens on the default socket.
const noServer = "none"

// serverClient is the daemon's client when the command goes through one,
// else nil (the command works on the device directly):
//   - --server or CCMR_SERVER names its socket ("none": no daemon);
//   - otherwise, when the device and the runtime log folder are the
//     machine's defaults (no --device, CCMR_DEVICE or --log-dir), the
//     daemon on the default socket, serve.DefaultSocket, when one answers
//     there. It is trusted only if no one but root (or the caller) could
//     have put it there: its folder and every folder above must pass
//     safefs.CheckDir, and the process listening must run as root or as
//     the caller (SO_PEERCRED, on every connection). A socket that fails
//     those checks is an error, not a reason to fall back to the device:
//     someone is impersonating the daemon. A socket nobody listens on (a
//     daemon that stopped) is not used.
func (g *globals) serverClient(server string) (*client.Client, error) {
	if server == "" {
		server = g.getenv("CCMR_SERVER")
	}
	switch {
	case server == noServer:
		return nil, nil
	case server != "":
		return client.New(server), nil
	case g.device != "auto" || g.logDir != "":
		return nil, nil
	}
	return defaultServer(serve.DefaultSocket)
}

// defaultServer is the client of the daemon found on sock, or nil when no
// daemon listens there (see serverClient).
func defaultServer(sock string) (*client.Client, error) {
	fi, err := os.Lstat(sock)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("default daemon socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return nil, fmt.Errorf("default daemon socket %s is not a socket (--server %s works on the device directly)", sock, noServer)
	}
	if err := safefs.CheckDir(filepath.Dir(sock)); err != nil {
		return nil, fmt.Errorf("default daemon socket %s: not trusted: %w (--server %s works on the device directly)", sock, err, noServer)
	}
	uids := []uint32{0, uint32(os.Geteuid())}
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil, nil // a socket left by a daemon that stopped
	}
	if err != nil {
		return nil, fmt.Errorf("default daemon socket %s: %w", sock, err)
	}
	c.Close()
	return client.New(sock, client.ServerUIDs(uids...)), nil
}

// serverValues turns the daemon's answer into values to print.
func serverValues(vs []serve.Value) ([]mr.Value, error) {
	out := make([]mr.Value, 0, len(vs))
	for _, v := range vs {
		d, err := mr.ParseDigest(v.Value)
		if err != nil {
			return nil, fmt.Errorf("ccmr serve answered %s = %q: %w", v.Register, v.Value, err)
		}
		out = append(out, mr.Value{Register: mr.Register{Name: v.Register, Alg: d.Alg, Size: d.Alg.Size(), Index: -1}, Digest: d})
	}
	return out, nil
}

// serverError makes the daemon's refusals and bad-request answers exit 2
// where the direct command would: a 4xx is the caller's request.
func serverError(err error) error {
	var ce *client.Error
	if errors.As(err, &ce) && ce.Status == 400 {
		return &exitError{code: exitUsage, err: err}
	}
	return err
}

// extendViaServer is `extend` through the daemon. Data for a virtual
// register is hashed here (sha384, as the direct command does), so any
// size works; data for a real register goes to the daemon, which hashes
// it for every bank, up to serve.MaxData bytes.
func (g *globals) extendViaServer(ctx context.Context, c *client.Client, name string, d mr.Digest, dataFile string) error {
	defer c.Close()
	var vs []serve.Value
	var err error
	switch {
	case dataFile == "":
		vs, err = c.Extend(ctx, name, d)
	case strings.HasPrefix(name, "mr_"):
		ds, herr := hashInput(ctx, dataFile, g.stdin, []mr.Alg{mr.SHA384})
		if herr != nil {
			return herr
		}
		vs, err = c.Extend(ctx, name, ds[0])
	default:
		data, rerr := readInputFile(ctx, dataFile)
		if rerr != nil {
			return rerr
		}
		if len(data) > serve.MaxData {
			return usageError("--data %s: more than %d bytes for a real register through the daemon", dataFile, serve.MaxData)
		}
		vs, err = c.ExtendData(ctx, name, data)
	}
	if err != nil {
		return serverError(err)
	}
	out, err := serverValues(vs)
	if err != nil {
		return err
	}
	return g.writeValues("serve", out)
}

// readViaServer is `read` through the daemon: the named registers, or
// every virtual register when none is named.
func (g *globals) readViaServer(ctx context.Context, c *client.Client, names []string) error {
	defer c.Close()
	var all []serve.Value
	if len(names) == 0 {
		vs, err := c.List(ctx)
		if err != nil {
			return serverError(err)
		}
		all = vs
	}
	for _, n := range names {
		vs, err := c.Read(ctx, n)
		if err != nil {
			return serverError(err)
		}
		all = append(all, vs...)
	}
	out, err := serverValues(all)
	if err != nil {
		return err
	}
	return g.writeValues("serve", out)
}

// quoteViaServer is `quote` through the daemon: a v2 bundle for the nonce
// (a random one, printed, when none is given), written to out or stdout.
func (g *globals) quoteViaServer(ctx context.Context, cmd *cobra.Command, c *client.Client, nonceHex, out string) error {
	defer c.Close()
	for _, f := range []string{"ima-log", "systemd-log", "since", "add-log", "bundle-format"} {
		if cmd.Flags().Changed(f) {
			return usageError("--%s cannot be used through the daemon (%s): it decides what its bundles carry; --server %s works on the device directly", f, c.Socket(), noServer)
		}
	}
	var nonce []byte
	if nonceHex != "" {
		var err error
		if nonce, err = hex.DecodeString(nonceHex); err != nil || len(nonce) == 0 || len(nonce) > serve.MaxNonce {
			return usageError("--nonce %q: want 1 to %d bytes in hex", nonceHex, serve.MaxNonce)
		}
	} else {
		nonce = make([]byte, 32)
		rand.Read(nonce)
	}
	var err error
	if out != "" && out != "-" {
		err = writeOutput(out, 0o644, func(w io.Writer) error { return c.Quote(ctx, nonce, w) })
	} else {
		err = c.Quote(ctx, nonce, g.stdout)
	}
	if err != nil {
		return serverError(err)
	}
	if nonceHex == "" {
		if out != "" && out != "-" {
			fmt.Fprintf(g.stdout, "nonce %s\n", hex.EncodeToString(nonce))
		} else {
			fmt.Fprintf(g.stderr, "ccmr: nonce %s\n", hex.EncodeToString(nonce))
		}
	}
	return nil
}
