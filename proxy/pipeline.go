package proxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/picket-proxy/picket/internal/netaddr"
)

// This file is the request pipeline, top to bottom: serve classifies what
// arrived and starts the request's exchange, handleConnect decides tunnels,
// forward hands an HTTP request to goproxy, and roundTrip decides and
// forwards each HTTP request (plain or intercepted). Every step takes the
// exchange it works on. Helpers live in the other files.
// Plain GET and HEAD requests without a body usually skip ServeHTTP and
// goproxy: the fast path (fastpath.go) reads them off the connection and
// calls roundTrip itself after the same steps 1–3: it declines what steps
// 0–2 would answer (net/http then takes the connection over) and runs step
// 3, proxy authentication, itself. Inside intercepted tunnels the fast path
// serves GET and HEAD the same way, ahead of serveInner (intercept.go).

// ServeHTTP is the entry point of every request net/http reads on the
// proxy listener: all that the fast path declined.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.serve(w, r, connFrom(r.Context()))
}

// serve runs a request read on the proxy listener from conn (nil if
// unknown), by net/http or, for a CONNECT, by the fast path.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, conn *clientConn) {
	client := clientAddr(r.RemoteAddr)

	// 0. A request head the framing guard refused (framing.go): answer its
	// status and close; nothing of it was read or forwarded.
	if r.URL.Path == rejectPath {
		if c := conn; c != nil && c.rejected() != 0 {
			status := c.rejected()
			s.cfg.Log.Warn().Str(fClient, client.String()).Int(fStatus, status).Msg("refused an ambiguous or oversized request head")
			refuseHead(w, status)
			return
		}
	}

	// 1. Only the configured client networks may use the proxy.
	if !s.clientAllowed(client) {
		s.cfg.Log.Warn().Str(fClient, client.String()).Msg("client not allowed")
		writePage(w, page{Status: http.StatusForbidden, Title: "Forbidden",
			Msg: "Your address is not allowed to use this proxy."})
		return
	}

	// 2. Origin form, or absolute form naming the proxy itself: local pages
	// (info, CA, PAC), never proxied (that would loop) and open to every
	// allowed client without credentials.
	if r.Method != http.MethodConnect && (!r.URL.IsAbs() || s.isSelf(r.URL)) {
		s.local.ServeHTTP(w, r)
		return
	}

	// 3. Proxy authentication, when configured: 407 without valid
	// credentials, 429 when a client keeps failing. The user travels with
	// the request's exchange (and into a tunnel's inner requests).
	var id identity
	if s.cfg.Authenticate != nil {
		var ok bool
		if id, ok = s.authenticate(w, r, client); !ok {
			return
		}
	}
	x := newExchange(r, client, nil)
	x.conn, x.req.User, x.req.Groups = conn, id.user, id.groups

	// 4. CONNECT: a host-level decision, then block, tunnel or intercept.
	if r.Method == http.MethodConnect {
		s.handleConnect(w, r, x)
		return
	}
	if r.URL.Scheme != "http" && r.URL.Scheme != "https" || r.URL.Host == "" {
		writePage(w, page{Status: http.StatusBadRequest, Title: "Bad request",
			Msg: "Picket forwards http and https URLs only."})
		return
	}
	if !validPort(r.URL) {
		writePage(w, page{Status: http.StatusBadRequest, Title: "Bad request",
			Msg: "The URL's port must be a number from 1 to 65535."})
		return
	}

	// 5. Absolute-form HTTP: goproxy reads it and calls roundTrip.
	s.forward(w, r, x)
}

// forward hands r, an absolute-form request whose state is x, to goproxy,
// which calls roundTrip with x and writes the response to w. It is the only
// way into goproxy.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, x *exchange) {
	if x.stream == nil {
		x.deadlines = newHandlerDeadlines(w)
		defer x.deadlines.done()
	}
	s.gp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), exchangeKey{}, x)))
}

