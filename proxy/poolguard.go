package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
)

// The upstream pool guard: no response ever reaches a request that did not
// ask for it.
//
// net/http's Transport returns a connection to its idle pool as soon as it
// has read the end of a response, and notices bytes that arrive after that
// end only when it next peeks at the connection; a request that takes the
// connection from the pool in between reads them as its own response
// (golang/go#31259). Through a proxy the pool is shared by every client, so
// an origin — or anything on its path — could answer one user's request with
// bytes it sent after another user's response (a 204 with a body, a
// Content-Length shorter than what followed).
//
// So every HTTP/1 connection of the upstream transport is guarded, for the
// fast path and net/http alike (both send through Server.transport):
//
//   - guardConn follows the framing of the requests written and of the
//     responses read exactly as net/http does, so it knows when the
//     response to the outstanding request has ended. From then until the
//     next request starts, the connection is idle: nobody asked for a byte
//     that arrives in that window.
//   - Bytes read in the same read as a response's end, past it, were sent
//     with it: the read returns the response's last bytes with io.EOF, and
//     the Transport never reuses a connection it saw end.
//   - A read while idle (the Transport's peek at a pooled connection)
//     classifies what it gets under the same lock as the start of a request
//     (sockConn reads the socket itself, inside that lock): bytes that came
//     first were unsolicited, so the read fails and the Transport drops the
//     connection. A request that starts first sees them as its own answer
//     only if they arrived after it started, which is then the truth.
//   - The start of a request checks, under that lock, that nothing is
//     waiting: not in the socket's receive queue (a peek), not half-read by
//     the TLS layer. If something is, the request fails before a byte is
//     written; the Transport retries it on a new connection when it can
//     (no body, or a replayable one) and otherwise the client gets a 502.
//   - A 204 that announces a body (Content-Length, Transfer-Encoding: RFC
//     9110 §8.6 forbids both) ends its connection, like a byte beyond it.
//
// What no HTTP/1.1 client can tell apart is a byte that arrives after the
// next request started from the first byte of that request's answer: the
// guard's promise is about bytes that arrived before (a late second write
// of a misbehaving origin is its answer to the next request, as far as the
// wire shows). The 204 rule covers the usual offender either way.
//
// Inside TLS the framing is only visible above the TLS layer, so Picket
// does the upstream TLS handshake itself (DialTLSContext) and puts the guard
// on top; below it, the socket layer follows the TLS record framing of every
// byte it reads, so that whatever the TLS layer holds is accounted for: a
// record partly read, or whole records not yet seen above it (at a
// response's end the guard asks the TLS layer for them: tlsHolds). Where the socket
// cannot be watched (no raw socket, or a platform without a non-blocking
// peek: poolguard_other.go), every response ends with io.EOF: correct, with
// no upstream keep-alive.

// errUnsolicited is the error of a request whose connection received bytes
// no request asked for; the upstream error page calls it a desync.
var errUnsolicited = errors.New("upstream sent bytes no request asked for")

// errUpstreamClosed fails a request that would start on a connection the
// origin has closed while it was idle; the Transport retries it as it does
// its own "server closed idle connection".
var errUpstreamClosed = errors.New("upstream closed the idle connection")

// errAnnouncedBody marks a connection whose last response was a 204 that
// announced a body.
var errAnnouncedBody = errors.New("upstream announced a body on a 204; connection not reused")

// errFramingLost marks a connection whose response framing the guard could
// not follow (a response net/http itself rejects, or one that ends only
// when the connection does): no request may follow on it.
var errFramingLost = errors.New("upstream response framing not followed; connection not reused")

