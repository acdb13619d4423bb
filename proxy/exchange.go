package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// tunnel is what is known of an intercepted CONNECT once its TLS handshake
// is done. It is shared, read-only, by every request inside the tunnel: the
// exchange of each holds it.
type tunnel struct {
	client    netip.Addr
	host      string      // host:port from the CONNECT
	conn      *clientConn // the accepted connection the CONNECT came on; nil if unknown
	start     time.Time
	sni       string        // server name the client sent in its ClientHello
	authority string        // host:port the requests inside are for
	urlHost   string        // authority as written in their URLs (no ":443")
	pin       string        // transparent mode: the original destination to dial
	allowed   bool          // the CONNECT was allowed (not intercepted for a block or warn page only): what is not TLS may be relayed
	guard     *framingGuard // checks the requests inside; read only by the tunnel's reader
	user      string        // authenticated at CONNECT, for the requests inside
	groups    []string
}

// exchange is the state of one request (or one tunnel) from accept to the
// access-log line: Picket's own per-request state, in one place. Each path
// makes it where the request enters Picket (newExchange) and passes it
// explicitly to every step; only where a library stands between two of our
// steps does it travel in the request's context (exchangeKey). Exactly one
// goroutine writes the fields before the response is returned; byte
// counters are atomic because bodies are read on other goroutines.
type exchange struct {
	start  time.Time
	req    Request
	proto  string  // the client's protocol: "HTTP/1.1", "HTTP/2.0"; "" for a transparent TLS connection
	tunnel *tunnel // non-nil inside an intercepted tunnel

	// Where the request came from and where its response goes.
	conn      *clientConn       // the accepted client connection; nil if unknown (an HTTP/2 stream)
	stream    *h2Stream         // the HTTP/2 stream; nil over HTTP/1.1
	deadlines *handlerDeadlines // the HTTP/1.1 handler's writer, for the request body's read deadline; nil on the fast path and over HTTP/2
	pin       string            // transparent mode: the original destination every dial goes to

	decision     Decision
	status       int
	errKind      ErrKind       // what failed, "" if nothing did
	incident     string        // shown on block and warn pages, logged
	scan         *ScanEvent    // download scan outcome, nil if not scanned
	upload       *ScanEvent    // upload scan outcome (upload.go), nil if not scanned
	ctype        string        // the response's Content-Type, for the squid log
	body         *countingBody // the request body sent upstream, nil if none
	upstreamWait time.Duration // waiting for the upstream's response head
	added        time.Duration // Picket's own time until the response head was ready

	bytesIn  atomic.Int64 // request body bytes from the client
	bytesOut atomic.Int64 // response body bytes to the client
	complete atomic.Bool  // the response body reached EOF
	logOnce  sync.Once
}

// newExchange starts the state of one request read from client (its
// address as the path's entry knows it). A request inside the intercepted
// tunnel t (nil for none) is the tunnel's client's, with the user
// authenticated at CONNECT. The entry then fills in what it knows of the
// client's side (conn, stream, deadlines).
func newExchange(r *http.Request, client netip.Addr, t *tunnel) *exchange {
	x := &exchange{
		start: time.Now(),
		req:   Request{Client: client, Method: r.Method, Connect: r.Method == http.MethodConnect},
		proto: r.Proto,
	}
	if !x.req.Connect {
		x.req.URL = r.URL // a CONNECT's once its target is checked (handleConnect)
	}
	if t != nil {
		x.tunnel, x.req.Client, x.req.Intercepted = t, t.client, true
		x.req.User, x.req.Groups = t.user, t.groups
		x.pin = t.pin
	}
	return x
}

// clientEnd returns where the response body goes (logBody), or nil when
// unknown: the HTTP/2 stream, else the client connection.
func (x *exchange) clientEnd() clientEnd {
	if x.stream != nil {
		return x.stream
	}
	if x.conn == nil {
		return nil // not a non-nil interface holding a nil *clientConn
	}
	return x.conn
}

// bodyDeadliner returns what bounds the reads of the request body: the
// HTTP/2 stream, else net/http's connection through the handler's
// ResponseWriter; both do nothing once the handler returned. Nil on the
// fast path, whose requests have no body.
func (x *exchange) bodyDeadliner() readDeadliner {
	if x.stream != nil {
		return x.stream
	}
	if x.deadlines == nil {
		return nil // not a non-nil interface holding a nil *handlerDeadlines
	}
	return x.deadlines
}

