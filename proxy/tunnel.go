package proxy

import (
	"io"
	"net"
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
// moved in either direction for idle: its sweeper (sweeperFor) looks every
// idle/idleChecks, so it ends between idle and idle+idle/idleChecks after
// the last byte, whichever direction is still open and whether it waits to
// read or to write. It returns the bytes client→upstream and
// upstream→client.
func splice(client, upstream net.Conn, idle time.Duration) (up, down int64) {
	t := new(tunnelPumps) // one allocation for both directions
	rc, ru := rawConnOf(client), rawConnOf(upstream)
	t.p[0].init(upstream, client, ru, rc)
	t.p[1].init(client, upstream, rc, ru)
	sw := sweeperFor(idle)
	sw.add(t)
	t.wg.Add(1)
	go t.copyUp()
	down = t.copy(1)
	t.wg.Wait()
	sw.remove(t)
	client.Close()
	upstream.Close()
	return t.up, down
}

// copyUp copies client→upstream in its own goroutine.
func (t *tunnelPumps) copyUp() {
	defer t.wg.Done()
	t.up = t.copy(0)
}

// idleChecks is how many times per idle period the sweeper looks whether
// bytes moved: a tunnel ends at most idle/idleChecks late.
const idleChecks = 4

// tunnelPumps are a tunnel's two directions.
type tunnelPumps struct {
	p     [2]pump
	ended atomic.Int32 // directions that saw EOF: only the first half-closes
	wg    sync.WaitGroup
	up    int64 // bytes client→upstream, once copyUp is done

	// The sweeper's, under its lock: the tunnel's place in its live list
	// (slots), both counts at the last look that saw them change, and when
	// that was (zero before the first look).
	slot  int
	seen  int64
	quiet time.Time
	swept bool // closed as idle
}

func (t *tunnelPumps) slotAt() *int { return &t.slot }

// copy copies direction i until its source ends, or either connection is
// closed (by the other direction's error, or by the sweeper). Each step only
// adds to the direction's own byte count: no clock read, no deadline, no
// write shared with the other direction.
func (t *tunnelPumps) copy(i int) int64 {
	p := &t.p[i]
	dst, src := p.dst, p.src
	defer p.release()
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
			} // else both ended: splice closes both at once
			return p.moved.Load()
		}
		// Reset, idle or closed: end both directions.
		dst.Close()
		src.Close()
		return p.moved.Load()
	}
}

// sweeper ends the tunnels of one idle timeout that moved no byte either
// way for that long. One goroutine, while any such tunnel is live, looks at
// them all every idle/idleChecks: per tunnel that is one entry in a list
// (add, remove), where a deadline per direction would be a runtime timer
// moved on every look and a clock read on every wait, and a direction that
// waits to write (to a peer that stopped reading) is bounded as well as one
// that waits to read.
type sweeper struct {
	idle time.Duration
	mu   sync.Mutex
	live slots[tunnelPumps, *tunnelPumps]
	stop chan struct{} // closed when the last tunnel leaves; nil while no goroutine runs
}

var sweepers struct {
	mu   sync.Mutex
	m    map[time.Duration]*sweeper
	last atomic.Pointer[sweeper] // the one asked for last, found without the lock
}

// sweeperFor returns the sweeper of tunnels with this idle timeout.
func sweeperFor(idle time.Duration) *sweeper {
	if sw := sweepers.last.Load(); sw != nil && sw.idle == idle {
		return sw
	}
	idle = max(idle, idleChecks) // a ticker's period must be positive
	sweepers.mu.Lock()
	defer sweepers.mu.Unlock()
	sw := sweepers.m[idle]
	if sw == nil {
		if sweepers.m == nil {
			sweepers.m = make(map[time.Duration]*sweeper)
		}
		sw = &sweeper{idle: idle}
		sweepers.m[idle] = sw
	}
	sweepers.last.Store(sw)
	return sw
}

// add puts a new tunnel under watch; its idle period starts at the next
// look (so never before now).
func (sw *sweeper) add(t *tunnelPumps) {
	sw.mu.Lock()
	sw.live.add(t)
	if sw.stop == nil {
		sw.stop = make(chan struct{})
		go sw.sweep(sw.stop)
	}
	sw.mu.Unlock()
}

// remove takes an ended tunnel off the list.
func (sw *sweeper) remove(t *tunnelPumps) {
	sw.mu.Lock()
	sw.live.remove(t)
	if len(sw.live) == 0 {
		close(sw.stop)
		sw.stop = nil
	}
	sw.mu.Unlock()
}

// sweep looks at every live tunnel each idle/idleChecks and closes both
// connections of one that moved nothing for idle, until stop is closed.
func (sw *sweeper) sweep(stop <-chan struct{}) {
	tick := time.NewTicker(sw.idle / idleChecks)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			sw.mu.Lock()
			for _, t := range sw.live {
				sum := t.p[0].moved.Load() + t.p[1].moved.Load()
				switch {
				case t.quiet.IsZero() || sum != t.seen:
					t.seen, t.quiet = sum, now // new, or moved since the last look: count from now
				case !t.swept && now.Sub(t.quiet) >= sw.idle:
					t.swept = true
					t.p[0].dst.Close()
					t.p[0].src.Close()
				}
			}
			sw.mu.Unlock()
		}
	}
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
