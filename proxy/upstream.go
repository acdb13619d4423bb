package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
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
		return u.direct.RoundTrip(req)
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
	}
}

// CloseIdleConnections closes the pooled connections to origins and parents.
func (u *Upstream) CloseIdleConnections() {
	u.direct.CloseIdleConnections()
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

// viaHTTP sends a plain-HTTP request through the first parent that can be
// reached. A request whose body was not read yet (the parent could not be
// connected to) is sent to the next parent.
func (u *Upstream) viaHTTP(req *http.Request) (*http.Response, error) {
	var body *parentBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &parentBody{rc: req.Body}
		r := *req
		r.Body = body
		req = &r
	}
	var resp *http.Response
	err := u.eachParent(req.Context(), func(p *parent) error {
		var err error
		resp, err = p.http.RoundTrip(req)
		if err == nil && resp.StatusCode == http.StatusProxyAuthRequired {
			// Never pass the parent's challenge on: the client would take
			// it for Picket's.
			resp.Body.Close()
			resp, err = nil, &parentError{parent: p.addr, status: http.StatusProxyAuthRequired, down: true}
		}
		if err == nil {
			p.requests.Add(1)
			return nil
		}
		var pe *parentError
		if errors.As(err, &pe) && pe.down {
			if pe.status != 0 {
				u.failed(p, pe) // a dial failure was counted by the dialer
			}
			if body != nil && body.read {
				pe.down = false // the body is gone: no other parent can have it
			}
		}
		return err
	})
	if body != nil && err != nil {
		body.rc.Close()
	}
	return resp, err
}

// parentBody is a request body that survives a parent that could not be
// reached: the transport closes the body of a failed request, but until a
// byte of it was read it can still go to the next parent. Until then Close
// is left to viaHTTP (or, once the request is answered, to the server that
// read the request).
type parentBody struct {
	rc   io.ReadCloser
	read bool
}

func (b *parentBody) Read(p []byte) (int, error) {
	b.read = true
	return b.rc.Read(p)
}

func (b *parentBody) Close() error {
	if !b.read {
		return nil
	}
	return b.rc.Close()
}

// dialViaParents is the DialContext of the transport for https through a
// parent: a CONNECT to addr (pin in transparent mode), over which the
// transport speaks TLS with the origin.
func (u *Upstream) dialViaParents(ctx context.Context, _, addr string) (net.Conn, error) {
	if pin := routeOf(ctx).pin; pin != "" {
		addr = pin
	}
	c, err := u.tunnelVia(ctx, address(addr))
	if err != nil {
		return nil, err
	}
	ic := &idleConn{Conn: c}
	ic.idle(u.cfg.TunnelIdleTimeout)
	return ic, nil
}

// tunnelVia opens a tunnel to target (host:port) through the first parent
// that answers its CONNECT.
func (u *Upstream) tunnelVia(ctx context.Context, target string) (net.Conn, error) {
	var conn net.Conn
	err := u.eachParent(ctx, func(p *parent) error {
		c, err := u.connect(ctx, p, target)
		if err != nil {
			return err
		}
		p.requests.Add(1)
		conn = c
		return nil
	})
	return conn, err
}

// eachParent calls try with the parents in failover order until one
// succeeds or fails in a way another parent cannot mend (only a
// *parentError with down set moves on). Parents in back-off are skipped;
// when every one is, the one whose back-off ends first is tried anyway, so
// that a parent that came back is found by the next request.
func (u *Upstream) eachParent(ctx context.Context, try func(p *parent) error) error {
	now := u.now()
	var err error
	tried := false
	for _, p := range u.parents {
		if !p.claim(now, u.cfg.DialTimeout) {
			continue
		}
		tried = true
		if err = try(p); err == nil || !moveOn(ctx, err) {
			return err
		}
	}
	if tried {
		return err
	}
	return try(slices.MinFunc(u.parents, func(a, b *parent) int { return a.retryAt().Compare(b.retryAt()) }))
}