// handleConnect decides a CONNECT, whose state is x, and carries the
// decision out.
func (s *Server) handleConnect(w http.ResponseWriter, r *http.Request, x *exchange) {
	client := x.req.Client
	defer s.logAccess(x)

	// 1. The target must be host:port with a valid port.
	host, ok := connectTarget(r)
	if !ok {
		x.status = http.StatusBadRequest
		writePage(w, page{Status: http.StatusBadRequest, Title: "Bad request",
			Msg: "CONNECT needs a target of the form host:port."})
		return
	}
	x.req.URL = &url.URL{Scheme: "https", Host: host}
	if _, port, _ := net.SplitHostPort(host); !s.dest.connectPortAllowed(port) {
		x.status, x.errKind = http.StatusForbidden, ErrDenied
		writePage(w, page{Status: http.StatusForbidden, Title: "Port not allowed",
			Msg: "Picket does not open tunnels to port " + port + "."})
		return
	}

	// 2. Decide at host level.
	d, err := s.cfg.Decider.Decide(r.Context(), &x.req)
	if err != nil {
		x.status, x.errKind = http.StatusServiceUnavailable, ErrDecide
		s.cfg.Log.Error().Err(err).Str(fHost, host).Msg("could not decide CONNECT")
		writePage(w, page{Status: x.status, Title: "Service unavailable", Msg: "The filter could not decide on this site."})
		return
	}
	if d.Action == Warn && s.pages.isAllowed(client, stripPort(host)) {
		d.Action, d.Reason = Allow, "continued after a warning"
	}
	x.decision = d
	// A block or a warning can only be shown inside an intercepted tunnel;
	// otherwise the CONNECT is refused with the reason in a header.
	if d.Action != Allow && !(d.Intercept && s.cfg.Intercept != nil) {
		refuseConnect(w, x, host)
		return
	}

	// 3. Intercept: terminate TLS with a minted certificate and decide each
	// request inside on its full URL (intercept.go).
	if d.Intercept && s.cfg.Intercept != nil {
		conn, buffered, ok := s.establish(w, x)
		if !ok {
			return
		}
		defer conn.Close()
		s.interceptFor(x, conn, buffered, &tunnel{client: client, host: host, start: x.start, user: x.req.User, groups: x.req.Groups,
			allowed: d.Action == Allow})
		return
	}

	// 4. Tunnel: dial first, so that a failure is still an HTTP answer.
	upstream, err := s.up.dialTunnel(r.Context(), host, "")
	if d, ok := listed(err); ok { // the address dialled is on a threat feed's list
		x.decision = d
		refuseConnect(w, x, host)
		return
	}
	if err != nil {
		ue := classify(host, err)
		x.status, x.errKind = ue.Status, ue.Kind
		writePage(w, errorPage(ue, host))
		return
	}
	conn, buffered, ok := s.establish(w, x)
	if !ok {
		upstream.Close()
		return
	}
	defer conn.Close()
	// Bytes the client sent right behind the CONNECT go first.
	s.tunnelFor(x, conn, upstream, buffered)
}

// refuseConnect answers a CONNECT blocked by x.decision with 403 and the
// reason in a header (nothing else can be shown outside an intercepted
// tunnel).
func refuseConnect(w http.ResponseWriter, x *exchange, host string) {
	d := x.decision
	x.status, x.incident = http.StatusForbidden, newIncident()
	w.Header().Set("X-Picket-Reason", headerSafe(blockReason(d)))
	w.Header().Set("X-Picket-Incident", x.incident)
	writePage(w, page{Status: http.StatusForbidden, Title: "Blocked", Msg: plainReason(d, false),
		Host: stripPort(host), Detail: "Incident " + x.incident, Rule: d.Rule})
}

// connectEstablished answers a CONNECT that opened a tunnel (a []byte: a
// string would be copied into one on every write).
var connectEstablished = []byte("HTTP/1.1 200 Connection established\r\n\r\n")

// establish takes the client connection over from net/http and answers the
// CONNECT with 200. It returns the bytes the client already sent behind the
// CONNECT.
func (s *Server) establish(w http.ResponseWriter, x *exchange) (net.Conn, []byte, bool) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		x.status, x.errKind = http.StatusInternalServerError, ErrHijack
		s.cfg.Log.Error().Err(err).Msg("cannot take over the CONNECT connection")
		return nil, nil, false
	}
	x.status = http.StatusOK
	if _, err := conn.Write(connectEstablished); err != nil {
		conn.Close()
		return nil, nil, false
	}
	var buffered []byte
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		buffered = bytes.Clone(b)
	}
	if c, ok := conn.(*clientConn); ok {
		buffered = append(buffered, c.takeChecked()...) // read ahead by the framing guard
	}
	return conn, buffered, true
}