// guardTransport makes every connection of t a guarded one: plain HTTP over
// dial, and HTTPS with the TLS handshake done here over dial, following
// t's TLSClientConfig and TLSHandshakeTimeout. maxHead bounds a response
// head the guard follows; report is told about each connection dropped for
// unsolicited bytes.
func guardTransport(t *http.Transport, dial func(ctx context.Context, network, addr string) (net.Conn, error),
	maxHead int, report func(addr string)) {
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tu := &turns{addr: addr, report: report}
		below, sock := insertSock(c, tu, false)
		return newGuardConn(below, tu, sock, nil, maxHead), nil
	}
	t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tu := &turns{addr: addr, report: report}
		below, sock := insertSock(c, tu, true)
		tc, err := handshake(ctx, t, below, addr)
		if err != nil {
			c.Close()
			return nil, err
		}
		if tc.ConnectionState().NegotiatedProtocol == "h2" {
			return tc, nil // HTTP/2 frames every message: nothing to guard
		}
		return newGuardConn(tc, tu, sock, tc, maxHead), nil
	}
}

// handshake runs the client TLS handshake over c as the Transport would:
// its TLS configuration, the host of addr as server name, bounded by its
// TLSHandshakeTimeout.
func handshake(ctx context.Context, t *http.Transport, c net.Conn, addr string) (*tls.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{}
	if t.TLSClientConfig != nil {
		cfg = t.TLSClientConfig.Clone() // shares the session cache
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	if routeOf(ctx).http1Only {
		cfg.NextProtos = nil // as the Transport's own dial does for an upgrade
	}
	if d := t.TLSHandshakeTimeout; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return tc, nil
}

// insertSock puts a sockConn between the dialled connection c and its
// socket, inside the idle wrapper if there is one (c is not used yet). It
// returns the connection to read and write, and the sockConn, or nil when
// the socket cannot be watched.
func insertSock(c net.Conn, t *turns, records bool) (net.Conn, *sockConn) {
	ic, _ := c.(*idleConn)
	if rc, ok := c.(*recheckedConn); ok {
		ic = rc.idleConn
	}
	inner := c
	if ic != nil {
		inner = ic.Conn
	}
	s := newSockConn(inner, t, records)
	switch {
	case s == nil:
		return c, nil
	case ic != nil:
		ic.Conn = s // the wrappers keep their places above it
		return c, s
	}
	return s, s
}

// turnPhase is where a guarded connection is between requests.
type turnPhase uint8

const (
	phaseIdle     turnPhase = iota // no request outstanding
	phaseAwaiting                  // a request started; its response has not ended
	phaseSwitched                  // after 101 (or a CONNECT's 2xx): no longer HTTP
)

// turns is what a guarded connection's reader and writer share, under mu.
type turns struct {
	mu      sync.Mutex
	phase   turnPhase
	used    bool  // a request has started on the connection
	head    bool  // the outstanding request is a HEAD
	connect bool  // ... a CONNECT
	spoiled error // why no request may start any more; nil while one may
	// limbo: a whole TLS record went up to the TLS layer and what it
	// carried was not seen above it yet.
	limbo bool

	addr   string
	report func(addr string) // told once about unsolicited bytes
}

// spoilLocked records that no request may start on the connection.
func (t *turns) spoilLocked(err error) {
	if t.spoiled != nil {
		return
	}
	t.spoiled = err
	if err == errUnsolicited && t.report != nil {
		t.report(t.addr)
	}
}

// guardConn is the guarded connection the Transport reads and writes.
type guardConn struct {
	net.Conn           // the plaintext stream: the socket layers, or the TLS connection
	t        *turns    // shared with the socket layer
	sock     *sockConn // nil: the socket cannot be watched
	tc       *tls.Conn // nil for plain HTTP
	resp     respEnds  // the reader's (the Transport hands reads on with happens-before edges)
	req      reqEnds   // the writer's, under wmu
	// wmu orders writes: the Transport's writeLoop writes, then after an
	// upgrade the caller's goroutine, with no happens-before edge between.
	wmu      sync.Mutex
	probeBuf [1]byte
}

func newGuardConn(c net.Conn, t *turns, sock *sockConn, tc *tls.Conn, maxHead int) *guardConn {
	return &guardConn{Conn: c, t: t, sock: sock, tc: tc, resp: respEnds{maxHead: maxHead}, req: reqEnds{maxHead: maxHead}}
}

// Read reads response bytes and stops at the end of the response to the
// outstanding request.
func (g *guardConn) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	if n == 0 || g.resp.state >= respUntilClose {
		return n, err
	}
	if starting := g.resp.starting(); g.tc != nil || starting {
		// TLS: plaintext that arrives while idle was not asked for (the
		// socket layer cannot tell application data from the TLS
		// layer's own records). A response starting takes the method of
		// the request it answers.
		t := g.t
		t.mu.Lock()
		t.limbo = false
		idle := g.tc != nil && t.phase == phaseIdle
		if idle {
			t.spoilLocked(errUnsolicited)
		}
		if starting {
			g.resp.head, g.resp.connect = t.head, t.connect
		}
		t.mu.Unlock()
		if idle {
			return 0, errUnsolicited
		}
	}
	end, ended := g.resp.feed(p[:n])
	switch {
	case g.resp.state == respSwitched:
		g.setPhase(phaseSwitched)
		return n, err
	case g.resp.state == respLost:
		g.spoil(errFramingLost)
		return n, err
	case !ended:
		return n, err
	}
	// The response ended at p[end]. Anything already here beyond it came
	// with it: net/http must not reuse the connection, and does not once it
	// has seen io.EOF.
	beyond := end < n || g.sock != nil && g.tc != nil && g.tlsHolds()
	if beyond || g.sock == nil || g.resp.last {
		switch {
		case beyond:
			g.spoil(errUnsolicited)
		case g.resp.last:
			g.spoil(errAnnouncedBody)
		default:
			g.spoil(errFramingLost)
		}
		return end, io.EOF
	}
	g.setPhase(phaseIdle)
	return end, err
}

