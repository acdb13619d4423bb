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
	u, d := splice(unwrap(client), upstream, s.cfg.TunnelIdleTimeout)
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
		x.errKind = ErrHandshake
	}
}

// splice copies both ways between client and upstream until both directions
// end, then closes both. A direction that sees EOF first half-closes its
// destination; an error closes everything. The tunnel ends when no byte
// moved in either direction for idle (checked every idle/idleChecks, so it
// ends between idle and idle+idle/idleChecks after the last byte). It
// returns the bytes client→upstream and upstream→client.
func splice(client, upstream net.Conn, idle time.Duration) (up, down int64) {
	t := new(tunnelPumps) // one allocation for both directions
	rc, ru := rawConnOf(client), rawConnOf(upstream)
	t.p[0].init(upstream, client, ru, rc)
	t.p[1].init(client, upstream, rc, ru)
	t.wg.Add(1)
	go t.copyUp(idle)
	down = t.copyIdle(1, idle)
	t.wg.Wait()
	t.stopWatch()
	client.Close()
	upstream.Close()
	return t.up, down
}

// copyUp copies client→upstream in its own goroutine.
func (t *tunnelPumps) copyUp(idle time.Duration) {
	defer t.wg.Done()
	t.up = t.copyIdle(0, idle)
}

// idleChecks is how many times per idle period a direction that waits looks
// whether bytes moved: the tunnel ends at most idle/idleChecks late.
const idleChecks = 4

// tunnelPumps are a tunnel's two directions.
type tunnelPumps struct {
	p     [2]pump
	ended atomic.Int32 // directions that saw EOF: only the first half-closes
	wg    sync.WaitGroup
	up    int64 // bytes client→upstream, once copyUp is done

	// The watch over the direction left open after the first EOF
	// (watchOther), whose fields mu guards.
	mu    sync.Mutex
	watch *time.Timer // nil before the first EOF and once splice is done
	idle  time.Duration
	quiet time.Time // the last look that saw bytes moved (or the EOF)
	seen  int64     // both counts at that look
}

// copyIdle copies direction i until its source ends or the tunnel has been
// idle for idle. Each step only adds to the direction's own byte count (no
// clock read, no write shared with the other direction); the source's read
// deadline comes every idle/idleChecks, and then the two counts tell whether
// anything moved since the last look.
func (t *tunnelPumps) copyIdle(i int, idle time.Duration) int64 {
	p, other := &t.p[i], &t.p[1-i]
	dst, src := p.dst, p.src
	defer p.release()
	check := idle / idleChecks
	quiet := time.Now() // the idle period runs from here: the start, then the last look that saw bytes moved
	var seen int64      // both counts at that look
	_ = src.SetReadDeadline(quiet.Add(check))
	for {
		n, err := p.step()
		if n > 0 {
			p.moved.Add(n)
		}
		switch {
		case err == nil:
			continue
		case err == io.EOF:
			if t.ended.Add(1) == 1 {
				if !p.shutdownWrite() {
					closeWrite(dst)
				}
				t.watchOther(idle)
			} // else both ended: splice closes both at once
			return p.moved.Load()
		case errors.Is(err, os.ErrDeadlineExceeded):
			now := time.Now()
			if sum := p.moved.Load() + other.moved.Load(); sum != seen {
				seen, quiet = sum, now // moved since the last look: count from now
			}
			if left := idle - now.Sub(quiet); left > 0 {
				_ = src.SetReadDeadline(now.Add(min(check, left)))
				continue
			}
		}
		// Reset, idle or closed: end both directions.
		dst.Close()
		src.Close()
		return p.moved.Load()
	}
}

// watchOther bounds the direction left open after the first one ended
// and half-closed: it may wait to write to a peer that stopped reading,
// which its read deadlines never reach. A timer looks every idle/idleChecks
// (look); when no byte moved either way for idle, it closes both
// connections. No goroutine waits for it: splice stops it when both
// directions are done, which for a tunnel that ends normally is at once.
func (t *tunnelPumps) watchOther(idle time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.idle, t.quiet, t.seen = idle, time.Now(), t.p[0].moved.Load()+t.p[1].moved.Load()
	t.watch = time.AfterFunc(idle/idleChecks, t.look)
}

// look is the watch's timer: it re-arms while bytes move or the idle time
// has not passed, else it closes both connections.
func (t *tunnelPumps) look() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.watch == nil {
		return // splice is done
	}
	now := time.Now()
	if sum := t.p[0].moved.Load() + t.p[1].moved.Load(); sum != t.seen {
		t.seen, t.quiet = sum, now
	}
	if left := t.idle - now.Sub(t.quiet); left > 0 {
		t.watch.Reset(min(t.idle/idleChecks, left))
		return
	}
	t.p[0].dst.Close()
	t.p[0].src.Close()
}

// stopWatch ends the watch, if one was started, once both directions are
// done.
func (t *tunnelPumps) stopWatch() {
	t.mu.Lock()
	if t.watch != nil {
		t.watch.Stop()
		t.watch = nil
	}
	t.mu.Unlock()
}

// pump moves one direction of a tunnel, one step at a time so that every
// step adds to the direction's byte count (the idle check). It holds a pipe
// or a buffer only while bytes move: an idle tunnel holds neither (Go's
// io.Copy between two sockets would hold a pipe, two descriptors, per
// direction for as long as it waits).
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

	// Bytes moved, read by the other direction's idle check; alone on its
	// cache line, away from the fields each step writes.
	_     [64]byte
	moved atomic.Int64
	_     [64]byte
}

type rawOp int8

const (
	opRead  rawOp = iota // rawRead: src into a buffer
	opFill               // rawFill: src into the pipe
	opDrain              // rawDrain: the pipe into dst
)

// init sets the pump up to copy src to dst; rdst and rsrc are their raw
// descriptors, or nil when they are not sockets.
func (p *pump) init(dst, src net.Conn, rdst, rsrc syscall.RawConn) {
	p.dst, p.src = dst, src
	p.rdst, p.rsrc = rdst, rsrc
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

// unwrap returns the connection beneath our wrappers (clientConn,
// idleConn), so that the tunnel reads the socket itself.
func unwrap(c net.Conn) net.Conn {
	switch v := c.(type) {
	case *clientConn:
		return v.Conn
	case *idleConn:
		return v.Conn
	}
	return c
}
