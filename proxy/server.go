package proxy

import (
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/elazarl/goproxy"
	"github.com/hashicorp/golang-lru/v2/expirable"

	"github.com/picket-proxy/picket/internal/netaddr"
)

// Server is a running Picket proxy: a listener, goproxy for HTTP parsing and
// the interception loop, our upstream transport and dialer, and the
// connection tracker for graceful shutdown.
type Server struct {
	cfg       Config
	gp        *goproxy.ProxyHttpServer
	up        *Upstream       // the way out: direct or through the parents (upstream.go)
	transport *http.Transport // up's direct transport
	dialer    *dialer
	dest      *destinations
	local     http.Handler
	pages     *pages
	http      *http.Server
	conns     *conns
	draining  atomic.Bool // Shutdown or Close began
	closeKeep atomic.Bool // Drain began: responses close their connections
	sweepOnce sync.Once   // starts watchSweep (fastpath.go)
	stdLog    *log.Logger // zerolog for net/http's and goproxy's own messages
	h2        *h2         // HTTP/2 towards intercepted clients (h2.go); nil when off
	h2Errors  h2ErrorCounts

	// Transparent HTTP (transparent.go): Host names recently seen to
	// resolve to a connection's original destination, and the lookup.
	hostMatches *expirable.LRU[hostDst, struct{}]
	lookupIP    func(ctx context.Context, host string) ([]netip.Addr, error)

	mu        sync.Mutex
	selfPorts map[string]bool // ports we listen on, for loop detection
	servers   []*http.Server  // transparent HTTP servers, shut down with the main one
	extra     []net.Listener  // transparent HTTPS listeners
}

// New builds a proxy server from cfg.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		conns:     newConns(cfg.MaxConns, cfg.MaxConnsPerClient),
		selfPorts: make(map[string]bool),

		hostMatches: expirable.NewLRU[hostDst, struct{}](hostMatchSize, nil, hostMatchTTL),
		lookupIP: func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		},
	}
	var err error
	if s.up = cfg.Upstream; s.up == nil {
		if s.up, err = newUpstream(&s.cfg); err != nil {
			return nil, err
		}
	}
	s.dest, s.dialer, s.transport = s.up.dest, s.up.dialer, s.up.direct
	if s.pages, err = newPages(&s.cfg); err != nil {
		return nil, err
	}
	s.stdLog = newStdLogger(cfg.Log)
	s.h2 = newH2(&s.cfg, s.stdLog, s.h2Errors.count)
	if s.h2 != nil && xconnectForced() {
		cfg.Log.Warn().Msg("GODEBUG=http2xconnect=1 makes HTTP/2 clients try WebSockets over HTTP/2, which Picket refuses: remove it so that they use HTTP/1.1")
	}
	s.local = s.localHandler()
	s.gp = s.newGoproxy()
	s.http = s.newHTTPServer(s, withConn)
	return s, nil
}

// newHTTPServer is an http.Server with the client-side limits every
// listener shares (the forward proxy, transparent HTTP, and each
// intercepted tunnel's requests), whose connections end after a request
// for an upgrade that did not switch protocols (closeAfterUpgrade).
func (s *Server) newHTTPServer(h http.Handler, connContext func(context.Context, net.Conn) context.Context) *http.Server {
	return &http.Server{
		Handler:           closeAfterUpgrade(h),
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          s.stdLog,
		ConnContext:       connContext,
	}
}

// newGoproxy configures goproxy for our pipeline: its default transport,
// CA, header stripping and environment proxy are all replaced.
func (s *Server) newGoproxy() *goproxy.ProxyHttpServer {
	gp := goproxy.NewProxyHttpServer()
	gp.Logger = s.stdLog
	gp.Verbose = false
	gp.Tr = s.transport  // only used if a RoundTripper is missing
	gp.ConnectDial = nil // NewProxyHttpServer installs one from HTTPS_PROXY
	gp.KeepHeader = true // we strip hop-by-hop headers ourselves (headers.go)
	gp.KeepAcceptEncoding = true
	gp.AllowHTTP2 = false // per-request filters do not run on goproxy's h2 MITM path
	gp.NonproxyHandler = s.local

	// Every request, plain or inside an intercepted tunnel, goes through
	// roundTrip. CONNECT never reaches goproxy: handleConnect and
	// intercept.go do tunnels and TLS themselves, with deadlines and limits
	// goproxy's MITM loop lacks (v1.9's https.go handshakes with the client
	// on context.Background(), reads the inner requests with no header-size
	// limit and no deadline, and closes the client connection on an upstream
	// error instead of answering it).
	rt := goproxy.RoundTripperFunc(func(in *http.Request, _ *goproxy.ProxyCtx) (*http.Response, error) {
		return s.roundTrip(exchangeOf(in), in)
	})
	gp.OnRequest().DoFunc(func(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		ctx.RoundTripper = rt
		return r, nil
	})

	return gp
}

// Serve accepts connections on ln until Shutdown. It returns
// http.ErrServerClosed after a shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.Protect(ln.Addr().String())
	inner := &listener{Listener: ln, conns: s.conns, guard: s.cfg.MaxHeaderBytes}
	return s.http.Serve(newFastListener(s, inner))
}