// tlsHolds reports whether the TLS layer holds plaintext not read yet, with
// the socket below it refusing to read (a look, not a wait).
func (g *guardConn) tlsHolds() bool {
	g.sock.probe = true
	n, _ := g.tc.Read(g.probeBuf[:])
	g.sock.probe = false
	return n > 0
}

// Write writes request bytes; the first byte of each request checks that
// the connection is quiet.
func (g *guardConn) Write(p []byte) (int, error) {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if g.req.state == reqOff {
		return g.Conn.Write(p)
	}
	if g.req.state == reqBetween && len(p) > 0 {
		if err := g.begin(p); err != nil {
			return 0, err
		}
		if g.req.state == reqOff {
			return g.Conn.Write(p)
		}
	}
	n, err := g.Conn.Write(p)
	g.req.feed(p[:n])
	return n, err
}

// begin starts a request whose first bytes are p, unless the connection
// may not carry one.
func (g *guardConn) begin(p []byte) error {
	t := g.t
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.phase == phaseSwitched:
		g.req.state = reqOff // the bytes of the protocol switched to
		return nil
	case t.spoiled != nil:
		return t.spoiled
	case t.phase != phaseIdle:
		// net/http starts a request before the response the guard follows
		// has ended: the two disagree on its framing.
		t.spoilLocked(errFramingLost)
		return t.spoiled
	case t.used && g.sock == nil:
		t.spoilLocked(errFramingLost) // never reused (see Read)
		return t.spoiled
	case t.used:
		if err := g.sock.quietLocked(); err != nil {
			t.spoilLocked(err)
			return err
		}
	}
	t.used = true
	t.phase = phaseAwaiting
	t.head = hasPrefix(p, "HEAD ")
	t.connect = hasPrefix(p, "CONNECT ")
	g.req.start()
	return nil
}

func hasPrefix(p []byte, s string) bool { return len(p) >= len(s) && string(p[:len(s)]) == s }

func (g *guardConn) setPhase(ph turnPhase) {
	g.t.mu.Lock()
	g.t.phase = ph
	g.t.mu.Unlock()
}

func (g *guardConn) spoil(err error) {
	g.t.mu.Lock()
	g.t.spoilLocked(err)
	g.t.mu.Unlock()
}

