//go:build go1.27 && !http2legacy

package proxy

import "net/http"

// serveConnBase is the BaseConfig of every ServeConn: none. From Go 1.27,
// x/net's http2.Server wraps net/http's own HTTP/2 server (the build
// constraint is x/net's). Given a BaseConfig, it would serve the connection
// from a copy of it made for that connection alone, which base's Shutdown
// never reaches: no GOAWAY at shutdown (TestHTTP2GracefulShutdown). Without
// one, it serves from base itself, tied to it by ConfigureServer, with
// base's limits, timeouts and HTTP2 settings, and Shutdown sends GOAWAY.
// For earlier Go, see h2_legacy.go.
func (h *h2) serveConnBase() *http.Server { return nil }