// handlerDeadlines moves a request's read and write deadlines through the
// ResponseWriter of its handler while the handler runs, and does nothing
// once it returned (done): a ResponseWriter must not be used after that
// (http.ResponseController), yet the upstream transport reads and closes
// the request body on a goroutine of its own, and may close it after the
// handler returned — when a response arrives on a connection the
// transport will not reuse, it hands the response over without waiting
// for the request's write to finish, and net/http closes a request body
// read to its end as soon as the handler writes the response head. Over
// HTTP/1.1 a late move lands on the connection net/http has taken back: it
// replaced the past deadline with which net/http interrupts its
// background read between pipelined requests, and the next request hung.
type handlerDeadlines struct {
	mu sync.Mutex
	rc *http.ResponseController // nil once the handler returned
}

func newHandlerDeadlines(w http.ResponseWriter) *handlerDeadlines {
	return &handlerDeadlines{rc: http.NewResponseController(w)}
}

// SetReadDeadline bounds the reads of the request body.
func (d *handlerDeadlines) SetReadDeadline(t time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rc == nil {
		return nil
	}
	return d.rc.SetReadDeadline(t)
}

// SetWriteDeadline bounds the writes of the response.
func (d *handlerDeadlines) SetWriteDeadline(t time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rc == nil {
		return nil
	}
	return d.rc.SetWriteDeadline(t)
}

// done is called before the handler returns; no deadline moves after it.
func (d *handlerDeadlines) done() {
	d.mu.Lock()
	d.rc = nil
	d.mu.Unlock()
}

// Context values. Picket passes its per-request state explicitly; a
// request's context carries a value only across a library that offers no
// other way between two of our functions, one key for each:
//   - connKey: net/http's ConnContext (withConn) → the handler (ServeHTTP,
//     serveTransparentHTTP): the accepted *clientConn;
//   - exchangeKey: forward → goproxy → roundTrip: the request's *exchange;
//   - routeKey: outbound (and a fast-path tunnel's connection) →
//     http.Transport → the dialler (DialContext, handshake) and
//     Upstream.RoundTrip: the request's route.
type (
	connKey     struct{}
	exchangeKey struct{}
	routeKey    struct{}
)

// withConn is the ConnContext of our http.Servers: their handlers find the
// accepted connection with connFrom.
func withConn(ctx context.Context, c net.Conn) context.Context {
	if cc, ok := c.(*clientConn); ok {
		return context.WithValue(ctx, connKey{}, cc)
	}
	return ctx
}

// connFrom returns the client connection net/http read a request from, or
// nil.
func connFrom(ctx context.Context) *clientConn {
	c, _ := ctx.Value(connKey{}).(*clientConn)
	return c
}

// exchangeOf returns the exchange forward attached to a request goproxy
// hands to roundTrip. Every request reaches goproxy through forward; one
// that did not would start a fresh exchange rather than fail.
func exchangeOf(r *http.Request) *exchange {
	if x, ok := r.Context().Value(exchangeKey{}).(*exchange); ok {
		return x
	}
	return newExchange(r, clientAddr(r.RemoteAddr), nil)
}

// route is what the dialler must know of an outgoing request that
// http.Transport does not tell it.
type route struct {
	pin string // transparent mode: dial this address (the original destination), whatever host the request names
	// http1Only marks an upgrade, which must go over HTTP/1.1. The
	// Transport's own TLS dial leaves h2 out of ALPN for such a request and
	// keeps its connections apart; a DialTLSContext is not told, so
	// handshake (poolguard.go) reads this.
	http1Only bool
}

// withRoute attaches rt to ctx for the dialler.
func withRoute(ctx context.Context, rt route) context.Context {
	return context.WithValue(ctx, routeKey{}, rt)
}

// routeOf returns the route attached to ctx: the zero route (dial the host
// the request names, any protocol) when none is.
func routeOf(ctx context.Context) route {
	rt, _ := ctx.Value(routeKey{}).(route)
	return rt
}

// peerAddr is the IP address of a connection's peer, without formatting
// and parsing it for a TCP connection.
func peerAddr(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort().Addr().Unmap()
	}
	return clientAddr(a.String())
}