// moveOn reports whether a request that failed with err may try the next
// parent: the parent itself failed, and the client is still there.
func moveOn(ctx context.Context, err error) bool {
	var pe *parentError
	return errors.As(err, &pe) && pe.down && ctx.Err() == nil
}

// connect dials p (its address checked by the destination policy) and asks
// it for a tunnel to target. The parent's answer is bounded by the dial
// timeout, as a direct connection would be.
func (u *Upstream) connect(ctx context.Context, p *parent, target string) (net.Conn, error) {
	c, err := u.dialParent(ctx, p)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(u.cfg.DialTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(aLongTimeAgo) })
	defer stop()

	var b strings.Builder
	b.WriteString("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n")
	if p.auth != "" {
		b.WriteString("Proxy-Authorization: " + p.auth + "\r\n")
	}
	b.WriteString("\r\n")
	br := bufio.NewReader(io.LimitReader(c, int64(u.cfg.MaxHeaderBytes)))
	resp, err := func() (*http.Response, error) {
		if _, err := io.WriteString(c, b.String()); err != nil {
			return nil, err
		}
		return http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	}()
	if err != nil {
		c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		pe := &parentError{parent: p.addr, err: fmt.Errorf("no answer to CONNECT: %w", err), down: true}
		u.failed(p, pe)
		return nil, pe
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		c.Close()
		pe := &parentError{parent: p.addr, status: resp.StatusCode, target: target}
		if resp.StatusCode == http.StatusProxyAuthRequired {
			pe.down = true
			u.failed(p, pe)
		}
		return nil, pe
	}
	_ = c.SetDeadline(time.Time{})
	if n := br.Buffered(); n > 0 { // the origin spoke first, in the same read
		b, _ := br.Peek(n)
		return &replayConn{Conn: c, replay: bytes.Clone(b)}, nil
	}
	return c, nil
}

// dialParent opens a TCP connection to p, checked by the destination
// policy, and keeps p's health: a failure puts it in back-off.
func (u *Upstream) dialParent(ctx context.Context, p *parent) (net.Conn, error) {
	c, err := u.dialer.net.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err // the client left: says nothing about the parent
		}
		pe := &parentError{parent: p.addr, err: err, down: true}
		u.failed(p, pe)
		return nil, pe
	}
	u.succeeded(p)
	return c, nil
}

// failed puts p in back-off after err.
func (u *Upstream) failed(p *parent, err *parentError) {
	p.failures.Add(1)
	p.mu.Lock()
	p.fails++
	d := u.cfg.ParentBackoff << min(p.fails-1, 20)
	if d > u.cfg.ParentMaxBackoff || d <= 0 {
		d = u.cfg.ParentMaxBackoff
	}
	p.retry = u.now().Add(d)
	p.lastErr = err.Error()
	first := p.fails == 1
	p.down.Store(true)
	p.mu.Unlock()
	ev := u.cfg.Log.Warn()
	if !first {
		ev = u.cfg.Log.Debug()
	}
	ev.Str(fParent, p.addr).Str(fError, err.Error()).Dur("retry_in", d).Msg("parent proxy down")
}

// succeeded marks p up.
func (u *Upstream) succeeded(p *parent) {
	if !p.down.Load() {
		return
	}
	p.mu.Lock()
	was := p.fails
	p.fails, p.lastErr = 0, ""
	p.down.Store(false)
	p.mu.Unlock()
	if was > 0 {
		u.cfg.Log.Info().Str(fParent, p.addr).Msg("parent proxy up again")
	}
}

// parent is one parent proxy and its health.
type parent struct {
	addr string          // host:port: what is dialled, logged and shown (never the credentials)
	auth string          // Proxy-Authorization value; "" without credentials
	http *http.Transport // plain HTTP in absolute form through this parent

	requests, failures atomic.Uint64
	down               atomic.Bool // fails > 0: read without the lock on every request

	mu      sync.Mutex
	fails   int       // failures in a row
	retry   time.Time // when a parent in back-off may be tried again
	lastErr string
}

