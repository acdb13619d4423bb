package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// conns tracks every accepted client connection so that graceful shutdown
// can wait for hijacked ones (tunnels, intercepted sessions, WebSockets),
// which http.Server.Shutdown does not see.
type conns struct {
	mu        sync.Mutex
	live      slots[clientConn, *clientConn]
	perClient map[netip.Addr]int
	done      chan struct{} // closed when set drains to empty after shutdown began
	down      bool

	max, maxPerClient int // 0 = no limit
}

func newConns(max, maxPerClient int) *conns {
	return &conns{perClient: make(map[netip.Addr]int), max: max, maxPerClient: maxPerClient}
}

// add tracks c unless a connection limit is reached; it reports whether it
// did.
func (t *conns) add(c *clientConn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.max > 0 && len(t.live) >= t.max {
		return false
	}
	if c.client.IsValid() {
		if t.maxPerClient > 0 && t.perClient[c.client] >= t.maxPerClient {
			return false
		}
		t.perClient[c.client]++
	}
	t.live.add(c)
	return true
}

func (t *conns) remove(c *clientConn) {
	t.mu.Lock()
	if t.live.remove(c) && c.client.IsValid() {
		if t.perClient[c.client]--; t.perClient[c.client] <= 0 {
			delete(t.perClient, c.client)
		}
	}
	if t.down && len(t.live) == 0 && t.done != nil {
		close(t.done)
		t.done = nil
	}
	t.mu.Unlock()
}

// each calls fn for every open client connection, under the lock: fn must
// not block.
func (t *conns) each(fn func(*clientConn)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.live {
		fn(c)
	}
}

// count returns the number of open client connections.
func (t *conns) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.live)
}

// drain waits until every tracked connection is closed or ctx ends; then it
// closes whatever is left and returns ctx's error, if any.
func (t *conns) drain(ctx context.Context) error {
	t.mu.Lock()
	t.down = true
	if len(t.live) == 0 {
		t.mu.Unlock()
		return nil
	}
	done := make(chan struct{})
	t.done = done
	t.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	t.mu.Lock()
	left := append([]*clientConn(nil), t.live...)
	t.mu.Unlock()
	for _, c := range left {
		c.Close()
	}
	return ctx.Err()
}

// Listen opens a TCP listener whose accepted connections send keepalive
// probes after keepAlive idle, or none for 0.
func Listen(addr string, keepAlive time.Duration) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: keepAliveFor(keepAlive)}
	return lc.Listen(context.Background(), "tcp", addr)
}

// listener wraps accepted connections in clientConn.
type listener struct {
	net.Listener
	conns *conns
	// guard, for plain-HTTP listeners, checks request framing (maximum
	// head size in bytes; 0 = off).
	guard int
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		cc := &clientConn{idleConn: idleConn{Conn: c}, conns: l.conns}
		if l.guard > 0 {
			cc.guard = newFramingGuard(l.guard)
			cc.guardRef.Store(cc.guard)
		}
		// The per-client count needs the peer's address; a connection
		// behind the PROXY protocol only knows it after reading the header,
		// which must not happen in the accept loop.
		if _, wrapped := c.(interface{ Raw() net.Conn }); !wrapped {
			cc.client = peerAddr(c.RemoteAddr())
		}
		if l.conns.add(cc) {
			return cc, nil
		}
		// Over a connection limit: a clear 503, then close.
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = io.WriteString(c, tooManyConns)
		_ = c.Close()
	}
}

// tooManyConns is the answer beyond a connection limit.
const tooManyConns = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	"Retry-After: 5\r\nConnection: close\r\nContent-Length: 49\r\n\r\n" +
	"Too many connections to the proxy; retry shortly\n"

// idleConn bounds how long a connection may sit idle once idle() is on:
// each Read waits at most the idle time, and a timeout only counts when the
// connection was idle in both directions. With the timeout off it passes
// reads and writes through unchanged.
type idleConn struct {
	net.Conn
	timeout atomic.Int64 // nanoseconds; 0 = off
	last    atomic.Int64 // monoNow of the last read or write
	setAt   int64        // monoNow when the read deadline was last set, 0: never (reader goroutine only)
}

// monoBase is the reading monoNow counts from.
var monoBase = time.Now()

