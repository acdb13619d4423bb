// Package proxy is Picket's request pipeline: the only package that imports
// goproxy. It accepts plain HTTP (absolute-form) and CONNECT, asks a Decider
// what to do with each request, forwards over a pooled, verifying upstream
// transport or answers with a block or error page, and writes one access-log
// line per request or tunnel.
//
// The whole flow lives in pipeline.go and reads top to bottom:
//
//	accept (conn.go: tracked, idle deadlines after hijack)
//	  │
//	ServeHTTP ── origin-form ──────────────► local pages (info, 404)
//	  │  └──── client not allowed ─────────► 403
//	  ├── CONNECT ─► handleConnect: Decide(host)
//	  │                 ├── block ──────────► 403 + reason header
//	  │                 ├── tunnel ─────────► splice both ways (tunnel.go)
//	  │                 └── intercept ──────► goproxy MITM loop ─┐ (per inner request)
//	  └── absolute-form ─► goproxy ─────────────────────────────┤
//	                                                            ▼
//	                   roundTrip: Decide(URL) ── block ─► block page
//	                      │ strip hop-by-hop, Via, X-Forwarded-For
//	                      │ upstream transport (transport.go) ── error ─► 502/504 page
//	                      │ Inspector hook (response bodies, [P5])
//	                      ▼
//	                   response to client; access-log line when the body closes
//
// Per-request state is one *exchange (exchange.go); CONNECT-level facts live
// in an immutable *tunnel shared by the requests inside an intercepted tunnel.
package proxy
