package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/picket-proxy/picket/internal/netaddr"
)

// upstreamSessions is how many origins' TLS sessions are kept for
// resumption.
const upstreamSessions = 1024

// newTransport builds an upstream transport over dial. Unlike goproxy's default it
// verifies certificates (system roots plus cfg.RootCAs), never follows
// HTTP(S)_PROXY from the environment, bounds every phase with a timeout and
// keeps the client's Accept-Encoding: goproxy v1.9 deletes it unless
// KeepAcceptEncoding is set (removeProxyHeaders, proxy.go), and Go's
// transport would then ask for gzip and decompress inside the proxy, where
// a gzip bomb would expand in our process. It speaks HTTP/2 to origins that
// offer it by ALPN — one connection carries the concurrent requests of every
// client to that origin — and HTTP/1.1 to the others and for WebSocket
// upgrades. Both go through dial, and HTTP/1 connections are guarded so
// that no response reaches a request that did not ask for it
// (poolguard.go).
func newTransport(cfg *Config, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
	t := &http.Transport{
		Proxy: nil,
		// Sessions are resumed towards origins (the cache is keyed by
		// server name; a resumed session still checks the name and expiry
		// of the certificate verified when it began).
		TLSClientConfig: &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12,
			ClientSessionCache: tls.NewLRUClientSessionCache(upstreamSessions)},
		TLSHandshakeTimeout:    cfg.TLSHandshakeTimeout,
		ResponseHeaderTimeout:  cfg.ResponseHeaderTimeout,
		IdleConnTimeout:        cfg.UpstreamIdleTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxIdleConns:           4 * cfg.MaxIdleConnsPerHost,
		MaxIdleConnsPerHost:    cfg.MaxIdleConnsPerHost,
		MaxResponseHeaderBytes: int64(cfg.MaxHeaderBytes),
		DisableCompression:     true,
		ForceAttemptHTTP2:      !cfg.DisableHTTP2, // needed with our own DialContext and TLS config
		HTTP2: &http.HTTP2Config{
			MaxReceiveBufferPerStream: upstreamStreamWindow,
			SendPingTimeout:           cfg.UpstreamIdleTimeout,
			PingTimeout:               h2PingTimeout,
			WriteByteTimeout:          cfg.TunnelIdleTimeout,
		},
	}
	guardTransport(t, dial, cfg.MaxHeaderBytes+4096, func(addr string) {
		cfg.Log.Warn().Str(fHost, addr).Msg("upstream sent bytes no request asked for: connection closed, not reused")
	})
	return t
}

// dialer opens upstream TCP connections: the one place every upstream
// connection (forwarded requests and CONNECT tunnels) is made, so that
// destination checks added later see the resolved address.
type dialer struct {
	net  net.Dialer // Timeout: dial_timeout
	idle time.Duration
	dest *destinations
}

func newDialer(cfg *Config, dest *destinations) *dialer {
	return &dialer{
		net:  net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: keepAliveFor(cfg.TCPKeepAlive), Control: dest.control},
		idle: cfg.TunnelIdleTimeout,
		dest: dest,
	}
}

// keepAliveFor is the KeepAlive of a net.Dialer or net.ListenConfig for a
// tcp_keepalive setting: d, or none for 0 (Go's default would be probes
// after 15 s, four setsockopt calls on every connection). Idle connections
// are closed by the idle timeouts either way; probes only find a vanished
// peer sooner, or keep a NAT mapping alive.
func keepAliveFor(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// address rewrites the host of host:port as every part of Picket reads it
// (normalizeHost): odd IPv4 spellings become the dotted quad they mean, so
// they are dialled (and checked) as that address, never looked up.
func address(addr string) string {
	host, port, err := netaddr.SplitHostPort(addr) // keeps the brackets normalizeHost reads
	if err != nil {
		return addr
	}
	if n := normalizeHost(host); n != host {
		return net.JoinHostPort(n, port)
	}
	return addr
}

// DialContext dials addr; the connection gives up reads that stay idle in
// both directions longer than the tunnel idle timeout, so a stalled upstream
// body cannot hold a client forever.
func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if pin := routeOf(ctx).pin; pin != "" {
		addr = pin // transparent mode: always the original destination
	}
	var version uint64
	if d.dest.block != nil {
		version = d.dest.block.Version() // before the check: a change during the dial is seen later
	}
	c, err := d.net.DialContext(ctx, network, address(addr))
	if err != nil {
		return nil, err
	}
	ic := &idleConn{Conn: c}
	ic.idle(d.idle)
	if d.dest.block != nil {
		rc := &recheckedConn{idleConn: ic, block: d.dest.block}
		rc.version.Store(version)
		return rc, nil
	}
	return ic, nil
}

// recheckedConn is a pooled upstream connection that checks its address
// against the address lists again, before it writes, whenever they changed
// since it was dialled: a request on a connection to an address listed
// meanwhile fails before a byte is sent. Over HTTP/1.1 the transport then
// dials anew, and the dialer refuses (a block page); over HTTP/2 the
// request fails (502). Idle connections are closed when the lists change
// (Upstream.recheckLists), so this is the rare path of a connection busy
// at that moment.
type recheckedConn struct {
	*idleConn
	block   AddressBlocker
	version atomic.Uint64
}

