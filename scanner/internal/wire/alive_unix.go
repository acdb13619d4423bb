//go:build unix

package wire

import (
	"errors"
	"net"
	"syscall"
)

// peek looks at the socket without reading or blocking: idle is true when
// it is open with nothing to read; otherwise it was closed, failed, or has
// bytes waiting.
func peek(c net.Conn) (idle bool) {
	st, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := st.SyscallConn()
	if err != nil {
		return false
	}
	var rerr error
	var b [1]byte
	if err := rc.Read(func(fd uintptr) bool {
		_, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	}); err != nil {
		return false
	}
	return errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EWOULDBLOCK)
}

// Alive reports whether c is still open and has nothing unread: a pooled
// connection the server closed (clamd's IdleTimeout, an ICAP server's
// keep-alive limit) reads as end of file. It never blocks.
func Alive(c net.Conn) bool { return peek(c) }

// Pending reports whether the peer has sent something (or closed) that is
// not read yet. It never blocks.
func Pending(c net.Conn) bool {
	if _, ok := c.(syscall.Conn); !ok {
		return false
	}
	return !peek(c)
}
