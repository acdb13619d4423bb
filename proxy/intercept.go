package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/picket-proxy/picket/internal/netaddr"
)

// peekTimeout is how long an intercepted tunnel waits for the client's
// first byte to tell TLS from other protocols. A client that stays silent
// longer may be waiting for a server that speaks first: the origin is
// dialled then, and whoever speaks first decides (awaitFirst).
const peekTimeout = 2 * time.Second

// recordTypeHandshake is the first byte of a TLS ClientHello record.
const recordTypeHandshake = 0x16

// intercept serves a CONNECT whose client already got "200 Connection
// established": TLS is terminated with a minted certificate and the requests
// inside are served by the fast path, then by net/http (header limits,
// timeouts, keep-alive, 100-continue) and goproxy from the first request the
// fast path declines, so that each goes through roundTrip with the full URL.
// Anything that is not TLS is tunnelled as is when the CONNECT was allowed,
// and refused when it was intercepted only to show a block or warn page.
func (s *Server) intercept(conn net.Conn, buffered []byte, t *tunnel) (up, down int64, err error) {
	pc := &peekConn{Conn: conn, r: bufio.NewReader(io.MultiReader(bytes.NewReader(buffered), conn))}

	// 1. TLS or not, from the first byte. A blocked host's tunnel is never
	// relayed: its client gets the handshake timeout to start TLS.
	wait := peekTimeout
	if !t.allowed {
		wait = s.cfg.TLSHandshakeTimeout
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	first, perr := pc.r.Peek(1)
	_ = conn.SetReadDeadline(time.Time{})
	switch {
	case perr != nil && !errors.Is(perr, os.ErrDeadlineExceeded):
		return 0, 0, perr // the client left
	case !t.allowed && (len(first) == 0 || first[0] != recordTypeHandshake):
		return 0, 0, errNotTLS
	case len(first) == 0:
		// Silent: whoever speaks first decides, so that waiting out the
		// peek does not open a raw tunnel for a TLS client.
		if up, down, done, err := s.awaitFirst(pc, t); done {
			return up, down, err
		}
	case first[0] != recordTypeHandshake:
		return s.passThrough(pc, t)
	}

	// 2. Handshake with a certificate for the CONNECT host (or the SNI name),
	// bounded in time: goproxy's own MITM handshake has no deadline.
	tcfg, err := s.cfg.Intercept(stripPort(t.host))
	if err != nil {
		return 0, 0, err
	}
	var certSent bool
	tcfg = s.h2.withALPN(tcfg.Clone()) // h2 first when HTTP/2 is on (h2.go)
	if get := tcfg.GetCertificate; get != nil {
		tcfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if hello.ServerName != "" && sniHost(hello.ServerName) == "" {
				h := *hello
				h.ServerName = "" // not a host name: minted for the CONNECT host
				hello = &h
			}
			c, err := get(hello)
			certSent = err == nil
			return c, err
		}
	}
	tc := tls.Server(pc, tcfg)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.TLSHandshakeTimeout)
	err = tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		up, down = pc.read.Load(), pc.wrote.Load()
		if s.cfg.HandshakeFailed != nil && clientRejected(err, certSent) {
			s.cfg.HandshakeFailed(stripPort(t.host))
		}
		s.cfg.Log.Debug().Err(err).Str(fHost, t.host).Msg("client TLS handshake failed")
		return up, down, err
	}
	it := *t
	it.conn, _ = conn.(*clientConn)
	it.sni = sniHost(tc.ConnectionState().ServerName)
	it.authority = authority(t.host, it.sni)
	it.urlHost = strings.TrimSuffix(it.authority, ":443") // https URLs leave the default port out

	// 3a. A client that chose h2 by ALPN: every stream through serveInner
	// (h2.go).
	if tc.ConnectionState().NegotiatedProtocol == "h2" && s.h2 != nil {
		s.serveH2(tc, &it)
		return pc.read.Load(), pc.wrote.Load(), nil
	}

	// 3b. HTTP/1.1: serve the requests inside on the fast path
	// (fastpath.go) and, from the first request it declines, with net/http
	// (serveInner); Serve returns when the connection closes.
	gc := &guardedConn{Conn: tc, g: newFramingGuard(s.cfg.MaxHeaderBytes)}
	it.guard = gc.g
	if rest, handOff := s.serveFastConn(&fastConn{rw: gc, c: it.conn, tunnel: &it, remote: gc.RemoteAddr().String(), client: t.client}); handOff {
		srv := s.newHTTPServer(s.innerHandler(&it), nil)
		_ = srv.Serve(newOneConnListener(&replayConn{Conn: gc, replay: rest}))
	}
	return pc.read.Load(), pc.wrote.Load(), nil
}

