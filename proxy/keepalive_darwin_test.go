package proxy

import "golang.org/x/sys/unix"

// tcpKeepIdle is the socket option of the idle time before keepalive
// probes (TCP_KEEPIDLE elsewhere).
const tcpKeepIdle = unix.TCP_KEEPALIVE
