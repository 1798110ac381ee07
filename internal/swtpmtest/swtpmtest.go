//go:build unix

// Package swtpmtest starts a real swtpm (TPM 2.0 emulator) for tests of any
// package: on free loopback ports or a unix socket, with its state in a
// temporary folder, stopped when the test ends.
//
// swtpm is started with --flags not-need-init, so it is powered on but not
// started: the test sends TPM2_Startup itself (Startup, or the TPM backend's
// Device.Startup), as firmware would.
package swtpmtest

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TPM is a running swtpm.
type TPM struct {
	// Spec is what backend/tpm's Open takes: tcp://127.0.0.1:PORT or unix:PATH.
	Spec string
	// Addr is the server (TPM command) address, host:port; empty for unix.
	Addr string
	// Port is the server port (0 for unix); the control channel is Port+1.
	Port int
	// Socket is the unix socket path (unix mode only).
	Socket string
	// Dir holds the TPM state and swtpm's log.
	Dir string
	// Cmd is the swtpm process.
	Cmd *exec.Cmd

	t     testing.TB
	done  chan struct{}
	state *os.ProcessState
}

type options struct {
	unix bool
	dir  string
}

// Option configures Start.
type Option func(*options)

// Unix makes swtpm listen on a unix socket instead of TCP.
func Unix() Option { return func(o *options) { o.unix = true } }

// StateDir uses dir (which must exist) for the TPM state instead of a new
// temporary folder, e.g. one prepared by swtpm_setup.
func StateDir(dir string) Option { return func(o *options) { o.dir = dir } }

// Need returns the path of an external tool, or skips the test with one line
// when it is missing (t.Fatal instead when CCMR_REQUIRE_TOOLS=1).
func Need(t testing.TB, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv("CCMR_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%s not found and CCMR_REQUIRE_TOOLS=1: %v", tool, err)
		}
		t.Skipf("%s not installed", tool)
	}
	return p
}