// sockConn reads the upstream socket itself, each read inside the turns
// lock, so that a byte is classified (asked for or not) in the same step
// that takes it from the socket. Under TLS (records) it does not classify
// (the TLS layer's own records come and go between responses) but follows
// the record framing of what it reads and tracks whether a record is
// half-read or went up whole and unseen. A read takes what the TLS layer
// asks for, across record ends: one read(2) per batch the socket holds, not
// two per record (its header, then its body; an intercepted 10 MiB download
// cost 18.0 ms of CPU that way, 14.8 ms this way, measured in one run).
type sockConn struct {
	net.Conn // the socket: *net.TCPConn
	rc       syscall.RawConn
	t        *turns
	records  bool
	rec      recordEnds // updated inside the lock by the reader
	probe    bool       // reader goroutine: reads would block (guardConn.tlsHolds)

	// The raw read and peek callbacks (method values made once) and their
	// inputs and results.
	readFn      func(fd uintptr) bool
	peekFn      func(fd uintptr)
	buf         []byte
	n           int
	err         error
	unsolicited bool
	peekBuf     [1]byte
	peekErr     error
}

func (s *sockConn) Read(p []byte) (int, error) {
	if s.probe {
		return 0, errWouldBlock
	}
	if len(p) == 0 {
		return 0, nil
	}
	s.buf, s.n, s.err, s.unsolicited = p, 0, nil, false
	err := s.rc.Read(s.readFn)
	s.buf = nil
	switch {
	case err != nil:
		return 0, err
	case s.unsolicited:
		return 0, errUnsolicited
	case s.err != nil:
		return 0, s.err
	case s.n == 0:
		return 0, io.EOF
	}
	return s.n, nil
}

// took records the bytes b taken from the socket; it runs inside the lock
// and reports whether they may go up.
func (s *sockConn) took(b []byte) bool {
	t := s.t
	if s.records {
		if s.rec.advance(b) {
			t.limbo = true
		}
		return true
	}
	if t.phase == phaseIdle {
		t.spoilLocked(errUnsolicited)
		return false
	}
	return true
}

// quietLocked returns an error unless nothing waits to be read: no TLS
// record half-read or unseen, nothing in the socket's receive queue, and
// the peer has not closed. The caller holds the lock.
func (s *sockConn) quietLocked() error {
	if s.t.limbo || s.rec.mid() {
		return errUnsolicited
	}
	s.peekErr = nil
	if err := s.rc.Control(s.peekFn); err != nil {
		return err
	}
	return s.peekErr
}

// recordEnds follows TLS record framing (a 5-byte header whose last two
// bytes give the length of the body) in the bytes read from the socket.
type recordEnds struct {
	hdr  [5]byte
	got  int // header bytes read of the current record
	left int // body bytes left once the header is complete
}

// advance follows the records through the bytes b, read from the socket
// (the rest of a record, any number of whole ones, the start of the next);
// it reports whether a record ended in them.
func (r *recordEnds) advance(b []byte) (ended bool) {
	for len(b) > 0 {
		if r.got < len(r.hdr) {
			n := copy(r.hdr[r.got:], b)
			r.got += n
			b = b[n:]
			if r.got == len(r.hdr) {
				r.left = int(r.hdr[3])<<8 | int(r.hdr[4])
				if r.left == 0 {
					r.got = 0
					ended = true
				}
			}
			continue
		}
		n := min(len(b), r.left)
		r.left -= n
		b = b[n:]
		if r.left == 0 {
			r.got = 0
			ended = true
		}
	}
	return ended
}

// mid reports whether a record is partly read.
func (r *recordEnds) mid() bool { return r.got != 0 }

// wouldBlockError is what a probing read gets: a temporary timeout, which
// the TLS layer does not hold against the connection.
type wouldBlockError struct{}

func (wouldBlockError) Error() string   { return "proxy: read would block" }
func (wouldBlockError) Timeout() bool   { return true }
func (wouldBlockError) Temporary() bool { return true }

var errWouldBlock net.Error = wouldBlockError{}
