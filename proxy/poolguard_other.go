//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package proxy

import "net"

// sockWatched: upstream sockets cannot be watched here.
const sockWatched = false

// newSockConn cannot watch a socket here (no non-blocking peek): guarded
// connections end every response with io.EOF, so none is reused.
func newSockConn(c net.Conn, t *turns, records bool) *sockConn { return nil }
