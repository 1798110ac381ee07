package serve

import "net"

// PeerOf identifies the peer of c, a Unix socket connection accepted from
// Listen, Activated or LimitListener, as the HTTP API does (SO_PEERCRED,
// cgroup, admin): other services on the daemon's sockets (the attestation
// agent's ttrpc API) authorize their calls with it and the same Policy.
func PeerOf(c net.Conn) (Peer, error) {
	if lc, ok := c.(*limitedConn); ok {
		c = lc.Conn
	}
	return peerOf(c)
}

// LimitListener bounds l as Server.Serve bounds its listener: at most n
// connections at once (more wait in the listen backlog), at most a
// quarter of them from one uid (its further connections are closed at
// once), so that one local user cannot hold every slot.
func LimitListener(l net.Listener, n int) net.Listener {
	if n <= 0 {
		n = DefaultMaxConns
	}
	return &limitListener{Listener: l, sem: make(chan struct{}, n), perUID: max(1, n/4), held: map[uint32]int{}}
}
