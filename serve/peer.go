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
}

func (p Peer) String() string {
	c := "?"
	if p.CgroupKnown {
		c = strconv.Quote(p.Cgroup)
	}
	return fmt.Sprintf("uid=%d gid=%d pid=%d cgroup=%s", p.UID, p.GID, p.PID, c)
}