func (c *recheckedConn) Write(p []byte) (int, error) {
	if v := c.block.Version(); v != c.version.Load() {
		c.version.Store(v)
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			if dec, ok := c.block.Blocked(ap.Addr().Unmap()); ok {
				c.Close()
				return 0, &errListed{ap.String(), dec}
			}
		}
	}
	return c.idleConn.Write(p)
}

// upstreamError classifies an upstream failure into the status the client
// gets and a short explanation for the error page and the log.
type upstreamError struct {
	Status int     // 502, 504, or 403 for a refused destination
	Kind   ErrKind // dns, refused, timeout, tls, reset, other: for logs and metrics
	Msg    string  // one human-readable sentence
}

// classify maps a transport or dial error for host to an upstreamError.
func classify(host string, err error) *upstreamError {
	var (
		dnsErr  *net.DNSError
		certErr *tls.CertificateVerificationError
		unkCA   x509.UnknownAuthorityError
		hostErr x509.HostnameError
		invErr  x509.CertificateInvalidError
		recErr  tls.RecordHeaderError
		alert   tls.AlertError
		netErr  net.Error
	)
	e := &upstreamError{Status: http.StatusBadGateway, Kind: ErrOther}
	var pe *parentError
	if errors.As(err, &pe) {
		return classifyParent(host, pe)
	}
	switch {
	case isDeniedErr(err):
		e.Status, e.Kind, e.Msg = http.StatusForbidden, ErrDenied, fmt.Sprintf("Picket does not connect to %s: it is an internal or special-purpose address", host)
	case errors.Is(err, errUnsolicited):
		e.Kind, e.Msg = ErrDesync, fmt.Sprintf("%s sent a response no request asked for; Picket closed that connection", host)
	case errors.Is(err, context.Canceled):
		e.Kind, e.Msg = ErrCanceled, "The client went away"
	case errors.As(err, &dnsErr):
		e.Kind, e.Msg = ErrDNS, fmt.Sprintf("The name %s could not be resolved", host)
		if dnsErr.IsTimeout {
			e.Status, e.Kind = http.StatusGatewayTimeout, ErrTimeout
		}
	case errors.As(err, &certErr), errors.As(err, &unkCA), errors.As(err, &hostErr), errors.As(err, &invErr):
		e.Kind, e.Msg = ErrTLS, fmt.Sprintf("The certificate of %s could not be verified, so Picket did not connect", host)
	case errors.As(err, &recErr), errors.As(err, &alert):
		e.Kind, e.Msg = ErrTLS, fmt.Sprintf("The TLS handshake with %s failed", host)
	case errors.Is(err, syscall.ECONNREFUSED):
		e.Kind, e.Msg = ErrRefused, fmt.Sprintf("%s refused the connection", host)
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		e.Kind, e.Msg = ErrReset, fmt.Sprintf("%s closed the connection unexpectedly", host)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		e.Kind, e.Msg = ErrUnreachable, fmt.Sprintf("%s is unreachable", host)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		e.Status, e.Kind, e.Msg = http.StatusGatewayTimeout, ErrTimeout, fmt.Sprintf("%s did not answer in time", host)
	default:
		e.Msg = fmt.Sprintf("The request to %s failed", host)
	}
	return e
}

// classifyParent maps a failure through the parent proxy named in pe.
func classifyParent(host string, pe *parentError) *upstreamError {
	e := &upstreamError{Status: http.StatusBadGateway, Kind: ErrParent}
	var netErr net.Error
	switch {
	case pe.status == http.StatusProxyAuthRequired:
		e.Msg = fmt.Sprintf("The parent proxy %s refused Picket's credentials", pe.parent)
	case pe.status == http.StatusForbidden:
		e.Status, e.Kind = http.StatusForbidden, ErrDenied
		e.Msg = fmt.Sprintf("The parent proxy %s refused to connect to %s", pe.parent, host)
	case pe.status == http.StatusGatewayTimeout:
		e.Status, e.Kind = http.StatusGatewayTimeout, ErrTimeout
		e.Msg = fmt.Sprintf("%s did not answer the parent proxy %s in time", host, pe.parent)
	case pe.status != 0:
		e.Kind = ErrOther
		e.Msg = fmt.Sprintf("The parent proxy %s could not connect to %s (%d %s)", pe.parent, host, pe.status, http.StatusText(pe.status))
	case isDeniedErr(pe.err):
		e.Kind = ErrDenied
		e.Msg = fmt.Sprintf("Picket does not connect to the parent proxy %s: its address is an internal or special-purpose address", pe.parent)
	case errors.Is(pe.err, context.DeadlineExceeded), errors.Is(pe.err, os.ErrDeadlineExceeded), errors.As(pe.err, &netErr) && netErr.Timeout():
		e.Status, e.Kind = http.StatusGatewayTimeout, ErrTimeout
		e.Msg = fmt.Sprintf("The parent proxy %s did not answer in time", pe.parent)
	default:
		e.Msg = fmt.Sprintf("The parent proxy %s could not be reached", pe.parent)
	}
	return e
}

func isDeniedErr(err error) bool {
	_, ok := isDenied(err)
	return ok
}
