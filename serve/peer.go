package serve

import (
	"fmt"
	"strconv"
)

// Peer is the process at the other end of a connection, as the kernel
// reported it when it connected (SO_PEERCRED), with its cgroup.
type Peer struct {
	UID, GID uint32
	PID      int32
	// Cgroup is the peer's cgroup v2 path ("0::" line of /proc/PID/cgroup);
	// CgroupKnown is false when it could not be read race-free (then no
	// cgroup rule matches the peer).
	Cgroup      string
	CgroupKnown bool
	// Admin is true when the peer was seen, race-free, with CAP_SYS_ADMIN
	// in its effective set and in the daemon's user namespace: only such
	// a uid 0 is the root that can write the log and the registers
	// anyway. Root in a container (uid 0 without a user namespace, which
	// runtimes start without CAP_SYS_ADMIN) is judged by the policy like
	// any other peer.
	Admin bool
}

func (p Peer) String() string {
	c := "?"
	if p.CgroupKnown {
		c = strconv.Quote(p.Cgroup)
	}
	ns := ""
	if p.UID == 0 && !p.Admin {
		ns = " admin=no"
	}
	return fmt.Sprintf("uid=%d gid=%d pid=%d cgroup=%s%s", p.UID, p.GID, p.PID, c, ns)
}