func (u *Upstream) newParent(pu *url.URL) (*parent, error) {
	host, port, err := net.SplitHostPort(pu.Host)
	if err != nil {
		return nil, fmt.Errorf("parent proxy %s: %w", pu.Redacted(), err)
	}
	p := &parent{addr: net.JoinHostPort(normalizeHost(host), port)}
	if ap, err := netip.ParseAddrPort(p.addr); err == nil {
		if err := u.dest.check(ap); err != nil {
			return nil, fmt.Errorf("parent proxy %s: %w (list it in allow_destinations)", p.addr, err)
		}
	}
	if pu.User != nil {
		pass, _ := pu.User.Password()
		p.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(pu.User.Username()+":"+pass))
	}
	proxyURL := &url.URL{Scheme: "http", Host: p.addr, User: pu.User}
	p.http = newTransport(u.cfg, func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, err := u.dialParent(ctx, p)
		if err != nil {
			return nil, err
		}
		ic := &idleConn{Conn: c}
		ic.idle(u.cfg.TunnelIdleTimeout)
		return ic, nil
	})
	p.http.Proxy = http.ProxyURL(proxyURL)
	return p, nil
}

// claim reports whether a request may try p at now: it is up, or its
// back-off is over — the request then probes it, and others skip it for
// hold, until the probe is decided.
func (p *parent) claim(now time.Time, hold time.Duration) bool {
	if !p.down.Load() {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fails == 0 {
		return true
	}
	if now.Before(p.retry) {
		return false
	}
	p.retry = now.Add(hold)
	return true
}

func (p *parent) retryAt() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.retry
}

// ParentStatus is one parent proxy's state, for the status API and the
// metrics.
type ParentStatus struct {
	// Proxy is the parent's host:port (never its credentials).
	Proxy string `json:"proxy"`
	// Up is false while the parent is skipped after a failure.
	Up bool `json:"up"`
	// Requests counts the requests and tunnels sent through it, Failures
	// the failed attempts to reach it (connections refused, timed out,
	// CONNECTs unanswered, credentials refused).
	Requests uint64 `json:"requests"`
	Failures uint64 `json:"failures"`
	// FailuresInARow and RetryAt: how many attempts failed since it last
	// worked, and when a down parent is tried again.
	FailuresInARow int       `json:"failures_in_a_row"`
	RetryAt        time.Time `json:"retry_at,omitzero"`
	// LastError is why it is down.
	LastError string `json:"last_error,omitempty"`
}

// Parents reports the parent proxies in failover order; nil without them.
func (u *Upstream) Parents() []ParentStatus {
	var out []ParentStatus
	for _, p := range u.parents {
		p.mu.Lock()
		st := ParentStatus{Proxy: p.addr, Up: p.fails == 0, Requests: p.requests.Load(), Failures: p.failures.Load(),
			FailuresInARow: p.fails, LastError: p.lastErr}
		if p.fails > 0 {
			st.RetryAt = p.retry
		}
		p.mu.Unlock()
		out = append(out, st)
	}
	return out
}

// parentError is a failure to reach a destination through a parent proxy.
type parentError struct {
	parent string // host:port
	status int    // the parent's refusal (CONNECT answer, or 407), 0 if it gave none
	target string // the CONNECT target, with status
	err    error  // the failure to reach the parent, with status 0
	down   bool   // the parent itself failed: another parent may do
}

func (e *parentError) Error() string {
	switch {
	case e.status == http.StatusProxyAuthRequired:
		return "parent proxy " + e.parent + " refused Picket's credentials (407)"
	case e.status != 0:
		return fmt.Sprintf("parent proxy %s answered CONNECT %s with %d %s", e.parent, e.target, e.status, http.StatusText(e.status))
	}
	return "parent proxy " + e.parent + ": " + e.err.Error()
}

func (e *parentError) Unwrap() error { return e.err }
