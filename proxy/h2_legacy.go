//go:build !(go1.27 && !http2legacy)

package proxy

import "net/http"

// serveConnBase is the BaseConfig of every ServeConn. Before Go 1.27, or
// with the http2legacy build tag, x/net serves HTTP/2 itself: it reads the
// limits and timeouts from BaseConfig and tracks each connection in the
// http2.Server that ConfigureServer tied to base, whose shutdown hook sends
// GOAWAY (shutdownH2). For Go 1.27, see h2_go127.go.
func (h *h2) serveConnBase() *http.Server { return h.base }