// Protect marks addr (host:port, e.g. the admin listener) as this proxy's
// own: requests to it are answered locally or refused, never forwarded.
func (s *Server) Protect(addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.selfPorts[port] = true
	s.mu.Unlock()
	if p, err := strconv.ParseUint(port, 10, 16); err == nil {
		s.dest.protect(uint16(p))
	}
}

// Drain prepares a shutdown while the listeners still accept: a load
// balancer is taking this node out of rotation (its health check sees
// /readyz fail). From now on every response closes its connection and idle
// keep-alive connections are closed, so that clients come back on new
// connections, which the balancer sends to another node once it has seen
// the health check fail; requests keep being served as before. Shutdown
// follows.
func (s *Server) Drain() {
	s.closeKeep.Store(true)
	s.http.SetKeepAlivesEnabled(false)
	for _, srv := range s.extraServers() {
		srv.SetKeepAlivesEnabled(false)
	}
	s.conns.closeIdleFast()
	s.shutdownH2() // GOAWAY: HTTP/2 clients finish their streams, then open new connections
}

// keepAlive reports whether a response may leave its connection open.
func (s *Server) keepAlive() bool { return !s.draining.Load() && !s.closeKeep.Load() }

// Shutdown stops accepting, lets in-flight requests and tunnels finish until
// ctx ends, then closes what is left. It returns ctx's error if it had to cut
// connections.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.closeExtra()
	s.conns.closeIdleFast()
	s.shutdownH2()
	for _, srv := range s.extraServers() {
		_ = srv.Shutdown(ctx)
	}
	err := s.http.Shutdown(ctx)
	if derr := s.conns.drain(ctx); err == nil {
		err = derr
	}
	s.up.CloseIdleConnections()
	if errors.Is(err, context.DeadlineExceeded) {
		s.cfg.Log.Warn().Msg("shutdown grace period over: closed the remaining connections")
	}
	return err
}

// Close stops the server at once.
func (s *Server) Close() error {
	s.draining.Store(true)
	s.closeExtra()
	for _, srv := range s.extraServers() {
		_ = srv.Close()
	}
	err := s.http.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.conns.drain(ctx)
	s.up.CloseIdleConnections()
	return err
}

// track registers a transparent HTTP server for shutdown.
func (s *Server) track(srv *http.Server) {
	s.mu.Lock()
	s.servers = append(s.servers, srv)
	s.mu.Unlock()
}

func (s *Server) extraServers() []*http.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Server(nil), s.servers...)
}

func (s *Server) closeExtra() {
	s.mu.Lock()
	ls := append([]net.Listener(nil), s.extra...)
	s.mu.Unlock()
	for _, l := range ls {
		_ = l.Close()
	}
}

// OpenConns returns the number of open client connections.
func (s *Server) OpenConns() int { return s.conns.count() }

// Upstream is the server's way out to origins and parent proxies.
func (s *Server) Upstream() *Upstream { return s.up }

// Parents reports the parent proxies' state; nil without parents.
func (s *Server) Parents() []ParentStatus { return s.up.Parents() }

// clientAllowed reports whether a may use the proxy.
func (s *Server) clientAllowed(a netip.Addr) bool {
	for _, p := range s.cfg.Clients {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// isSelf reports whether u names this proxy (one of our ports on a local
// address), which must never be forwarded.
func (s *Server) isSelf(u *url.URL) bool {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	s.mu.Lock()
	ours := s.selfPorts[port]
	s.mu.Unlock()
	if !ours {
		return false
	}
	h, err := netaddr.ParseHost(u.Hostname()) // "0x7f.1" is 127.0.0.1 here too
	switch {
	case err != nil:
		return false
	case h.Name == "localhost":
		return true
	case !h.IsAddr():
		return false
	}
	ip := h.Addr
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	return isLocalIP(ip)
}

var localIPs = sync.OnceValue(func() map[netip.Addr]bool {
	m := make(map[netip.Addr]bool)
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			m[p.Addr().Unmap()] = true
		}
	}
	return m
})

func isLocalIP(ip netip.Addr) bool { return localIPs()[ip.Unmap()] }

// stripPort returns the host of hostport (a Host header, a CONNECT target)
// without its port, as every part of Picket reads it (netaddr): a name in
// lower case and punycode, an address in canonical form without brackets.
// A host netaddr refuses comes back as written, without its port.
func stripPort(hostport string) string {
	if h, _, err := netaddr.ParseHostPort(hostport); err == nil {
		return h.String()
	}
	if host, _, err := netaddr.SplitHostPort(hostport); err == nil {
		return strings.Trim(host, "[]")
	}
	return hostport
}

// blockReason is the short reason sent in X-Picket-Reason.
func blockReason(d Decision) string {
	switch {
	case d.Reason != "":
		return d.Reason
	case d.Verdict != "":
		return "verdict " + d.Verdict
	case d.Rule != "":
		return "rule " + d.Rule
	}
	return "blocked by policy"
}

// headerSafe keeps a header value printable ASCII.
func headerSafe(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= ' ' && c < 0x7f {
			b = append(b, c)
		}
	}
	return string(b)
}

// dialRaw opens a TCP connection for a CONNECT tunnel (no idle wrapper: the
// tunnel's splice keeps its own idle clock). The dialer's Timeout bounds it.
func (d *dialer) dialRaw(ctx context.Context, addr string) (net.Conn, error) {
	return d.net.DialContext(ctx, "tcp", address(addr))
}
