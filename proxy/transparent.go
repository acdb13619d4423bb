package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/picket-proxy/picket/internal/netaddr"
)

// Transparent gateway: the firewall redirects port 80 and 443 traffic to
// these listeners (iptables/nftables REDIRECT). The client never named the
// proxy, so the destination comes from the Host header or the TLS SNI and is
// checked against the connection's original destination (SO_ORIGINAL_DST):
// Picket always dials that original address, never the name, so a forged
// Host or SNI can neither reach another server nor slip past the policy.

// ServeTransparentHTTP serves plain HTTP connections redirected to ln.
func (s *Server) ServeTransparentHTTP(ln net.Listener) error {
	if errNoTransparent != nil {
		return errNoTransparent
	}
	srv := s.newHTTPServer(http.HandlerFunc(s.serveTransparentHTTP), func(ctx context.Context, c net.Conn) context.Context {
		if cc, ok := c.(*clientConn); ok {
			if dst, err := originalDst(cc.Conn); err == nil {
				cc.origDst = dst
			}
		}
		return withConn(ctx, c)
	})
	s.track(srv)
	return srv.Serve(&listener{Listener: ln, conns: s.conns, guard: s.cfg.MaxHeaderBytes})
}

// serveTransparentHTTP is the entry point of every request read on a
// transparent HTTP listener.
func (s *Server) serveTransparentHTTP(w http.ResponseWriter, r *http.Request) {
	client := clientAddr(r.RemoteAddr)
	if !s.clientAllowed(client) {
		writePage(w, page{Status: http.StatusForbidden, Title: "Forbidden", Msg: "Your address is not allowed to use this gateway."})
		return
	}
	conn := connFrom(r.Context())
	var dst netip.AddrPort
	if conn != nil {
		dst = conn.origDst
	}
	if !dst.IsValid() || s.isSelfAddr(dst) {
		// Not redirected: someone connected to the listener itself.
		s.local.ServeHTTP(w, r)
		return
	}
	host := r.Host
	if host == "" {
		host = dst.Addr().String()
	}
	if !s.hostIsDestination(r.Context(), host, dst.Addr()) {
		s.cfg.Log.Warn().Str(fClient, client.String()).Str(fHost, host).Str("destination", dst.String()).
			Msg("transparent request: Host does not match the original destination")
		writePage(w, page{Status: http.StatusConflict, Title: "Host mismatch",
			Msg: "The Host header of this request does not name the server it was sent to."})
		return
	}
	r.URL.Scheme, r.URL.Host = "http", urlHost(stripPort(host), dst.Port(), 80)
	x := newExchange(r, client, nil)
	x.conn, x.pin = conn, dst.String()
	s.forward(w, r, x)
}

