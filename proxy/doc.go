// Package proxy is Picket's request pipeline: the only package that imports
// goproxy. It accepts plain HTTP (absolute-form), CONNECT and redirected
// (transparent) traffic, asks a Decider what to do with each request,
// forwards over a pooled, verifying upstream transport or answers with a
// block, warn or error page, scans uploads and downloads, and writes one access-log
// line (and one Event) per request or tunnel.
//
// The whole flow lives in pipeline.go and reads top to bottom:
//
//	accept (conn.go: connection limits, tracking, idle deadlines after hijack)
//	  │  framing guard (framing.go): ambiguous heads → 400/414/431, closed
//	fast path (fastpath.go): GET/HEAD, absolute http URL, HTTP/1.1, no body,
//	  │  allowed client; proxy auth → 407/429/503 there ─► roundTrip directly,
//	  │  response written by Picket ───────────────────────────────────────────────┐
//	  │  CONNECT: ServeHTTP on a writer the tunnel hijacks
//	  │  anything else: the connection and its buffered bytes go to net/http       │
//	ServeHTTP ── client not allowed ───────► 403                                   │
//	  ├── origin form / the proxy itself ─► local pages (info, CA, PAC)            │
//	  ├── proxy authentication ───────────► 407 / 429 / 503 (auth.go)              │
//	  ├── CONNECT ─► handleConnect: port allowed? Decide(host)                     │
//	  │                 ├── block/warn, not interceptable ─► 403 + reason header   │
//	  │                 ├── tunnel ─────────► dial (destination policy, address lists: listed
//	  │                 │                      ─► 403; direct or CONNECT on a parent,
//	  │                 │                      upstream.go), splice (tunnel.go)
//	  │                 └── intercept ──────► TLS with a minted leaf (intercept.go);
//	  │                                       ALPN h2: our HTTP/2 server, each stream
//	  │                                       to serveInner (h2.go: stream limits,
//	  │                                       frame guard) ──────────────────────────────┐
//	  │                                       http/1.1: the fast path serves the
//	  │                                       requests inside (origin form, the
//	  │                                       tunnel's authority), net/http from the
//	  │                                       first it declines; serveInner: 421,
//	  │                                       405 for CONNECT ───────────────────────────┐
//	  └── absolute form ─► forward ─► goproxy ─────────────────────────────────────┤
//	                                                                               │
//	  transparent listeners (transparent.go): Host/SNI + SO_ORIGINAL_DST ──────────┤
//	                                                                               ▼
//	                   roundTrip: warn "continue" link? Decide(URL) ── block/warn ─► page (blockpage.go)
//	                      │ upload scanning (upload.go): the request body whole (≤ max_size),
//	                      │   before a byte is forwarded ── infected ─► block page
//	                      │ strip hop-by-hop (TE: trailers kept), Via, X-Forwarded-For
//	                      │ Upstream (upstream.go): direct, the dialer checking the dialled IP
//	                      │   (destinations.go: destination policy, then the feeds' address
//	                      │   lists), or through a parent proxy; HTTP/2 when the origin offers
//	                      │   it, else HTTP/1.1 (transport.go; GET and HEAD without a body
//	                      │   written and read in the request's goroutine, inline.go)
//	                      │   ── listed ─► block page; error ─► 502/504/403 page
//	                      │ response: hop-by-hop out, QUIC alternatives out of Alt-Svc (altsvc.go)
//	                      │ download scanning (scan.go): classify, buffer or trickle (not gRPC)
//	                      ▼
//	                   response to client (a failed body closes an HTTP/1.1 connection,
//	                   resets an HTTP/2 stream); access-log line (with proto) and Event
//	                   when the body closes
//
// Per-request state is one *exchange (exchange.go), made where the request
// enters (the fast path, serve, serveInner, serveTransparentHTTP,
// serveTransparentTLS) and passed explicitly to every step: roundTrip(x, in).
// CONNECT-level facts live in an immutable *tunnel that the exchanges of the
// requests inside an intercepted tunnel share. A request's context carries
// a value only across a library that has no other way through: the accepted
// connection from net/http's ConnContext to the handler, the exchange
// through goproxy (forward → roundTrip), the dial route through
// http.Transport to the dialler.
package proxy
