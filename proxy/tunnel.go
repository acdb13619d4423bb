package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// spliceChunk is how much one copy step moves before the idle clock is
// updated. Large enough that TCP-to-TCP copies stay in splice(2).
const spliceChunk = 1 << 20

// relay sends first (what the client already sent) to upstream, then
// splices both ways until the tunnel ends. It returns the bytes
// client→upstream and upstream→client.
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
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		up = copyIdle(upstream, client, idle, &last)
	}()
	down = copyIdle(client, upstream, idle, &last)
	wg.Wait()
	client.Close()
	upstream.Close()
	return up, down
}

// copyIdle copies src to dst in chunks, with a read deadline renewed per
// chunk; a deadline counts as idle only if the shared clock last also shows
// no progress in the other direction.
func copyIdle(dst, src net.Conn, idle time.Duration, last *atomic.Int64) int64 {
	var total int64
	for {
		_ = src.SetReadDeadline(time.Now().Add(idle))
		n, err := io.CopyN(dst, src, spliceChunk)
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
		case errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, last.Load())) < idle:
			continue
		}
		// Reset, idle or closed: end both directions.
		dst.Close()
		src.Close()
		return total
	}
}

func closeWrite(c net.Conn) {
	if hc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = hc.CloseWrite()
		return
	}
	_ = c.Close()
}

// rawConn unwraps our connection wrappers so that TCP-to-TCP copies can use
// splice(2).
func rawConn(c net.Conn) net.Conn {
	switch v := c.(type) {
	case *clientConn:
		return v.Conn
	case *idleConn:
		return v.Conn
	}
	return c
}
