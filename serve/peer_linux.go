//go:build linux

package serve

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// maxCgroupFile bounds /proc/PID/cgroup (a few lines on any real system).
const maxCgroupFile = 64 << 10

// peerOf identifies the peer of a Unix socket connection.
//
// The cgroup is read through the pid, which the peer may have left (and the
// kernel handed to another process) by the time it is read. So a pidfd is
// taken first — SO_PEERPIDFD (Linux 6.5) names the very process that
// connected; on older kernels pidfd_open(pid) — then /proc/PID/cgroup is
// read, and then the pidfd is asked whether its process still lives: a
// pidfd's process cannot be replaced, so if it lives, the pid was still
// its pid while the file was read. With pidfd_open the pid could already
// have been reused before the pidfd was taken; that window needs the peer
// to exit and ~4 million pids to cycle between connect and accept, and
// the uid and gid (which grant most) come from SO_PEERCRED regardless.
func peerOf(c net.Conn) (Peer, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Peer{}, fmt.Errorf("peer: not a Unix socket connection (%T)", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}, fmt.Errorf("peer: %w", err)
	}
	var cred *unix.Ucred
	pidfd := -1
	var cerr error
	err = raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if cerr != nil {
			return
		}
		if n, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD); err == nil {
			pidfd = n
		}
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return Peer{}, fmt.Errorf("peer: SO_PEERCRED: %w", err)
	}
	p := Peer{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid}
	if pidfd < 0 && cred.Pid > 0 {
		if n, err := unix.PidfdOpen(int(cred.Pid), 0); err == nil {
			pidfd = n
		}
	}
	if pidfd < 0 {
		return p, nil
	}
	defer unix.Close(pidfd)
	cg, cgErr := readCgroup(int(cred.Pid))
	admin := isAdmin(int(cred.Pid))
	if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil {
		return p, nil // the process is gone: the files may be another's
	}
	p.Admin = admin
	if cgErr == nil {
		p.Cgroup, p.CgroupKnown = cg, true
	}
	return p, nil
}

// peerUID is the uid SO_PEERCRED reports for c (false when it cannot).
func peerUID(c net.Conn) (uint32, bool) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, false
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return 0, false
	}
	return cred.Uid, true
}

// capSysAdmin is CAP_SYS_ADMIN's bit in /proc/PID/status's CapEff.
const capSysAdmin = 21

// isAdmin reports whether pid holds CAP_SYS_ADMIN in its effective set
// and is in this process's user namespace (false when any of it cannot be
// read: fail closed).
func isAdmin(pid int) bool {
	self, err := os.Readlink("/proc/self/ns/user")
	if err != nil {
		return false
	}
	proc := "/proc/" + strconv.Itoa(pid)
	if ns, err := os.Readlink(proc + "/ns/user"); err != nil || ns != self {
		return false
	}
	f, err := os.Open(proc + "/status")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("CapEff:")); ok {
			caps, err := strconv.ParseUint(string(bytes.TrimSpace(rest)), 16, 64)
			return err == nil && caps&(1<<capSysAdmin) != 0
		}
	}
	return false
}

// readCgroup returns the cgroup v2 path of pid.
func readCgroup(pid int) (string, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), maxCgroupFile)
	for sc.Scan() {
		if rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("0::")); ok {
			return string(rest), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no cgroup v2 line")
}