// ServeTransparentHTTPS serves TLS connections redirected to ln: the
// ClientHello's SNI is read without being consumed, then the connection
// gets the same policy as a CONNECT (intercept, tunnel or block).
func (s *Server) ServeTransparentHTTPS(ln net.Listener) error {
	if errNoTransparent != nil {
		return errNoTransparent
	}
	l := &listener{Listener: ln, conns: s.conns}
	s.mu.Lock()
	s.extra = append(s.extra, l)
	s.mu.Unlock()
	for {
		c, err := l.Accept()
		if err != nil {
			if s.draining.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		go s.serveTransparentTLS(c.(*clientConn))
	}
}

func (s *Server) serveTransparentTLS(conn *clientConn) {
	defer conn.Close()
	client := clientAddr(conn.RemoteAddr().String())
	if !s.clientAllowed(client) {
		return
	}
	dst, err := originalDst(conn.Conn)
	if err != nil || s.isSelfAddr(dst) {
		return
	}
	x := &exchange{start: time.Now(), req: Request{Client: client, Method: http.MethodConnect, Connect: true}}
	defer s.logAccess(x)

	// 1. The SNI, read from the ClientHello without consuming it.
	_ = conn.SetReadDeadline(time.Now().Add(s.cfg.ReadHeaderTimeout))
	hello, sni, err := peekSNI(conn)
	_ = conn.SetReadDeadline(time.Time{})
	if err != nil && (len(hello) == 0 || errors.Is(err, errBadServerName)) {
		x.status, x.errKind = http.StatusBadRequest, ErrClientHello
		return
	}
	// The policy judges the SNI name (no SNI: the original destination's
	// address); the connection always goes to the original destination, so
	// the name must lead there, as a plain request's Host must: an allowed
	// name must not carry a tunnel to an address the rules block.
	name := sni
	if name == "" {
		name = dst.Addr().String()
	} else if !s.hostIsDestination(context.Background(), sni, dst.Addr()) {
		s.cfg.Log.Warn().Str(fClient, client.String()).Str(fHost, sni).Str("destination", dst.String()).
			Msg("transparent TLS: SNI does not match the original destination")
		x.req.URL = &url.URL{Scheme: "https", Host: net.JoinHostPort(sni, strconv.Itoa(int(dst.Port())))}
		x.status = http.StatusConflict
		return
	}
	host := net.JoinHostPort(name, strconv.Itoa(int(dst.Port())))
	x.req.URL = &url.URL{Scheme: "https", Host: host}

	// 2. The same host-level decision as a CONNECT.
	d, err := s.cfg.Decider.Decide(context.Background(), &x.req)
	if err != nil {
		x.status, x.errKind = http.StatusServiceUnavailable, ErrDecide
		return
	}
	x.decision = d
	x.status = http.StatusOK
	if d.Intercept && s.cfg.Intercept != nil {
		s.interceptFor(x, conn, hello, &tunnel{client: client, host: host, start: x.start, pin: dst.String(),
			allowed: d.Action == Allow})
		return
	}
	if d.Action != Allow {
		// Nothing can be shown inside a TLS connection we do not
		// terminate: close it.
		x.status, x.incident = http.StatusForbidden, newIncident()
		return
	}
	// 3. Tunnel to the original destination, never to the name.
	upstream, err := s.up.dialTunnel(context.Background(), host, dst.String())
	if d, ok := listed(err); ok { // on a threat feed's address list: close
		x.decision, x.status, x.incident = d, http.StatusForbidden, newIncident()
		return
	}
	if err != nil {
		ue := classify(host, err)
		x.status, x.errKind = ue.Status, ue.Kind
		return
	}
	s.tunnelFor(x, conn, upstream, hello)
}

// hostIsDestination reports whether host (a Host header) names dst: an IP
// literal must be dst; a name must resolve to it. A match is remembered for
// hostMatchTTL, so that a busy gateway does not send a DNS query for every
// request; a mismatch is looked up again each time.
func (s *Server) hostIsDestination(ctx context.Context, host string, dst netip.Addr) bool {
	h := stripPort(host) // as netaddr reads it: "0x7f.1" is 127.0.0.1
	dst = dst.Unmap()
	if ip, err := netip.ParseAddr(h); err == nil {
		return ip.Unmap() == dst
	}
	key := hostDst{h, dst}
	if _, ok := s.hostMatches.Get(key); ok {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	ips, err := s.lookupIP(ctx, h)
	if err != nil {
		return false
	}
	for _, ip := range ips {
		if ip.Unmap() == dst {
			s.hostMatches.Add(key, struct{}{})
			return true
		}
	}
	return false
}

// hostDst is a Host name (as netaddr reads it) and a destination it
// resolved to.
type hostDst struct {
	host string
	dst  netip.Addr
}

// How many Host/destination matches are remembered, and for how long: about
// a typical DNS TTL, so a name that moves is checked against its new address
// within a minute (the connection goes to the original destination either
// way).
const (
	hostMatchSize = 4096
	hostMatchTTL  = time.Minute
)

// urlHost writes host with port unless it is the scheme's default.
func urlHost(host string, port, def uint16) string {
	if port == def {
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// isSelfAddr reports whether dst is one of our own listening ports on a
// local address (a connection made to the listener, not redirected).
func (s *Server) isSelfAddr(dst netip.AddrPort) bool {
	s.mu.Lock()
	ours := s.selfPorts[strconv.Itoa(int(dst.Port()))]
	s.mu.Unlock()
	ip := dst.Addr().Unmap()
	return ours && (ip.IsLoopback() || ip.IsUnspecified() || isLocalIP(ip))
}

// errBadServerName is the error of a ClientHello whose server name is no
// host name at all (bytes a name cannot hold).
var errBadServerName = errors.New("invalid server name in ClientHello")

// peekSNI reads the client's ClientHello and returns the bytes read (to be
// replayed) and the server name it asks for. Go's own TLS stack parses the
// hello: a handshake over a connection that records what it reads and
// refuses to write is stopped as soon as the hello is known.
func peekSNI(c net.Conn) ([]byte, string, error) {
	var rec bytes.Buffer
	var sni string
	errHello := errors.New("hello read")
	ro := &recordingConn{Conn: c, r: io.TeeReader(c, &rec)}
	err := tls.Server(ro, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			sni = h.ServerName
			return nil, errHello
		},
	}).Handshake()
	if errors.Is(err, errHello) {
		err = nil
	}
	switch {
	case sni == "" || sniHost(sni) != "":
	case isIPLiteral(sni) || hasPort(sni):
		sni = "" // not allowed there (RFC 6066 §3): as if none was sent
	default:
		return rec.Bytes(), "", fmt.Errorf("%w: %q", errBadServerName, sni)
	}
	return rec.Bytes(), sni, err
}

// hasPort reports whether name is a host (as netaddr reads it) with a port.
func hasPort(name string) bool {
	host, _, err := netaddr.SplitHostPort(name)
	if err != nil || host == name {
		return false
	}
	_, err = netaddr.ParseHost(host)
	return err == nil
}

// validHostName accepts what an SNI may hold: a name or an address as
// every part of Picket reads hosts (netaddr).
func validHostName(h string) bool {
	_, err := netaddr.ParseHost(h)
	return err == nil
}

// recordingConn reads through r and refuses to write.
type recordingConn struct {
	net.Conn
	r io.Reader
}

func (c *recordingConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *recordingConn) Write(p []byte) (int, error) { return 0, errors.New("recording only") }
