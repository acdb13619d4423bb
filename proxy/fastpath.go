package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
// CONNECTs are decided there too (ServeHTTP on a response writer the tunnel
// hijacks), and proxy authentication is checked there as ServeHTTP does.
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
}

// serveFast is the fast path over one accepted plain-HTTP connection.
func (s *Server) serveFast(c *clientConn, l *fastListener) {
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
	var readDeadlineAt time.Time
	for {
		// 1. Wait for the next request, bounded by the idle timeout
		// (moved only when an eighth of it has passed: a deadline costs a
		// timer update). Shutdown closes a connection waiting here, and so
		// does Drain once it served a request (watch is made at the first).
		if now := time.Now(); now.Sub(readDeadlineAt) > s.cfg.IdleTimeout/8 {
			_ = c.SetReadDeadline(now.Add(s.cfg.IdleTimeout))
			readDeadlineAt = now
		}
		fc.setState(fastIdle)
		if s.draining.Load() || watch != nil && s.closeKeep.Load() {
			c.Close()
			return false
		}
		_, err := br.Peek(1)
		if !fc.active() || err != nil {
			c.Close() // shutdown closed it while idle, or the client left
			return false
		}

		// 2. The whole head, within the header timeout once it started.
		head, ok, err := peekHead(br, func() {
			_ = c.SetReadDeadline(time.Now().Add(s.cfg.ReadHeaderTimeout))
			readDeadlineAt = time.Time{} // move it back for the next wait
		})
		if err != nil && !ok {
			c.Close()
			return false
		}
		var req *http.Request
		if ok {
			req = s.simpleRequest(head, rc, fc.remote, fc.tunnel)
		}
		if req == nil {
			_ = c.SetReadDeadline(time.Time{})
			return true
		}
		_, _ = br.Discard(len(head))
		if req.Method == http.MethodConnect { // plain connections only
			// A tunnel: ServeHTTP decides it on a response writer over
			// this connection, which hijacking takes over.
			_ = c.SetReadDeadline(time.Time{})
			fw := &fastWriter{c: c, br: br, h: make(http.Header)}
			s.serve(fw, req, fc.c)
			if !fw.hijacked {
				fw.finish(req, false)
				c.Close()
			}
			return false
		}

		// 3. Proxy authentication, as ServeHTTP's step 3: a 407 or 429
		// keeps the connection (the request had no body), so that the
		// client can retry on it with credentials. Requests inside a
		// tunnel carry the CONNECT's user.
		var id identity
		if s.cfg.Authenticate != nil && fc.tunnel == nil {
			fw := &fastWriter{c: c, h: make(http.Header)}
			var ok bool
			if id, ok = s.authenticate(fw, req, fc.client); !ok {
				if !fw.finish(req, !req.Close && s.keepAlive()) {
					c.Close()
					return false
				}
				continue
			}
		}
		x := newExchange(req, fc.client, fc.tunnel)
		x.conn = fc.c
		if fc.tunnel == nil {
			x.req.User, x.req.Groups = id.user, id.groups
		}

		// 4. The pipeline, as for every request (pipeline.go), with the
		// client watched if the response head takes long.
		if watch == nil {
			watch = newClientWatch(c, br, rc.cancel)
			if fc.c != nil {
				fc.c.watch.Store(watch)
				s.sweepOnce.Do(func() { go s.watchSweep() })
			}
		}
		watch.arm()
		resp, _ := s.roundTrip(x, req)
		if fired, gone := watch.stop(); gone {
			resp.Body.Close() // logs the request (its error is "canceled")
			c.Close()
			return false
		} else if fired {
			readDeadlineAt = time.Time{} // the watch moved the read deadline
		}

		// 5. The response, then the next request or the end.
		if !s.writeFast(c, req, resp) {
			c.Close()
			return false
		}
	}
}

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

// clientWatchTick is the period of the sweep that starts watching the
// clients of slow requests: a request is watched once it has been upstream
// for between one and two ticks.
const clientWatchTick = 250 * time.Millisecond