// replayConn reads replay before the connection: what the fast path read
// but handed to net/http.
type replayConn struct {
	net.Conn
	replay []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.replay) > 0 {
		n := copy(p, c.replay)
		c.replay = c.replay[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// innerHandler is the entry point of the requests net/http reads inside
// the intercepted tunnel t (serveInner).
func (s *Server) innerHandler(t *tunnel) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serveInner(w, r, t, nil)
	})
}

// serveInner gives a request read inside the intercepted tunnel t (over
// HTTP/2: on stream st; nil over HTTP/1.1) its absolute URL and the tunnel
// facts, then hands it to goproxy.
func (s *Server) serveInner(w http.ResponseWriter, r *http.Request, t *tunnel, st *h2Stream) {
	// A request head the framing guard refused: its status, then close.
	if t.guard != nil && r.URL.Path == rejectPath && t.guard.refused() != 0 {
		refuseHead(w, t.guard.refused())
		return
	}
	// A CONNECT inside the tunnel would open a raw tunnel past
	// inspection (and over HTTP/2 it would be a WebSocket by RFC 8441,
	// which Picket does not offer).
	if r.Method == http.MethodConnect {
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		writePage(w, page{Status: http.StatusMethodNotAllowed, Title: "Method not allowed",
			Msg: "Picket does not open tunnels inside an inspected connection."})
		return
	}
	// A request for another authority than the tunnel's must not reach
	// it (domain fronting, or a Host aimed at an internal address).
	if !sameAuthority(r.Host, t.authority) {
		writePage(w, page{Status: http.StatusMisdirectedRequest, Title: "Misdirected request",
			Msg: "This connection was opened for " + t.authority + "; it cannot serve " + r.Host + "."})
		return
	}
	r.URL.Scheme = "https"
	r.URL.Host = t.urlHost
	x := newExchange(r, t.client, t)
	if x.stream = st; st == nil {
		x.conn = t.conn // an HTTP/2 stream's end is the stream alone
	}
	s.forward(w, r, x)
}

// errNotTLS ends a blocked host's intercepted tunnel whose client did not
// start TLS: only a block or warn page may be shown there.
var errNotTLS = errors.New("intercepted tunnel to a blocked host: the client did not start TLS")

// passThrough tunnels a non-TLS protocol untouched to the CONNECT target.
func (s *Server) passThrough(pc *peekConn, t *tunnel) (up, down int64, err error) {
	upstream, err := s.up.dialTunnel(context.Background(), t.host, t.pin)
	if err != nil {
		return 0, 0, err
	}
	first, _ := pc.r.Peek(pc.r.Buffered())
	up, down = s.relay(pc.Conn, upstream, first)
	return up, down, nil
}

// awaitFirst serves an allowed tunnel whose client stayed silent for
// peekTimeout: it dials the CONNECT target and waits (up to the tunnel idle
// timeout) for whichever side speaks first. The origin first (a
// server-speaks-first protocol), or the client with anything but TLS: the
// tunnel is relayed untouched, and done is true. The client first with
// TLS: done is false, the origin's connection is closed, and the client's
// bytes wait in pc for the interception handshake.
func (s *Server) awaitFirst(pc *peekConn, t *tunnel) (up, down int64, done bool, err error) {
	upstream, err := s.up.dialTunnel(context.Background(), t.host, t.pin)
	if err != nil {
		return 0, 0, true, err
	}
	deadline := time.Now().Add(s.cfg.TunnelIdleTimeout)
	_ = pc.Conn.SetReadDeadline(deadline)
	_ = upstream.SetReadDeadline(deadline)
	var said []byte // what the origin said first
	var saidErr error
	heard := make(chan struct{})
	go func() {
		defer close(heard)
		b := make([]byte, 4096)
		n, err := upstream.Read(b)
		said, saidErr = b[:n], err
		if n > 0 {
			_ = pc.Conn.SetReadDeadline(aLongTimeAgo) // stop waiting for the client
		}
	}()
	first, perr := pc.r.Peek(1)
	_ = upstream.SetReadDeadline(aLongTimeAgo) // stop waiting for the origin
	<-heard
	_ = pc.Conn.SetReadDeadline(time.Time{})
	_ = upstream.SetReadDeadline(time.Time{})
	switch {
	case len(said) == 0 && len(first) > 0 && first[0] == recordTypeHandshake:
		upstream.Close() // the requests inside go over the pooled transport
		return 0, 0, false, nil
	case len(said) == 0 && len(first) == 0:
		upstream.Close()
		if perr == nil || errors.Is(perr, os.ErrDeadlineExceeded) {
			perr = saidErr // the origin hung up or failed first
		}
		return 0, 0, true, perr
	}
	if len(said) > 0 {
		if _, err := pc.Conn.Write(said); err != nil {
			upstream.Close()
			return 0, int64(len(said)), true, err
		}
	}
	buffered, _ := pc.r.Peek(pc.r.Buffered())
	up, down = s.relay(pc.Conn, upstream, buffered)
	return up, down + int64(len(said)), true, nil
}