// clientAddr parses the address part of a RemoteAddr ("ip:port").
func clientAddr(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// logURL renders u for the access log: scheme://host/path, never userinfo,
// and the query only when the administrator asked for it.
func logURL(u *url.URL, withQuery bool) string {
	if u == nil {
		return ""
	}
	var b strings.Builder
	b.Grow(len(u.Scheme) + len(u.Host) + len(u.Path) + 4)
	if u.Scheme != "" {
		b.WriteString(u.Scheme)
		b.WriteString("://")
	}
	b.WriteString(u.Host)
	b.WriteString(u.EscapedPath())
	if withQuery && u.RawQuery != "" {
		b.WriteByte('?')
		b.WriteString(u.RawQuery)
	}
	return b.String()
}

// logAccess writes the exchange's single access-log line.
func (s *Server) logAccess(x *exchange) {
	x.logOnce.Do(func() {
		if s.cfg.AccessFormat == AccessSquid {
			if s.cfg.AccessWriter != nil {
				b := squidLine(make([]byte, 0, 256), x, time.Now(), s.cfg.LogQuery)
				_, _ = s.cfg.AccessWriter.Write(b)
			}
		} else {
			s.jsonAccess(x)
		}
		if s.cfg.Observe != nil {
			s.cfg.Observe(s.event(x))
		}
	})
}

// jsonAccess writes the exchange's access-log line as JSON.
func (s *Server) jsonAccess(x *exchange) {
	ev := s.cfg.AccessLog.Info()
	if ev == nil {
		return // access_log = "off": nothing to format
	}
	ev = ev.
		Str(fClient, x.req.Client.String()).
		Str(fUser, userOrDash(x.req.User)).
		Str(fMethod, x.req.Method).
		Str(fURL, logURL(x.req.URL, s.cfg.LogQuery)).
		Int(fStatus, x.status).
		Int64(fBytesIn, x.bytesIn.Load()).
		Int64(fBytesOut, x.bytesOut.Load()).
		Float64(fDuration, float64(time.Since(x.start).Microseconds())/1000).
		Str(fAction, x.action())
	if len(x.req.Groups) > 0 {
		ev = ev.Strs(fGroups, x.req.Groups)
	}
	if x.proto != "" { // none for a redirected TLS connection
		ev = ev.Str(fProto, x.proto)
	}
	if x.decision.Verdict != "" {
		ev = ev.Str(fVerdict, x.decision.Verdict)
		if x.decision.Category != "" {
			ev = ev.Str(fCategory, x.decision.Category)
		}
		if x.decision.VerdictSource != "" {
			ev = ev.Str(fSource, x.decision.VerdictSource)
		}
		if x.decision.VerdictCached {
			ev = ev.Bool(fCached, true)
		}
	}
	if x.decision.Rule != "" {
		ev = ev.Str(fRule, x.decision.Rule)
	}
	if x.decision.Stage != "" {
		ev = ev.Str(fStage, x.decision.Stage)
	}
	if x.incident != "" {
		ev = ev.Str(fIncident, x.incident)
	}
	if x.errKind != "" {
		ev = ev.Str(fError, string(x.errKind))
	}
	ev = scanFields(ev, x.scan, downloadFields)
	ev = scanFields(ev, x.upload, uploadFields)
	if x.tunnel != nil {
		ev = ev.Str(fTunnel, x.tunnel.host)
	}
	if x.status != http.StatusSwitchingProtocols && x.req.Method != http.MethodConnect && x.req.Method != http.MethodHead {
		ev = ev.Bool(fComplete, x.complete.Load())
	}
	ev.Send()
}

// action names what happened for the log: the decision, or "error" when an
// allowed request failed upstream.
func (x *exchange) action() string {
	switch {
	case x.decision.Action == Block:
		return "block"
	case x.decision.Action == Warn:
		return "warn"
	case x.errKind != "":
		return "error"
	case x.req.Connect && x.decision.Intercept:
		return "intercept"
	case x.req.Connect:
		return "tunnel"
	}
	return "allow"
}

// countingBody counts the request body bytes sent upstream, remembers a
// failure to read them from the client (a malformed chunked body, a client
// gone quiet), and bounds each read by the idle timeout: a client that
// announced a body and stops sending it cannot hold the request forever.
type countingBody struct {
	io.ReadCloser
	n     *atomic.Int64
	rc    readDeadliner // the client's connection or HTTP/2 stream; nil inside goproxy-less paths
	idle  time.Duration
	err   error     // first read error other than EOF
	setAt time.Time // when the read deadline was last moved
}

// readDeadliner bounds reads of a request body: an *http.ResponseController
// over HTTP/1.1, an *h2Stream over HTTP/2.
type readDeadliner interface {
	SetReadDeadline(time.Time) error
}

func (b *countingBody) Read(p []byte) (int, error) {
	// Moved at most every eighth of the idle time: over HTTP/2 each move
	// is a message to the connection's serving goroutine.
	if b.rc != nil && b.idle > 0 && time.Since(b.setAt) > b.idle/8 {
		b.setAt = time.Now()
		_ = b.rc.SetReadDeadline(b.setAt.Add(b.idle))
	}
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

// awaitedContinue reports whether the client sent no byte of its body
// because it was waiting for the 100 Continue it asked for (RFC 9110
// §10.1.1): then its body did not fail, the upstream did not answer.
func (b *countingBody) awaitedContinue(in *http.Request) bool {
	return b.n.Load() == 0 && strings.EqualFold(in.Header.Get("Expect"), "100-continue")
}

// Close may drain what is left of the body from the client (net/http does
// when the transport gives up on it, e.g. an Expect: 100-continue the
// upstream never answered): bound that wait too.
func (b *countingBody) Close() error {
	if b.rc != nil && b.idle > 0 {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	}
	return b.ReadCloser.Close()
}

// logBody counts the response body bytes and writes the access-log line when
// goproxy closes it after the copy to the client.
type logBody struct {
	io.ReadCloser
	x     *exchange
	s     *Server
	end   clientEnd // the client's connection or HTTP/2 stream (h2.go), to abort on a failed body; nil if unknown
	setAt time.Time // when the write deadline was last moved
}

func (b *logBody) Read(p []byte) (int, error) {
	// The copy writes what this returns to the client: a client that stops
	// reading must not hold the connection (or the stream), so the write is
	// bounded by the idle timeout (moved at most every eighth of it).
	if b.end != nil {
		if idle := b.s.cfg.TunnelIdleTimeout; time.Since(b.setAt) > idle/8 {
			b.setAt = time.Now()
			_ = b.end.SetWriteDeadline(b.setAt.Add(idle))
		}
	}
	n, err := b.ReadCloser.Read(p)
	b.x.bytesOut.Add(int64(n))
	switch {
	case err == io.EOF:
		b.x.complete.Store(true)
	case err != nil && b.end != nil:
		// The body failed mid-way (upstream cut off, or a trickled download
		// blocked): close the client's connection (reset its HTTP/2
		// stream) so that the response ends in an error, never in a clean
		// end of a chunked body that would pass a truncated file off as
		// complete.
		b.end.abort()
	}
	return n, err
}

func (b *logBody) Close() error {
	if b.end != nil && !b.setAt.IsZero() {
		_ = b.end.SetWriteDeadline(time.Time{})
	}
	err := b.ReadCloser.Close()
	b.s.logAccess(b.x)
	return err
}

// upgradeBody is logBody for a 101 response: goproxy needs the body to be an
// io.ReadWriter to relay the upgraded (WebSocket) connection.
type upgradeBody struct {
	rwc io.ReadWriteCloser
	x   *exchange
	s   *Server
}

func (b *upgradeBody) Read(p []byte) (int, error) {
	n, err := b.rwc.Read(p)
	b.x.bytesOut.Add(int64(n))
	return n, err
}

func (b *upgradeBody) Write(p []byte) (int, error) {
	n, err := b.rwc.Write(p)
	b.x.bytesIn.Add(int64(n))
	return n, err
}

func (b *upgradeBody) Close() error {
	err := b.rwc.Close()
	b.s.logAccess(b.x)
	return err
}

// Body copy buffers. A response body starts with a small buffer; once a
// read fills it (the upstream delivers faster than the client takes) the
// copy moves to a large one, so that bulk downloads take one read and one
// write per 256 KiB instead of per 32 KiB — under profiling, syscalls were
// most of a large download's cost — while slow streams (SSE, long polls)
// never hold more than 32 KiB.
const (
	smallCopyBuf = 32 << 10
	largeCopyBuf = 256 << 10
)

var (
	smallBufs = sync.Pool{New: func() any { b := make([]byte, smallCopyBuf); return &b }}
	largeBufs = sync.Pool{New: func() any { b := make([]byte, largeCopyBuf); return &b }}
)

// WriteTo is what io.Copy (goproxy's response copy) uses: the body moves
// through pooled buffers sized as above. Every read goes through Read, so
// counting, deadlines and aborts are the same.
func (b *logBody) WriteTo(w io.Writer) (int64, error) {
	pool := &smallBufs
	bp := pool.Get().(*[]byte)
	defer func() { pool.Put(bp) }()
	var total int64
	for {
		buf := *bp
		n, err := b.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		if n == len(buf) && pool == &smallBufs {
			pool.Put(bp)
			pool = &largeBufs
			bp = pool.Get().(*[]byte)
		}
	}
}