// clientWatch notices a client that leaves while its request is upstream
// (a browser that navigated away, a script that timed out) and cancels the
// request, as net/http's background read does — but only for requests that
// take a while: a sweep over the connections (watchSweep) starts the watch,
// so that a quick request costs two atomic operations instead of a read or
// a timer. The watch peeks at the connection's reader: a byte (the next
// pipelined request) stays buffered for the loop; EOF or an error means the
// client is gone. One per connection, reused.
type clientWatch struct {
	c      net.Conn
	br     *bufio.Reader
	cancel context.CancelFunc
	done   chan bool // the peek's result: whether the client is gone

	state atomic.Int32  // watchOff, watchArmed or watchReading
	seq   atomic.Uint64 // requests armed so far
	seen  uint64        // seq at the previous sweep (the sweep's own)
	mu    sync.Mutex    // orders the peek's deadline change and stop's abort
}

const (
	watchOff int32 = iota
	watchArmed
	watchReading
)

func newClientWatch(c net.Conn, br *bufio.Reader, cancel context.CancelFunc) *clientWatch {
	return &clientWatch{c: c, br: br, cancel: cancel, done: make(chan bool, 1)}
}

// arm marks a request upstream; the loop does not read until stop.
func (w *clientWatch) arm() {
	w.seq.Add(1)
	w.state.Store(watchArmed)
}

// sweep runs on the sweeping goroutine: a request armed at the previous
// sweep and still upstream starts the watch.
func (w *clientWatch) sweep() {
	seq := w.seq.Load()
	if seq == w.seen && w.state.CompareAndSwap(watchArmed, watchReading) {
		go w.peek()
	}
	w.seen = seq
}

// peek reads until a byte, an error or stop's abort.
func (w *clientWatch) peek() {
	w.mu.Lock()
	if w.state.Load() != watchReading { // stopped already
		w.mu.Unlock()
		w.done <- false
		return
	}
	_ = w.c.SetReadDeadline(time.Time{}) // the header timeout no longer applies
	w.mu.Unlock()
	_, err := w.br.Peek(1)
	gone := err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
	if gone {
		w.cancel()
	}
	w.done <- gone
}

// stop ends the watch before the loop reads again. fired reports whether
// the watch started (and so may have moved the read deadline); gone whether
// it found the client gone.
func (w *clientWatch) stop() (fired, gone bool) {
	if w.state.CompareAndSwap(watchArmed, watchOff) {
		return false, false
	}
	w.mu.Lock()
	w.state.Store(watchOff)
	_ = w.c.SetReadDeadline(aLongTimeAgo) // abort the peek
	w.mu.Unlock()
	return true, <-w.done
}

// aLongTimeAgo is a read deadline that has passed: it aborts a pending read.
var aLongTimeAgo = time.Unix(1, 0)

// watchSweep starts the watches of slow requests, every clientWatchTick,
// until the server has shut down and every connection is gone.
func (s *Server) watchSweep() {
	t := time.NewTicker(clientWatchTick)
	defer t.Stop()
	for range t.C {
		if s.draining.Load() && s.conns.count() == 0 {
			return
		}
		s.conns.each(func(c *clientConn) {
			if w := c.watch.Load(); w != nil {
				w.sweep()
			}
		})
	}
}

var fastReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
var fastWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

// peekHead returns the request head at the start of br (through the empty
// line) without consuming it. ok is false when the head does not fit in
// br's buffer (the fast path declines it). started runs once if the head
// needs more than one read.
func peekHead(br *bufio.Reader, started func()) (head []byte, ok bool, err error) {
	more := false
	for {
		buf, _ := br.Peek(br.Buffered())
		if i := bytes.Index(buf, crlfcrlf); i >= 0 {
			return buf[:i+4], true, nil
		}
		if br.Buffered() == br.Size() {
			return nil, false, nil
		}
		if !more {
			more = true
			started()
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			return nil, false, err
		}
	}
}

var crlfcrlf = []byte("\r\n\r\n")

