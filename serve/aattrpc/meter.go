package aattrpc

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/ccmr-dev/ccmr/eventlog/aael"
)

// ttrpc's framing (containerd/ttrpc channel.go): a 10-byte header (length,
// stream id, both big-endian; type; flags) before each message, at most
// 4 MiB of message (frameLimit, below, is lower).
const (
	frameHeader   = 10
	frameRequest  = 1
	frameData     = 3
	maxUnanswered = 16
	// maxUnansweredBytes bounds the messages of one connection read and
	// not yet answered; a single larger message (up to frameLimit) is
	// still read when nothing else is waiting.
	maxUnansweredBytes = 1 << 20
	// frameLimit is the largest message read at all: a request holds one
	// record of at most aael.MaxRecordSize bytes, plus its field tags and
	// ttrpc's few bytes of metadata. A header announcing more closes the
	// connection before ttrpc allocates the message (it would allocate up
	// to 4 MiB on the header's word: red team 7).
	frameLimit = aael.MaxRecordSize + 64<<10
)

// errFrameTooLarge closes a connection whose next message is over
// frameLimit. It wraps io.ErrUnexpectedEOF because ttrpc closes a
// connection only on an end of file (or a reset): on any other read error
// it logs and keeps the connection open, idle, for good.
var errFrameTooLarge = fmt.Errorf("ttrpc message over the request size limit: %w", io.ErrUnexpectedEOF)

// meter is the back pressure ttrpc's server lacks. ttrpc reads a
// connection as fast as the peer writes and starts a goroutine for every
// request, which lives until its answer is written; a peer that sends
// requests and never reads the answers (red team 7: 50,000 requests of
// 40 bytes, refused ones included, held 50,000 goroutines and 330 MB)
// would grow the daemon without bound. So the connection is read message
// by message, and the next message is read only while fewer than
// maxUnanswered messages of at most maxUnansweredBytes in all wait for
// their answer: a peer that stops reading stops being read, and holds
// what one connection may hold, no more.
//
// A message is counted when ttrpc will answer it (a request, a data
// message, one on an even stream id, one over the size limit: each gets
// exactly one answer); its answer is counted when written, by the stream
// id in the answer's header. Other message types ttrpc ignores.
type meter struct {
	mu     sync.Mutex
	cond   *sync.Cond
	closed bool
	n      int              // messages unanswered
	bytes  int64            // their sizes
	sizes  map[uint32][]int // unanswered sizes by stream id
	rhdr   [frameHeader]byte
	rpend  []byte // header bytes read and not yet handed out
	rrem   int64  // bytes of the current message still to hand out
	whdr   [frameHeader]byte
	wn     int   // header bytes of the current answer seen
	wrem   int64 // bytes of the current answer still to be written
}

func (m *meter) init() {
	m.cond = sync.NewCond(&m.mu)
	m.sizes = map[uint32][]int{}
}

func (m *meter) close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cond.Broadcast()
}

// read hands out c's bytes, a message at a time, waiting before a
// message's header while the unanswered ones are at the bound.
func (m *meter) read(c net.Conn, p []byte) (int, error) {
	if len(m.rpend) > 0 {
		n := copy(p, m.rpend)
		m.rpend = m.rpend[n:]
		return n, nil
	}
	if m.rrem > 0 {
		if int64(len(p)) > m.rrem {
			p = p[:m.rrem]
		}
		n, err := c.Read(p)
		m.rrem -= int64(n)
		return n, err
	}
	m.mu.Lock()
	for !m.closed && m.n > 0 && (m.n >= maxUnanswered || m.bytes >= maxUnansweredBytes) {
		m.cond.Wait()
	}
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return 0, net.ErrClosed
	}
	if _, err := io.ReadFull(c, m.rhdr[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			err = io.EOF // a header cut short: the peer left
		}
		return 0, err
	}
	size := binary.BigEndian.Uint32(m.rhdr[0:4])
	id := binary.BigEndian.Uint32(m.rhdr[4:8])
	if size > frameLimit {
		return 0, errFrameTooLarge
	}
	if typ := m.rhdr[8]; typ == frameRequest || typ == frameData || id%2 == 0 {
		m.mu.Lock()
		m.n++
		m.bytes += int64(size)
		m.sizes[id] = append(m.sizes[id], int(size))
		m.mu.Unlock()
	}
	m.rrem = int64(size)
	m.rpend = m.rhdr[:]
	n := copy(p, m.rpend)
	m.rpend = m.rpend[n:]
	return n, nil
}

// wrote notes the answers in b, bytes written to the connection.
func (m *meter) wrote(b []byte) {
	for len(b) > 0 {
		if m.wrem > 0 {
			k := min(int64(len(b)), m.wrem)
			m.wrem -= k
			b = b[k:]
			continue
		}
		k := copy(m.whdr[m.wn:], b)
		m.wn += k
		b = b[k:]
		if m.wn < frameHeader {
			return
		}
		m.wn = 0
		m.wrem = int64(binary.BigEndian.Uint32(m.whdr[0:4]))
		m.answered(binary.BigEndian.Uint32(m.whdr[4:8]))
	}
}

// answered frees the place of one message of stream id.
func (m *meter) answered(id uint32) {
	m.mu.Lock()
	if s := m.sizes[id]; len(s) > 0 {
		m.n--
		m.bytes -= int64(s[0])
		if len(s) == 1 {
			delete(m.sizes, id)
		} else {
			m.sizes[id] = s[1:]
		}
	}
	m.mu.Unlock()
	m.cond.Broadcast()
}