// roundTrip handles one HTTP request in, plain or read inside an
// intercepted tunnel, whose state is x. goproxy calls it as the request's
// RoundTripper (newGoproxy), the fast path directly. It never returns an
// error: every outcome is a response, and every response logs one line when
// its body is closed.
func (s *Server) roundTrip(x *exchange, in *http.Request) (*http.Response, error) {
	// 1. A warn page's "continue" link is answered here, never forwarded.
	if in.URL.Path == continuePath {
		return s.respond(x, in, s.pages.handleContinue(in, x))
	}

	// 2. Decide on the full URL.
	d, err := s.cfg.Decider.Decide(in.Context(), &x.req)
	if err != nil {
		x.errKind = ErrDecide
		s.cfg.Log.Error().Err(err).Str(fURL, logURL(in.URL, false)).Msg("could not decide request")
		return s.respond(x, in, pageResponse(in, page{Status: http.StatusServiceUnavailable,
			Title: "Service unavailable", Msg: "The filter could not decide on this request."}))
	}
	if d.Action == Warn && s.pages.isAllowed(x.req.Client, in.URL.Hostname()) {
		d.Action, d.Reason = Allow, "continued after a warning"
	}
	x.decision = d
	switch d.Action {
	case Block:
		return s.respond(x, in, s.blockPage(in, x))
	case Warn:
		x.incident = newIncident()
		return s.respond(x, in, s.pages.render(in, x, true, s.pages.continueURL(x)))
	}

	// 3. Uploads are scanned whole before a byte is forwarded (upload.go):
	// an infected one is answered with the block page here.
	if resp := s.scanUpload(in, x); resp != nil {
		return s.respond(x, in, resp)
	}

	// 4. Build the outbound request: hop-by-hop headers out, Via in.
	out := s.outbound(in, x)

	// 5. Forward over the pooled upstream transport.
	upStart := time.Now()
	resp, err := s.up.RoundTrip(out)
	x.upstreamWait = time.Since(upStart)
	if err != nil && x.body != nil && x.body.err != nil && !x.body.awaitedContinue(in) {
		// The client's own body was bad (malformed chunks) or never came.
		x.errKind = ErrClientBody
		resp := pageResponse(in, page{Status: http.StatusBadRequest, Title: "Bad request",
			Msg: "The request body could not be read."})
		resp.Close = true
		return s.respond(x, in, resp)
	}
	if d, ok := listed(err); ok { // the address dialled is on a threat feed's list
		x.decision = d
		return s.respond(x, in, s.blockPage(in, x))
	}
	if err != nil {
		ue := classify(in.URL.Host, err)
		x.errKind = ue.Kind
		if ue.Kind != ErrCanceled {
			s.cfg.Log.Warn().Err(err).Str(fHost, in.URL.Host).Str(fKind, string(ue.Kind)).Msg("upstream failed")
		}
		return s.respond(x, in, pageResponse(in, errorPage(ue, in.URL.Hostname())))
	}

	// 6. The response goes back with its own hop-by-hop headers removed
	// (an upgrade's only on a 101), and without QUIC alternatives
	// (altsvc.go): clients stay on TCP, through Picket.
	removeHopHeaders(resp.Header, resp.StatusCode == http.StatusSwitchingProtocols)
	if _, ok := resp.Header["Content-Type"]; !ok {
		// None sent: net/http's servers would sniff one, with a charset
		// that overrides the page's own; the client sniffs instead.
		resp.Header["Content-Type"] = nil
	}
	stripQUIC(resp.Header)
	addVia(resp.Header, resp.ProtoMajor, resp.ProtoMinor, s.cfg.Via)
	if len(resp.Trailer) > 0 && resp.ContentLength >= 0 {
		// Trailers after a body of known length (an HTTP/2 origin may
		// send both): an HTTP/1.1 client gets trailers only in chunked
		// encoding (RFC 9112 §7.1.2), and a Content-Length would drop them.
		resp.ContentLength = -1
		delete(resp.Header, "Content-Length")
	}
	if resp.ContentLength < 0 && resp.StatusCode != http.StatusSwitchingProtocols {
		// Unknown length: stream chunk by chunk. The header makes goproxy
		// flush after every write instead of buffering (SSE, long polls).
		resp.Header.Set("Transfer-Encoding", "chunked")
	}
	if !s.keepAlive() {
		resp.Close = true // finish keep-alive connections when draining and during shutdown
	}

	// 7. Downloads whose true type calls for it are scanned (scan.go).
	return s.respond(x, in, s.scanResponse(in, x, resp))
}

// blockPage answers a request blocked by x.decision.
func (s *Server) blockPage(in *http.Request, x *exchange) *http.Response {
	x.incident = newIncident()
	resp := s.pages.render(in, x, false, "")
	resp.Header.Set("X-Picket-Reason", headerSafe(blockReason(x.decision)))
	return resp
}

