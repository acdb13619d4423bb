//go:build linux || freebsd

package proxy

import "golang.org/x/sys/unix"

// tcpKeepIdle is the socket option of the idle time before keepalive
// probes (TCP_KEEPALIVE on macOS).
const tcpKeepIdle = unix.TCP_KEEPIDLE
