package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// The fast path serves the commonest proxied requests — GET and HEAD in
// absolute form over HTTP/1.1, without a body — straight from the client
// connection: one goroutine per connection reads the head, runs the same
// pipeline step as every other request (roundTrip: decide, forward, scan,
// log) and writes the response itself. It exists because under profiling
// most of a small request's cost was neither filtering nor forwarding but
// the general machinery around them: net/http's server (a background-read
// goroutine, a context and a response writer per request, two deadline moves)
// and goproxy's response copy. See docs/benchmarks.md.
//
// CONNECTs are decided there too (serve, on a response writer the tunnel
// hijacks), and proxy authentication is checked there as serve does.
// Inside an intercepted tunnel the same loop serves GET and HEAD in origin
// form for the tunnel's authority (intercept.go).
// Anything else — bodies, Expect, upgrades, HTTP/1.0, origin-form requests
// for Picket's own pages, heads the framing guard refused — hands the
// connection, with every byte already read, to the ordinary net/http server
// for the rest of its life. Correctness never depends on the fast path: it
// only ever declines.

// fastListener feeds http.Server the connections the fast path handed off.
// Every accepted connection starts on the fast path.
type fastListener struct {
	net.Listener // the tracking listener (*listener): Accept gives *clientConn
	s            *Server
	handed       chan net.Conn
	once         sync.Once
	done         chan struct{} // closed when the inner listener fails for good
	err          error
}

func newFastListener(s *Server, inner net.Listener) *fastListener {
	return &fastListener{Listener: inner, s: s, handed: make(chan net.Conn), done: make(chan struct{})}
}

