//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package proxy

import (
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// sockWatched: upstream sockets can be watched here, so guarded
// connections are reused.
const sockWatched = true

// newSockConn watches the socket of c, a TCP connection; nil for anything
// else (a wrapper may hold bytes of its own that the socket does not show).
func newSockConn(c net.Conn, t *turns, records bool) *sockConn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	s := &sockConn{Conn: c, rc: rc, t: t, records: records}
	s.readFn = s.rawRead
	s.peekFn = s.rawPeek
	return s
}

// rawRead is the RawConn.Read callback: one non-blocking read(2) inside the
// lock; false means "wait until readable".
func (s *sockConn) rawRead(fd uintptr) bool {
	t := s.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if s.records {
		t.limbo = false // the TLS layer asks for more: the record before carried none of the response
	}
	for {
		n, err := unix.Read(int(fd), s.buf)
		switch err {
		case nil:
			if n > 0 && !s.took(s.buf[:n]) {
				s.unsolicited = true
				return true
			}
			s.n = n
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		s.err = os.NewSyscallError("read", err)
		return true
	}
}

// rawPeek is the RawConn.Control callback of quietLocked: a non-blocking
// peek at the receive queue.
func (s *sockConn) rawPeek(fd uintptr) {
	for {
		n, err := peekByte(int(fd), &s.peekBuf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
		case err != nil:
			s.peekErr = os.NewSyscallError("recvfrom", err)
		case n > 0:
			s.peekErr = errUnsolicited
		default:
			s.peekErr = errUpstreamClosed
		}
		return
	}
}