// simpleRequest parses head into a request when the fast path can serve
// it, or returns nil. The framing guard has already checked the head's
// syntax; this only picks the requests it serves: on a plain connection
// GET or HEAD with an absolute http URL, or CONNECT; inside an intercepted
// tunnel t, GET or HEAD in origin form for the tunnel's authority. HTTP/1.1
// only.
func (s *Server) simpleRequest(head []byte, rc *reqContext, remote string, t *tunnel) *http.Request {
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	var method string
	switch {
	case bytes.HasPrefix(line, []byte("GET ")):
		method, line = http.MethodGet, line[4:]
	case bytes.HasPrefix(line, []byte("HEAD ")):
		method, line = http.MethodHead, line[5:]
	case bytes.HasPrefix(line, []byte("CONNECT ")) && t == nil:
		method, line = http.MethodConnect, line[8:]
	default:
		return nil
	}
	target, ok := bytes.CutSuffix(line, []byte(" HTTP/1.1"))
	if !ok || len(target) == 0 || bytes.IndexByte(target, ' ') >= 0 {
		return nil
	}
	uri := string(target) // one allocation for the URL and RequestURI
	var u *url.URL
	switch {
	case method == http.MethodConnect:
		// The target is checked by handleConnect (connectTarget).
		u = &url.URL{Host: uri}
	case t == nil:
		if !bytes.HasPrefix(target, []byte("http://")) {
			return nil // origin form: Picket's own pages, net/http's
		}
		var err error
		if u, err = url.ParseRequestURI(uri); err != nil || u.Host == "" || s.isSelf(u) {
			return nil
		}
	default:
		// Inside a tunnel: a head the framing guard refused is answered by
		// the tunnel's net/http handler.
		if target[0] != '/' || t.guard != nil && t.guard.refused() != 0 {
			return nil
		}
		var err error
		if u, err = url.ParseRequestURI(uri); err != nil || u.Path == rejectPath {
			return nil
		}
		u.Scheme, u.Host = "https", t.urlHost
	}
	text := string(rest) // one allocation; header values are slices of it
	h := make(http.Header, bytes.Count(rest, []byte("\r\n")))
	closeConn, hosts, host := false, 0, ""
	for len(text) > 2 {
		l, after, _ := strings.Cut(text, "\r\n")
		text = after
		name, value, ok := strings.Cut(l, ":")
		// What net/http would refuse with a 400 is left to it.
		if !ok || !validFieldName(name) || !validFieldValue(value) {
			return nil
		}
		name = textproto.CanonicalMIMEHeaderKey(name)
		value = strings.Trim(value, " \t")
		switch name {
		case "Content-Length", "Transfer-Encoding", "Expect", "Upgrade", "Trailer":
			return nil // a body, or a conversation the fast path does not hold
		case "Connection":
			for _, tok := range strings.Split(value, ",") {
				switch strings.ToLower(strings.TrimSpace(tok)) {
				case "close":
					closeConn = true
				case "upgrade":
					return nil
				}
			}
		case "Host":
			hosts++
			host = value
			continue // the URL's host wins (RFC 9112 §3.2.2)
		}
		h[name] = append(h[name], value)
	}
	if hosts > 1 || hosts == 0 && method != http.MethodConnect {
		return nil // HTTP/1.1 needs one Host header (CONNECT may omit it)
	}
	if t == nil {
		host = u.Host
	} else if !sameAuthority(host, t.authority) {
		return nil // another authority than the tunnel's: net/http answers 421
	}
	return (&http.Request{
		Method:     method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Body:       http.NoBody,
		Host:       host,
		Close:      closeConn,
		RemoteAddr: remote,
		RequestURI: uri,
	}).WithContext(rc.forMethod(method))
}

// fastWriter is the response writer a fast-path CONNECT is decided on:
// ServeHTTP either hijacks the connection (a tunnel) or writes an answer
// (403, 407, 502, ...), sent when it returns, after which the connection
// closes.
type fastWriter struct {
	c        net.Conn
	br       *bufio.Reader
	h        http.Header
	status   int
	body     []byte
	hijacked bool
}

func (w *fastWriter) Header() http.Header { return w.h }

func (w *fastWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *fastWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.body = append(w.body, p...)
	return len(p), nil
}

// Hijack hands the connection over with the bytes already buffered.
func (w *fastWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.hijacked = true
	return w.c, bufio.NewReadWriter(w.br, bufio.NewWriterSize(w.c, 64)), nil
}

