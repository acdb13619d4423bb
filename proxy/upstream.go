package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"

	"github.com/picket-proxy/picket/internal/netaddr"
)

// Upstream is how Picket reaches origins: it dials them itself, with the
// destination policy checked on the address dialled, or goes through the
// parent proxies (Config.Parents) in failover order. Every way out of the
// proxy goes through it: forwarded requests on the fast path and through
// goproxy (RoundTrip), CONNECT tunnels and redirected TLS (dialTunnel).
//
// Through a parent, plain HTTP is sent in absolute form on a keep-alive
// connection to the parent, and https (intercepted requests) and tunnels go
// through a CONNECT on the parent. The destination policy applies twice:
// to the parent's own address, when it is dialled, and to what the client
// asked for, before anything is sent — an IP address as it is, a name on
// the addresses Picket's resolver gives for it (a name that does not
// resolve here is the parent's to resolve).
//
// There is no environment proxy: HTTP(S)_PROXY is never read, and no dial
// bypasses the dialer's destination check (goproxy's ConnectDial, which an
// environment proxy would install, is off).
type Upstream struct {
	cfg    *Config
	dest   *destinations
	dialer *dialer
	direct *http.Transport // origins Picket dials itself
	inline *inlineClient   // the simplest requests to them, in the caller's goroutine (else direct)

	// Parent proxies; all nil or empty without them.
	parents []*parent
	viaTLS  *http.Transport // https through a parent: CONNECT in its DialContext
	names   *expirable.LRU[string, []netip.Addr]
	lookup  func(ctx context.Context, host string) ([]netip.Addr, error)
	now     func() time.Time

	lists atomic.Uint64 // Config.BlockAddresses version the pooled connections were checked against
}

// NewUpstream builds the way out from the upstream settings of cfg: the
// destination policy, the parents, upstream TLS verification and the
// timeouts. The proxy builds its own (Server.Upstream); Picket's own
// requests, such as feed downloads, use one built here so that they follow
// the same routes and checks as user traffic.
func NewUpstream(cfg Config) (*Upstream, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return newUpstream(&cfg)
}

func newUpstream(cfg *Config) (*Upstream, error) {
	u := &Upstream{cfg: cfg, dest: newDestinations(cfg), now: time.Now}
	u.dialer = newDialer(cfg, u.dest)
	u.direct = newTransport(cfg, u.dialer.DialContext)
	u.inline = newInlineClient(u.direct, cfg)
	if len(cfg.Parents) == 0 {
		return u, nil
	}
	var errs []error
	for _, pu := range cfg.Parents {
		p, err := u.newParent(pu)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		u.parents = append(u.parents, p)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	u.viaTLS = newTransport(cfg, u.dialViaParents)
	u.names = expirable.NewLRU[string, []netip.Addr](hostMatchSize, nil, resolveTTL)
	u.lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
		return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	}
	return u, nil
}

// resolveTTL is how long Picket remembers what a name resolves to when it
// checks a request for a parent (about a typical DNS TTL).
const resolveTTL = 30 * time.Second

// RoundTrip sends req to its origin, directly or through the parents. It
// is the http.RoundTripper of every forwarded request.
func (u *Upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	u.recheckLists()
	if len(u.parents) == 0 {
		return u.inline.RoundTrip(req)
	}
	direct, err := u.goesDirect(req.Context(), hostPort(req.URL), routeOf(req.Context()).pin)
	switch {
	case err != nil:
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	case direct:
		return u.direct.RoundTrip(req)
	case req.URL.Scheme == "https":
		// CONNECT on a parent in the transport's DialContext; TLS with
		// the origin, verified, over the tunnel.
		return u.viaTLS.RoundTrip(req)
	}
	return u.viaHTTP(req)
}

// recheckLists closes the idle pooled connections to origins when the
// address lists changed since the last request, so that the next request
// dials again and the dialer checks the address (a connection busy at that
// moment is checked before its next write: recheckedConn).
func (u *Upstream) recheckLists() {
	b := u.cfg.BlockAddresses
	if b == nil {
		return
	}
	v := b.Version()
	if old := u.lists.Load(); old != v && u.lists.CompareAndSwap(old, v) {
		u.direct.CloseIdleConnections()
		u.inline.CloseIdleConnections()
	}
}

// CloseIdleConnections closes the pooled connections to origins and parents.
func (u *Upstream) CloseIdleConnections() {
	u.direct.CloseIdleConnections()
	u.inline.CloseIdleConnections()
	if u.viaTLS != nil {
		u.viaTLS.CloseIdleConnections()
	}
	for _, p := range u.parents {
		p.http.CloseIdleConnections()
	}
}

// dialTunnel opens the upstream side of a tunnel for host (host:port, what
// the client named): to pin when it is set (transparent mode: the original
// destination), else to host; directly or through a CONNECT on a parent.
func (u *Upstream) dialTunnel(ctx context.Context, host, pin string) (net.Conn, error) {
	target := host
	if pin != "" {
		target = pin
	}
	if len(u.parents) == 0 {
		return u.dialer.dialRaw(ctx, target)
	}
	direct, err := u.goesDirect(ctx, host, pin)
	switch {
	case err != nil:
		return nil, err
	case direct:
		return u.dialer.dialRaw(ctx, target)
	}
	return u.tunnelVia(ctx, address(target))
}

// goesDirect decides whether hostport (what the client asked for; pin, in
// transparent mode, the address it was sent to) is reached directly. When
// it goes to a parent, the destination policy is applied to it here: to an
// IP address, or to every address the name resolves to (a name that does
// not resolve here goes to the parent unchecked).
func (u *Upstream) goesDirect(ctx context.Context, hostport, pin string) (bool, error) {
	host, portStr, err := netaddr.SplitHostPort(hostport)
	if err != nil {
		host, portStr = hostport, ""
	}
	host = normalizeHost(host)
	if u.cfg.DirectHosts != nil && u.cfg.DirectHosts(host) {
		return true, nil
	}
	port, _ := strconv.ParseUint(portStr, 10, 16)
	var addrs []netip.Addr
	if ap, err := netip.ParseAddrPort(pin); err == nil {
		addrs, port = []netip.Addr{ap.Addr().Unmap()}, uint64(ap.Port())
	} else if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip.Unmap()}
	} else {
		addrs = u.resolve(ctx, host)
	}
	for _, a := range addrs {
		for _, n := range u.cfg.DirectNetworks {
			if n.Contains(a) {
				return true, nil
			}
		}
	}
	for _, a := range addrs {
		if err := u.dest.check(netip.AddrPortFrom(a, uint16(port))); err != nil {
			return false, err
		}
	}
	return false, nil
}

// resolve returns what name (as normalizeHost reads it) resolves to here,
// remembered for resolveTTL; nil when it does not resolve (within the dial
// timeout).
func (u *Upstream) resolve(ctx context.Context, name string) []netip.Addr {
	key := name
	if addrs, ok := u.names.Get(key); ok {
		return addrs
	}
	ctx, cancel := context.WithTimeout(ctx, u.cfg.DialTimeout)
	defer cancel()
	addrs, err := u.lookup(ctx, name)
	if err != nil {
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled) {
			return nil // the client left: nothing learned
		}
		addrs = []netip.Addr{}
	}
	for i, a := range addrs {
		addrs[i] = a.Unmap()
	}
	u.names.Add(key, addrs)
	return addrs
}

// hostPort is the URL's host:port, with the scheme's default port.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(strings.Trim(u.Hostname(), "[]"), port)
}
