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
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Parent proxies: how Upstream reaches origins through them (upstream.go),
// in failover order, and what it knows of each.

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
			u.succeeded(p) // it answered: a connection it kept may have carried it, with no dial
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
		} else {
			u.succeeded(p) // it refused this target, but it answered
		}
		return nil, pe
	}
	u.succeeded(p)
	_ = c.SetDeadline(time.Time{})
	if n := br.Buffered(); n > 0 { // the origin spoke first, in the same read
		b, _ := br.Peek(n)
		return &replayConn{Conn: c, replay: bytes.Clone(b)}, nil
	}
	return c, nil
}

// dialParent opens a TCP connection to p, checked by the destination
// policy: a failure puts p in back-off. A connection made is not yet a
// parent up — only an answer is (viaHTTP, connect): a parent that accepts
// connections and then refuses Picket's credentials or never answers must
// keep its back-off growing.
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

// succeeded marks p up: it answered a request or a CONNECT.
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
