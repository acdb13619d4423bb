// Package admin is the administrator's window: the JSON API, the web
// console and the Prometheus metrics, served on the admin listener.
//
// It is a room of its own because it reads every other part (the proxy's
// events, the reputation client, the CA, the scanner) without belonging to
// any of them; cmd/picket hands it those parts as small func fields.
//
// What flows in and out:
//
//	proxy.Event ──► Server.Observe ──┬─► Metrics (Prometheus counters, lock-free)
//	                                 ├─► recent ring (GET /api/v1/decisions)
//	                                 └─► per-minute series (GET /api/v1/series)
//	Sources (Stats funcs) ◄── scraped by /metrics and GET /api/v1/status
//	POST reload, participation, cache/flush ──► the caller's funcs
//
// Access (Server.ServeHTTP, first match wins):
//
//	/healthz, /readyz                     anyone, no token
//	client outside AllowClients           403
//	valid bearer token                    allowed
//	bad bearer token                      401
//	no token, non-loopback client         401
//	no token, loopback, Host not loopback 403 (DNS rebinding)
//	no token, loopback, POST              401
//	no token, loopback, GET or HEAD       allowed
//
// 401 answers carry "WWW-Authenticate: Bearer". Cross-origin browser POSTs
// are refused with 403 before any of this (http.CrossOriginProtection).
package admin