// monoNow is the monotonic clock in nanoseconds since monoBase: the time
// idleConn keeps on every read and write. time.Since of a reading that has
// a monotonic clock reads that clock alone, where time.Now reads the wall
// clock as well; and a deadline of monoBase.Add(...) keeps the monotonic
// reading, so the poller's time.Until reads one clock too.
func monoNow() int64 { return int64(time.Since(monoBase)) }

// idle turns on the idle timeout d (0 turns it off).
func (c *idleConn) idle(d time.Duration) {
	c.last.Store(monoNow())
	c.timeout.Store(int64(d))
}

func (c *idleConn) Read(p []byte) (int, error) {
	d := time.Duration(c.timeout.Load())
	if d <= 0 {
		return c.Conn.Read(p)
	}
	for {
		// Moving the deadline costs a timer update: do it only when an
		// eighth of the idle time has passed since the last move. A
		// deadline that fires early is retried below.
		now := monoNow()
		if c.setAt == 0 || now-c.setAt > int64(d/8) {
			_ = c.Conn.SetReadDeadline(monoBase.Add(time.Duration(now) + d))
			c.setAt = now
		}
		n, err := c.Conn.Read(p)
		if n > 0 {
			c.last.Store(monoNow())
		}
		if err != nil && n == 0 && errors.Is(err, os.ErrDeadlineExceeded) &&
			monoNow()-c.last.Load() < int64(d) {
			c.setAt = 0 // the other direction was busy, or the deadline was early: move it
			continue
		}
		return n, err
	}
}

func (c *idleConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 && c.timeout.Load() > 0 {
		c.last.Store(monoNow())
	}
	return n, err
}

// clientConn is an accepted client connection. While http.Server owns it,
// the idle timeout is off (the server sets its own deadlines); once hijacked
// for an intercepted session or a WebSocket, idle() turns it on so that the
// bound survives the hijack.
type clientConn struct {
	idleConn
	conns     *conns
	slot      int        // its place in conns.live, while it is there (slots)
	client    netip.Addr // for the per-client limit; invalid behind PROXY protocol
	closeOnce sync.Once

	// origDst is where a transparent listener's client was going before the
	// redirect (SO_ORIGINAL_DST), set before the connection is served;
	// invalid elsewhere, or when it could not be read.
	origDst netip.AddrPort

	// guard checks the HTTP framing of what net/http reads (framing.go);
	// nil for TLS listeners. Only the goroutine reading the connection
	// uses it.
	guard    *framingGuard
	guardRef atomic.Pointer[framingGuard] // the same guard, for other goroutines

	// replay holds what the fast path read (past the guard) but did not
	// serve, for net/http to read first after a hand-off (fastpath.go).
	replay []byte
	fast   atomic.Int32                // fast-path state: fastActive, fastIdle, fastClosed
	watch  atomic.Pointer[clientWatch] // the fast path's, once it made one
}

func (c *clientConn) slotAt() *int { return &c.slot }

// Read gives net/http the client's bytes once the framing guard passed
// them.
func (c *clientConn) Read(p []byte) (int, error) {
	if len(c.replay) > 0 {
		n := copy(p, c.replay)
		if c.replay = c.replay[n:]; len(c.replay) == 0 {
			c.replay = nil
		}
		return n, nil
	}
	g := c.guard
	if g == nil {
		return c.idleConn.Read(p)
	}
	if g.done() {
		c.guard = nil // plain reads from now on
		return c.idleConn.Read(p)
	}
	return g.read(&c.idleConn, p)
}

// takeChecked returns the bytes the guard read but net/http did not, and
// turns the guard off (the connection is being hijacked).
func (c *clientConn) takeChecked() []byte {
	g := c.guard
	c.guard = nil
	replay := c.replay
	c.replay = nil
	if g == nil {
		return replay
	}
	return append(append(replay, g.out...), g.buf...)
}

// rejected returns the status of a refused request head, or 0.
func (c *clientConn) rejected() int {
	if g := c.guardRef.Load(); g != nil {
		return g.refused()
	}
	return 0
}

// Close closes the connection once and stops tracking it.
func (c *clientConn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		err = c.Conn.Close()
		c.conns.remove(c)
	})
	return err
}

// CloseWrite half-closes the write side when the underlying conn can.
func (c *clientConn) CloseWrite() error {
	if hc, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return hc.CloseWrite()
	}
	return c.Close()
}