// sniHost returns the host name a ClientHello's server_name asks for, or ""
// when it asks for none that RFC 6066 §3 allows there: a DNS host name,
// never an IP literal, never a port. A client that sends one of those (hey
// sends "host:port") is taken as having sent no name: the CONNECT authority
// (or a redirected connection's original destination) stands.
func sniHost(serverName string) string {
	if serverName == "" || isIPLiteral(serverName) || !validHostName(serverName) {
		return ""
	}
	return serverName
}

// authority is host:port of the requests inside an intercepted tunnel: the
// CONNECT target, or the SNI name (sniHost) when the CONNECT named only an
// IP.
func authority(connectHost, sni string) string {
	host, port, err := net.SplitHostPort(connectHost)
	if err != nil || sni == "" {
		return connectHost
	}
	if isIPLiteral(host) && !isIPLiteral(sni) {
		return net.JoinHostPort(sni, port)
	}
	return connectHost
}

// sameAuthority compares a Host header with host:port, allowing the default
// https port to be left out. It compares the text, case-insensitively, not
// the reading of it (netaddr): the origin routes by the Host header as
// written, so a spelling it may read otherwise is refused.
func sameAuthority(hostHeader, auth string) bool {
	if strings.EqualFold(hostHeader, auth) {
		return true
	}
	h, p, err := net.SplitHostPort(auth)
	if err != nil {
		return false
	}
	if p == "443" && strings.EqualFold(strings.Trim(hostHeader, "[]"), h) {
		return true
	}
	return false
}

// isIPLiteral reports whether h is an IP address, in any spelling.
func isIPLiteral(h string) bool {
	a, err := netaddr.ParseHost(h)
	return err == nil && a.IsAddr()
}

// clientRejected reports whether a handshake failed because the client
// refused our certificate: it sent an alert, or it hung up right after
// receiving the certificate (as apps with their own trust store do). A
// client that goes away before that, or a timeout, does not count.
func clientRejected(err error, certSent bool) bool {
	// An alert the client sent comes as a *net.OpError whose Op is "remote
	// error" (crypto/tls's own alert type is unexported); tls.AlertError is
	// what QUIC connections report.
	var alert tls.AlertError
	var op *net.OpError
	if errors.As(err, &alert) || errors.As(err, &op) && op.Op == "remote error" {
		return true
	}
	return certSent && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET))
}

// peekConn is a connection whose reads go through a buffered reader that
// may hold bytes already read for peeking.
type peekConn struct {
	net.Conn
	r           *bufio.Reader
	read, wrote atomic.Int64 // bytes from and to the client
}

func (c *peekConn) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func (c *peekConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.wrote.Add(int64(n))
	return n, err
}

// oneConnListener hands one connection to http.Server.Serve, then blocks
// until that connection is closed, so that Serve returns when the tunnel
// ends.
type oneConnListener struct {
	conn   net.Conn
	once   sync.Once
	closed chan struct{}
}

func newOneConnListener(c net.Conn) *oneConnListener {
	l := &oneConnListener{closed: make(chan struct{})}
	l.conn = &notifyCloseConn{Conn: c, closed: l.closed}
	return l
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.conn })
	if c != nil {
		return c, nil
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

// notifyCloseConn closes a channel when the connection is closed.
type notifyCloseConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *notifyCloseConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}