// respond attaches the access-log line to resp's body and returns it.
func (s *Server) respond(x *exchange, in *http.Request, resp *http.Response) (*http.Response, error) {
	x.added = time.Since(x.start) - x.upstreamWait // Picket's own share of the time to the response head
	x.status = resp.StatusCode
	x.ctype = resp.Header.Get("Content-Type")
	if resp.StatusCode != http.StatusSwitchingProtocols && upgradeAsked(in) {
		resp.Header.Set("Connection", "close") // the framing guard stopped at in (closeAfterUpgrade)
	}
	switch {
	case resp.StatusCode == http.StatusSwitchingProtocols:
		if want := upgradeType(in.Header); want == "" || !strings.EqualFold(want, upgradeType(resp.Header)) {
			// Only to the protocol asked for (as httputil.ReverseProxy):
			// passed on, any other switch would make the client's
			// connection a raw pipe to the origin, past every later
			// decision on it.
			resp.Body.Close()
			x.errKind = ErrUpgrade
			return s.respond(x, in, pageResponse(in, page{Status: http.StatusBadGateway, Title: "Bad gateway",
				Msg: "The upstream switched to a protocol the request did not ask for."}))
		}
		rwc, ok := resp.Body.(io.ReadWriteCloser)
		if !ok {
			resp.Body.Close()
			x.errKind = ErrUpgrade
			return s.respond(x, in, pageResponse(in, page{Status: http.StatusBadGateway, Title: "Bad gateway",
				Msg: "The upstream switched protocols without a usable connection."}))
		}
		if x.conn != nil {
			x.conn.idle(s.cfg.TunnelIdleTimeout) // the upgraded connection is hijacked by goproxy
		}
		resp.Body = &upgradeBody{rwc: rwc, x: x, s: s}
	case resp.Body == nil || resp.Body == http.NoBody:
		x.complete.Store(true)
		s.logAccess(x)
	default:
		resp.Body = &logBody{ReadCloser: resp.Body, x: x, s: s, end: x.clientEnd()}
	}
	return resp, nil
}

// outbound clones in into the request sent upstream, with the route the
// dialler must take for it: an upgrade never goes over HTTP/2
// (poolguard.go), a transparent request always to its original
// destination.
func (s *Server) outbound(in *http.Request, x *exchange) *http.Request {
	ctx := in.Context()
	if rt := (route{pin: x.pin, http1Only: upgradeType(in.Header) != ""}); rt != routeOf(ctx) {
		ctx = withRoute(ctx, rt) // a fast-path tunnel's connection carries its pin already
	}
	// A shallow copy with its own header: the rest (URL, Trailer, Body) is
	// only read on the way out (a RoundTripper must not modify a request),
	// and a Trailer shared with in carries the values in's body reader
	// fills in at its end.
	out := in.WithContext(ctx)
	out.Header = in.Header.Clone()
	out.RequestURI = ""
	out.Host = "" // the URL's host wins over the Host header (RFC 9112 §3.2.2)
	out.Close = false
	removeHopHeaders(out.Header, true)
	if headerHasToken(in.Header, "Te", "trailers") {
		// "TE: trailers" is the one TE an HTTP/2 request may carry, and
		// gRPC servers expect it: it says the client (through us) takes
		// trailers, which both our sides forward.
		out.Header["Te"] = []string{"trailers"}
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = nil // do not let Go add its own
	}
	addVia(out.Header, in.ProtoMajor, in.ProtoMinor, s.cfg.Via)
	if s.cfg.ForwardedFor {
		out.Header.Add("X-Forwarded-For", x.req.Client.String())
	}
	switch {
	case x.body != nil: // a scanned upload: in.Body replays it, counted already
		out.Body = in.Body
	case in.ContentLength == 0 && len(in.Trailer) == 0:
		// No body. An HTTP/2 request whose stream ended with its headers
		// still has a Body (net/http gives NoBody only over HTTP/1.x);
		// sent on as it is, the upstream request's length would be
		// unknown: an empty DATA frame after the headers over HTTP/2, a
		// probe of the body over HTTP/1.1, never the inline path, and a
		// read deadline moved on the client's stream for nothing. As
		// httputil.ReverseProxy does.
		out.Body = http.NoBody
	case in.Body != nil && in.Body != http.NoBody:
		x.body = &countingBody{ReadCloser: in.Body, n: &x.bytesIn, rc: x.bodyDeadliner(), idle: s.cfg.TunnelIdleTimeout}
		out.Body = x.body
	}
	return out
}

// validPort reports whether u names no port or a valid one (1-65535), as
// connectTarget requires of a CONNECT's: another would fail only at the
// dial, as if the upstream had.
func validPort(u *url.URL) bool {
	p := u.Port()
	if p == "" {
		return true
	}
	_, err := netaddr.ParsePort(p)
	return err == nil
}

// connectTarget returns the CONNECT target as host:port, or false when it
// is not one (no port, port out of range, a path, userinfo).
func connectTarget(r *http.Request) (string, bool) {
	target := r.RequestURI
	host, port, err := net.SplitHostPort(target)
	if err != nil || host == "" {
		return "", false
	}
	if _, err := netaddr.ParsePort(port); err != nil {
		return "", false
	}
	for _, c := range target {
		if c == '/' || c == '@' || c == '?' || c == '#' || c <= ' ' {
			return "", false
		}
	}
	return target, true
}