// finish sends the answer written as the response to req; keepOpen is
// whether the connection stays open after it. It reports whether the connection can
// carry another request.
func (w *fastWriter) finish(req *http.Request, keepOpen bool) bool {
	w.WriteHeader(http.StatusOK)
	_ = w.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	defer w.c.SetWriteDeadline(time.Time{})
	resp := &http.Response{StatusCode: w.status, Header: w.h, ContentLength: int64(len(w.body)),
		Body: io.NopCloser(bytes.NewReader(w.body))}
	w.h["Content-Length"] = []string{strconv.Itoa(len(w.body))}
	return writeResponse(w.c, req, resp, keepOpen)
}

// writeFast writes resp to the client and closes its body. It reports
// whether the connection can carry another request.
func (s *Server) writeFast(c net.Conn, req *http.Request, resp *http.Response) bool {
	return writeResponse(c, req, resp, !req.Close && !resp.Close && s.keepAlive())
}

// writeResponse writes resp as the answer to req and closes its body;
// keepOpen is whether the connection stays open after it. It reports whether the
// connection can carry another request.
func writeResponse(c net.Conn, req *http.Request, resp *http.Response, keepOpen bool) bool {
	bw := fastWriters.Get().(*bufio.Writer)
	bw.Reset(c)
	defer func() {
		bw.Reset(nil)
		fastWriters.Put(bw)
	}()
	if resp.Body == nil {
		resp.Body = http.NoBody
	}
	code := resp.StatusCode
	noBody := req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified || code < 200
	chunked := !noBody && resp.ContentLength < 0

	// Head.
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(code))
	bw.WriteByte(' ')
	if text := http.StatusText(code); text != "" {
		bw.WriteString(text)
	} else {
		bw.WriteString("status code " + strconv.Itoa(code))
	}
	bw.WriteString("\r\n")
	h := resp.Header
	if _, ok := h["Date"]; !ok {
		bw.WriteString("Date: ")
		var b [32]byte
		bw.Write(time.Now().UTC().AppendFormat(b[:0], http.TimeFormat))
		bw.WriteString("\r\n")
	}
	switch {
	case chunked:
		h.Del("Content-Length")
		h["Transfer-Encoding"] = []string{"chunked"}
	case !noBody:
		h.Del("Transfer-Encoding")
		if _, ok := h["Content-Length"]; !ok {
			h["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
		}
	}
	if !keepOpen {
		h["Connection"] = []string{"close"}
	}
	if err := h.Write(bw); err != nil {
		resp.Body.Close()
		return false
	}
	bw.WriteString("\r\n")

	// Body.
	var err error
	switch {
	case noBody:
	case chunked:
		err = copyChunked(bw, resp)
	default:
		var n int64
		n, err = io.Copy(bw, resp.Body)
		if err == nil && n != resp.ContentLength {
			err = io.ErrUnexpectedEOF
		}
	}
	if err == nil {
		err = bw.Flush()
	}
	resp.Body.Close()
	return keepOpen && err == nil
}

// copyChunked writes resp's body in chunked encoding, then its trailers, flushing each chunk so that
// streams (server-sent events, long polls) are not held back.
func copyChunked(bw *bufio.Writer, resp *http.Response) error {
	_, err := io.Copy(&chunkWriter{bw: bw}, resp.Body)
	if err != nil {
		return err
	}
	bw.WriteString("0\r\n")
	if len(resp.Trailer) > 0 { // complete once the body reached EOF
		if err := resp.Trailer.Write(bw); err != nil {
			return err
		}
	}
	_, err = bw.WriteString("\r\n")
	return err
}

type chunkWriter struct{ bw *bufio.Writer }

func (w *chunkWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	w.bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
	w.bw.WriteString("\r\n")
	w.bw.Write(p)
	w.bw.WriteString("\r\n")
	return len(p), w.bw.Flush()
}

// closeIdleFast closes fast-path connections waiting for a request (at
// shutdown); busy ones close after their response.
func (t *conns) closeIdleFast() {
	t.mu.Lock()
	var idle []*clientConn
	for c := range t.set {
		if c.fast.CompareAndSwap(fastIdle, fastClosed) {
			idle = append(idle, c)
		}
	}
	t.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// validFieldName reports whether name is an HTTP token (RFC 9110 §5.1).
func validFieldName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !isTokenByte[name[i]] {
			return false
		}
	}
	return true
}

// validFieldValue reports whether v holds no control bytes but tab.
func validFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

var isTokenByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()