func (l *fastListener) Accept() (net.Conn, error) {
	l.once.Do(func() { go l.acceptLoop() })
	select {
	case c := <-l.handed:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

func (l *fastListener) acceptLoop() {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: back off as
				// net/http does, and keep accepting.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				l.s.cfg.Log.Warn().Err(err).Dur("retry_in", delay).Msg("accept failed")
				time.Sleep(delay)
				continue
			}
			l.err = err
			close(l.done)
			return
		}
		delay = 0
		go l.s.serveFast(c.(*clientConn), l)
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// hand gives c to http.Server; the bytes already read come first.
func (l *fastListener) hand(c *clientConn) {
	select {
	case l.handed <- c:
	case <-l.done:
		c.Close()
	}
}

// Fast-path connection states, for graceful shutdown: an idle connection
// (waiting for its next request) may be closed at once.
const (
	fastActive int32 = iota
	fastIdle
	fastClosed
)

// fastConn is a connection on the fast path: an accepted plain-HTTP
// connection, or the decrypted connection inside an intercepted tunnel.
type fastConn struct {
	rw     net.Conn    // requests are read from it (past the framing guard), responses written to it
	c      *clientConn // the accepted connection (shutdown state, the client watch); nil if unknown
	tunnel *tunnel     // the intercepted tunnel; nil for plain HTTP
	remote string      // the client's address, as RemoteAddr gives it
	client netip.Addr  // its IP

	readDeadlineAt time.Time // when the idle read deadline was last moved (fastLoop)
}

// serveFast is the fast path over one accepted plain-HTTP connection.
func (s *Server) serveFast(c *clientConn, l *fastListener) {
	growStack(0)
	remote := c.RemoteAddr().String()
	fc := &fastConn{rw: c, c: c, remote: remote, client: c.client}
	if !fc.client.IsValid() { // behind the PROXY protocol: known once its header is read
		fc.client = clientAddr(remote)
	}
	// Not an allowed client: net/http answers every request with 403.
	if s.clientAllowed(fc.client) {
		rest, handOff := s.serveFastConn(fc)
		if !handOff {
			return
		}
		c.replay = rest
	}
	// net/http serves the connection from here on, starting with the bytes
	// the fast path read.
	c.fast.Store(fastClosed)
	l.hand(c)
}

// serveFastConn runs fastLoop over fc with a pooled reader: for an accepted
// connection, or for the TLS connection inside an intercepted tunnel (past
// the tunnel's framing guard). When the loop declines a request, it returns
// handOff and the bytes read but not served, for net/http to serve the rest
// of the connection with; otherwise the connection has ended.
func (s *Server) serveFastConn(fc *fastConn) (rest []byte, handOff bool) {
	br := fastReaders.Get().(*bufio.Reader)
	br.Reset(fc.rw)
	defer func() {
		br.Reset(nil)
		fastReaders.Put(br)
	}()
	if !s.fastLoop(fc, br) {
		return nil, false
	}
	buffered, _ := br.Peek(br.Buffered())
	return bytes.Clone(buffered), true
}

// fastLoop serves requests from br, read off fc.rw, until the connection
// ends (it returns false, fc.rw closed) or a request is not for the fast
// path (it returns true with the request still in br, the read deadline
// cleared, for net/http).
func (s *Server) fastLoop(fc *fastConn, br *bufio.Reader) (handOff bool) {
	c := fc.rw
	// The requests' context, cancelled when the client is seen gone while a
	// request is upstream (clientWatch): the transport then gives up on it.
	// A redirected connection's route is the same for all its requests:
	// attached once here, outbound finds it.
	base := context.Background()
	if t := fc.tunnel; t != nil && t.pin != "" {
		base = withRoute(base, route{pin: t.pin})
	}
	rc := &reqContext{base: base}
	defer rc.stop()
	var watch *clientWatch // made at the first request that needs it
	for {
		// 1–2. The next request's head (nextHead).
		head, fits, alive := s.nextHead(fc, br, watch != nil)
		if !alive {
			c.Close()
			return false
		}
		var req *http.Request
		if fits {
			req = s.simpleRequest(head, rc, fc.remote, fc.tunnel)
		}
		if req == nil {
			_ = c.SetReadDeadline(time.Time{})
			return true
		}
		_, _ = br.Discard(len(head))
		if req.Method == http.MethodConnect { // plain connections only
			s.fastConnect(fc, br, req)
			return false
		}

		// 3. Proxy authentication, as serve's step 3.
		id, ok, open := s.fastAuthenticate(fc, req)
		if !open {
			c.Close()
			return false
		}
		if !ok {
			continue
		}
		x := newExchange(req, fc.client, fc.tunnel)
		x.conn = fc.c
		if fc.tunnel == nil {
			x.req.User, x.req.Groups = id.user, id.groups
		}

		// 4. The pipeline, as for every request (pipeline.go), with the
		// client watched if the response head takes long.
		if watch == nil {
			watch = s.watchClient(fc, br, rc.cancel)
		}
		watch.arm()
		resp, _ := s.roundTrip(x, req)
		if fired, gone := watch.stop(); gone {
			resp.Body.Close() // logs the request (its error is "canceled")
			c.Close()
			return false
		} else if fired {
			fc.readDeadlineAt = time.Time{} // the watch moved the read deadline
		}

		// 5. The response, then the next request or the end. The client
		// stays watched while the body is copied: one that leaves while a
		// slow body stalls cancels the request, as net/http's background
		// read does, instead of holding the connection and the upstream
		// until the idle timeout.
		watch.arm()
		sent := s.writeFast(c, req, resp)
		if fired, gone := watch.stop(); gone || !sent {
			c.Close()
			return false
		} else if fired {
			fc.readDeadlineAt = time.Time{}
		}
	}
}

// nextHead waits for the next request on fc, bounded by the idle timeout
// (moved only when an eighth of it has passed: a deadline costs a timer
// update), then peeks at its whole head, within the header timeout once it
// started. Shutdown closes a connection waiting here, and so does Drain
// once it served a request (served). fits is false when the head does not
// fit in br (the fast path declines it); alive is false when the connection
// is done with (the caller closes it).
func (s *Server) nextHead(fc *fastConn, br *bufio.Reader, served bool) (head []byte, fits, alive bool) {
	c := fc.rw
	if now := time.Now(); now.Sub(fc.readDeadlineAt) > s.cfg.IdleTimeout/8 {
		_ = c.SetReadDeadline(now.Add(s.cfg.IdleTimeout))
		fc.readDeadlineAt = now
	}
	fc.setState(fastIdle)
	if s.draining.Load() || served && s.closeKeep.Load() {
		return nil, false, false
	}
	_, err := br.Peek(1)
	if !fc.active() || err != nil {
		return nil, false, false // shutdown closed it while idle, or the client left
	}
	head, fits, err = peekHead(br, func() {
		_ = c.SetReadDeadline(time.Now().Add(s.cfg.ReadHeaderTimeout))
		fc.readDeadlineAt = time.Time{} // move it back for the next wait
	})
	return head, fits, err == nil || fits
}

// fastConnect decides a CONNECT read on the fast path: serve runs it on a
// response writer over the connection, which a tunnel hijacks. The
// connection is done with when it returns.
func (s *Server) fastConnect(fc *fastConn, br *bufio.Reader, req *http.Request) {
	c := fc.rw
	_ = c.SetReadDeadline(time.Time{})
	fw := &fastWriter{c: c, br: br, h: make(http.Header)}
	s.serve(fw, req, fc.c)
	if !fw.hijacked {
		fw.finish(req, false)
		c.Close()
	}
}

// fastAuthenticate is serve's step 3 on the fast path. ok is true when the
// request may go on, as the user id. Otherwise the 407, 429 or 503 was
// sent, and the connection is kept (open: the request had no body) so that
// the client can retry on it with credentials. Requests inside a tunnel
// carry the CONNECT's user.
func (s *Server) fastAuthenticate(fc *fastConn, req *http.Request) (id identity, ok, open bool) {
	if s.cfg.Authenticate == nil || fc.tunnel != nil {
		return identity{}, true, true
	}
	fw := &fastWriter{c: fc.rw, h: make(http.Header)}
	if id, ok = s.authenticate(fw, req, fc.client); ok {
		return id, true, true
	}
	return id, false, fw.finish(req, !req.Close && s.keepAlive())
}

var fastReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}