// Start starts swtpm and registers its end with t.Cleanup.
func Start(t testing.TB, opts ...Option) *TPM {
	t.Helper()
	bin := Need(t, "swtpm")
	var o options
	for _, f := range opts {
		f(&o)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		s, err := start(t, bin, o)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("swtpmtest: starting swtpm: %v", lastErr)
	return nil
}

func start(t testing.TB, bin string, o options) (*TPM, error) {
	dir := o.dir
	if dir == "" {
		dir = t.TempDir()
	}
	s := &TPM{Dir: dir, t: t, done: make(chan struct{})}
	args := []string{"socket", "--tpm2", "--tpmstate", "dir=" + dir, "--flags", "not-need-init",
		"--log", "file=" + filepath.Join(dir, "swtpm.log") + ",level=1"}
	var ctrlAddr string
	if o.unix {
		sd, err := os.MkdirTemp("", "swtpm")
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { os.RemoveAll(sd) })
		s.Socket = filepath.Join(sd, "tpm.sock")
		s.Spec = "unix:" + s.Socket
		ctrl := filepath.Join(sd, "ctrl.sock")
		args = append(args, "--server", "type=unixio,path="+s.Socket, "--ctrl", "type=unixio,path="+ctrl)
	} else {
		port, err := freePortPair()
		if err != nil {
			return nil, err
		}
		s.Port = port
		s.Addr = "127.0.0.1:" + strconv.Itoa(port)
		s.Spec = "tcp://" + s.Addr
		ctrlAddr = "127.0.0.1:" + strconv.Itoa(port+1)
		args = append(args, "--server", "type=tcp,port="+strconv.Itoa(port),
			"--ctrl", "type=tcp,port="+strconv.Itoa(port+1))
	}
	var stderr bytes.Buffer
	s.Cmd = exec.Command(bin, args...)
	s.Cmd.Stdout = &stderr
	s.Cmd.Stderr = &stderr
	if err := s.Cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		s.Cmd.Wait()
		s.state = s.Cmd.ProcessState
		close(s.done)
	}()
	t.Cleanup(func() { s.Kill() })

	// Ready when the socket accepts a connection. swtpm serves one client
	// at a time, so the probe closes its connection at once; for TCP it
	// probes the control channel, then the command port (swtpm opens them
	// one after the other: a client connecting between the two was refused).
	deadline := time.Now().Add(10 * time.Second)
	probes := []string{ctrlAddr, s.Addr}
	for {
		var c net.Conn
		var err error
		if o.unix {
			c, err = net.DialTimeout("unix", s.Socket, time.Second)
		} else {
			c, err = net.DialTimeout("tcp", probes[0], time.Second)
		}
		if err == nil {
			c.Close()
			if o.unix || len(probes) == 1 {
				break
			}
			probes = probes[1:]
			continue
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("swtpm exited (%v): %s", s.state, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			s.Kill()
			return nil, fmt.Errorf("swtpm not listening after 10s: %v: %s", err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s, nil
}

// freePortPair finds a loopback port P with P+1 also free.
func freePortPair() (int, error) {
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if p >= 65535 {
			continue
		}
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		if err != nil {
			continue
		}
		l2.Close()
		return p, nil
	}
	return 0, fmt.Errorf("no free pair of loopback ports")
}

// TCTI returns the tpm2-tools TCTI string for this swtpm
// (TPM2TOOLS_TCTI=...): swtpm:host=127.0.0.1,port=P, or swtpm:path=SOCKET
// for a unix socket (which needs tpm2-tss 4.0 or later; Debian 12 has 3.2).
func (s *TPM) TCTI() string {
	if s.Socket != "" {
		return "swtpm:path=" + s.Socket
	}
	return "swtpm:host=127.0.0.1,port=" + strconv.Itoa(s.Port)
}

// Env returns the environment for running tpm2-tools against this swtpm.
func (s *TPM) Env() []string {
	return append(os.Environ(), "TPM2TOOLS_TCTI="+s.TCTI(), "TSS2_LOG=all+NONE")
}

// Stop suspends swtpm (SIGSTOP): it keeps its sockets but answers nothing.
func (s *TPM) Stop() error { return s.Cmd.Process.Signal(syscall.SIGSTOP) }

// Cont resumes a stopped swtpm (SIGCONT).
func (s *TPM) Cont() error { return s.Cmd.Process.Signal(syscall.SIGCONT) }

// Kill ends swtpm with SIGKILL and waits for it. It is safe to call twice.
func (s *TPM) Kill() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	err := s.Cmd.Process.Signal(syscall.SIGKILL)
	s.Cmd.Process.Signal(syscall.SIGCONT)
	<-s.done
	return err
}

// startupClear is TPM2_Startup(TPM_SU_CLEAR): tag TPM_ST_NO_SESSIONS, size
// 12, TPM_CC_Startup, TPM_SU_CLEAR.
var startupClear = []byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0}

// Startup sends TPM2_Startup(CLEAR) over its own short connection, for
// tests that do not use backend/tpm. TPM_RC_INITIALIZE (already started)
// counts as success.
func (s *TPM) Startup() error {
	var c net.Conn
	var err error
	if s.Socket != "" {
		c, err = net.DialTimeout("unix", s.Socket, 5*time.Second)
	} else {
		c, err = net.DialTimeout("tcp", s.Addr, 5*time.Second)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(startupClear); err != nil {
		return err
	}
	rsp := make([]byte, 10)
	if _, err := io.ReadFull(c, rsp); err != nil {
		return fmt.Errorf("TPM2_Startup response: %w", err)
	}
	rc := uint32(rsp[6])<<24 | uint32(rsp[7])<<16 | uint32(rsp[8])<<8 | uint32(rsp[9])
	if rc != 0 && rc != 0x100 {
		return fmt.Errorf("TPM2_Startup: response code 0x%x", rc)
	}
	return nil
}
