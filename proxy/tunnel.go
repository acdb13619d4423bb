package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// relay sends first (what the client already sent) to upstream, then copies
// both ways until the tunnel ends. It returns the bytes client→upstream and
// upstream→client.
func (s *Server) relay(client, upstream net.Conn, first []byte) (up, down int64) {
	if len(first) > 0 {
		if _, err := upstream.Write(first); err != nil {
			upstream.Close()
			return 0, 0
		}
	}
	u, d := splice(rawConn(client), upstream, s.cfg.TunnelIdleTimeout)
	return u + int64(len(first)), d
}

// tunnelFor relays a tunnel and records its bytes on x.
func (s *Server) tunnelFor(x *exchange, client, upstream net.Conn, first []byte) {
	up, down := s.relay(client, upstream, first)
	x.bytesIn.Add(up)
	x.bytesOut.Add(down)
}

// interceptFor runs an intercepted tunnel and records its bytes on x.
func (s *Server) interceptFor(x *exchange, client net.Conn, first []byte, t *tunnel) {
	up, down, err := s.intercept(client, first, t)
	x.bytesIn.Add(up)
	x.bytesOut.Add(down)
	if err != nil {
		x.errKind = "handshake"
	}
}

// splice copies both ways between client and upstream until both directions
// end, then closes both. A direction that sees EOF half-closes its
// destination; an error closes everything. The tunnel ends when no byte moved
// in either direction for idle. It returns the bytes client→upstream and
// upstream→client.
func splice(client, upstream net.Conn, idle time.Duration) (up, down int64) {
	var last atomic.Int64 // when a byte last moved either way, Unix ns
	last.Store(time.Now().UnixNano())
	pumps := new([2]pump) // one allocation for both directions
	pumps[0].init(upstream, client)
	pumps[1].init(client, upstream)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		up = copyIdle(&pumps[0], idle, &last)
	}()
	down = copyIdle(&pumps[1], idle, &last)
	wg.Wait()
	client.Close()
	upstream.Close()
	return up, down
}

// copyIdle copies src to dst until src ends or the tunnel has been idle for
// idle: src's read deadline is set once per idle period and, when it passes,
// moved to idle after the last byte that moved in either direction.
func copyIdle(p *pump, idle time.Duration, last *atomic.Int64) int64 {
	dst, src := p.dst, p.src
	defer p.release()
	var total int64
	_ = src.SetReadDeadline(time.Now().Add(idle))
	for {
		n, err := p.step()
		total += n
		if n > 0 {
			last.Store(time.Now().UnixNano())
		}
		switch {
		case err == nil:
			continue
		case err == io.EOF:
			closeWrite(dst)
			return total
		case errors.Is(err, os.ErrDeadlineExceeded):
			if quiet := time.Since(time.Unix(0, last.Load())); quiet < idle {
				_ = src.SetReadDeadline(time.Now().Add(idle - quiet))
				continue
			}
		}
		// Reset, idle or closed: end both directions.
		dst.Close()
		src.Close()
		return total
	}
}

// pump moves one direction of a tunnel, one step at a time so that every
// step shows progress to the idle clock. It holds a pipe or a buffer only
// while bytes move: an idle tunnel holds neither (Go's io.Copy between two
// sockets would hold a pipe, two descriptors, per direction for as long as
// it waits).
//
// Between two sockets each step splices what src has into a pipe and on to
// dst, the bytes never copied into Picket; a splice that finds src empty
// gives the pipe back before waiting. Otherwise (a wrapped connection, or a kernel that
// refuses splice) steps go through pooled buffers: 32 KiB, and 256 KiB once a
// read fills a small one, until a read fits in a small one again.
type pump struct {
	dst, src net.Conn
	rsrc     syscall.RawConn // nil: src is not a socket, src.Read
	rdst     syscall.RawConn // nil: dst is not a socket, no splice
	bulk     bool            // buffers: read into large ones
	bp       *[]byte         // the buffer held, from pool
	pool     *sync.Pool
	pipe     *pipe // the pipe held while splicing

	// The raw descriptor callback (allocated once per pump), what it is to
	// do, and its results.
	raw   func(fd uintptr) bool
	op    rawOp
	n     int
	errno error
}

type rawOp int8

const (
	opRead  rawOp = iota // rawRead: src into a buffer
	opFill               // rawFill: src into the pipe
	opDrain              // rawDrain: the pipe into dst
)

func (p *pump) init(dst, src net.Conn) {
	p.dst, p.src = dst, src
	p.rsrc, p.rdst = rawOf(src), rawOf(dst)
	p.raw = p.do
}

// do is the callback of every RawConn call: RawConn.Read and Write take a
// func, and one method value per pump allocates once where three would
// allocate thrice.
func (p *pump) do(fd uintptr) bool {
	switch p.op {
	case opFill:
		return p.rawFill(fd)
	case opDrain:
		return p.rawDrain(fd)
	}
	return p.rawRead(fd)
}

func rawOf(c net.Conn) syscall.RawConn {
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			return rc
		}
	}
	return nil
}

// step moves the next bytes src has to dst and returns how many moved, or
// io.EOF when src ended.
func (p *pump) step() (int64, error) {
	if p.rsrc != nil && p.rdst != nil && spliceWorks.Load() {
		return p.spliceStep()
	}
	b, err := p.readStep()
	if len(b) == 0 {
		return 0, err
	}
	switch n := len(b); {
	case !p.bulk && n == len(*p.bp):
		p.bulk = true
	case p.bulk && n <= smallCopyBuf:
		p.bulk = false
	}
	n, werr := p.dst.Write(b)
	if werr != nil {
		err = werr
	}
	return int64(n), err
}

// readStep reads what src has into a buffer held until the next step.
func (p *pump) readStep() ([]byte, error) {
	if p.rsrc == nil {
		p.take()
		n, err := p.src.Read(*p.bp)
		return (*p.bp)[:n], err
	}
	p.n, p.errno = 0, nil
	p.op = opRead
	if err := p.rsrc.Read(p.raw); err != nil {
		return nil, err // deadline or closed
	}
	if p.errno != nil {
		return nil, p.errno
	}
	if p.n == 0 {
		return nil, io.EOF
	}
	return (*p.bp)[:p.n], nil
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

// take makes sure a buffer of the size the transfer calls for is held.
func (p *pump) take() {
	want := &smallBufs
	if p.bulk {
		want = &largeBufs
	}
	if p.pool != want && p.bp != nil {
		p.pool.Put(p.bp)
		p.bp = nil
	}
	if p.bp == nil {
		p.pool, p.bp = want, want.Get().(*[]byte)
	}
}

// release gives back the buffer and the pipe held, if any.
func (p *pump) release() {
	if p.bp != nil {
		p.pool.Put(p.bp)
		p.bp, p.pool = nil, nil
	}
	if p.pipe != nil {
		putPipe(p.pipe)
		p.pipe = nil
	}
}

func closeWrite(c net.Conn) {
	if hc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = hc.CloseWrite()
		return
	}
	_ = c.Close()
}

// rawConn unwraps our connection wrappers so that the tunnel reads the
// socket itself.
func rawConn(c net.Conn) net.Conn {
	switch v := c.(type) {
	case *clientConn:
		return v.Conn
	case *idleConn:
		return v.Conn
	}
	return c
}