// reqContext is the context of a fast-path connection's requests. Requests
// share one cancellable context, which clientWatch cancels when the client
// leaves, made at the first request that is not a CONNECT: a tunnel is never
// watched, and a context that nothing cancels costs nothing to derive from
// (the dial's deadline would otherwise register with it).
type reqContext struct {
	base, ctx context.Context
	cancel    context.CancelFunc
}

// forMethod is the context for a request with this method.
func (r *reqContext) forMethod(method string) context.Context {
	if method == http.MethodConnect {
		return r.base
	}
	if r.ctx == nil {
		r.ctx, r.cancel = context.WithCancel(r.base)
	}
	return r.ctx
}

func (r *reqContext) stop() {
	if r.cancel != nil {
		r.cancel()
	}
}

// setState records whether the connection waits for a request, for
// graceful shutdown (closeIdleFast).
func (fc *fastConn) setState(state int32) {
	if fc.c != nil {
		fc.c.fast.Store(state)
	}
}

// active moves an idle connection to active; it reports false when
// shutdown closed the connection meanwhile.
func (fc *fastConn) active() bool {
	return fc.c == nil || fc.c.fast.CompareAndSwap(fastIdle, fastActive)
}

// closeIdleFast closes fast-path connections waiting for a request (at
// shutdown); busy ones close after their response.
func (t *conns) closeIdleFast() {
	t.mu.Lock()
	var idle []*clientConn
	for _, c := range t.live {
		if c.fast.CompareAndSwap(fastIdle, fastClosed) {
			idle = append(idle, c)
		}
	}
	t.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}
