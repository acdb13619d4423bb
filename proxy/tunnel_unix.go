//go:build unix

package proxy

import (
	"net"
	"os"
	"syscall"
)

// rawConnOf returns c's raw connection when c is a socket the pumps can read
// themselves (rawRead): an idle tunnel then holds no buffer.
func rawConnOf(c net.Conn) syscall.RawConn {
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			return rc
		}
	}
	return nil
}

// rawRead is readStep's RawConn.Read callback; false means "wait until
// readable", and no buffer is held while waiting.
func (p *pump) rawRead(fd uintptr) bool {
	p.take()
	for {
		n, err := syscall.Read(int(fd), *p.bp)
		switch err {
		case nil:
			p.n = n
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			p.release()
			return false
		}
		p.errno = os.NewSyscallError("read", err)
		return true
	}
}
