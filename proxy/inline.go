package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// inlineClient sends the simplest forwarded requests — GET and HEAD without
// a body, over HTTP/1.1, to an origin Picket dials itself — in the caller's
// goroutine: it writes the request and reads the response on a pooled
// connection, where net/http's Transport hands each request to the
// connection's writer goroutine and takes the response from its reader
// goroutine (BenchmarkUpstreamTransport against BenchmarkUpstreamInline
// measure the difference). Every other request goes through the Transport.
//
// Its connections come from the Transport's own dial functions, so they are
// the same guarded connections (poolguard.go): a request starts only on a
// quiet connection, a response ends where its framing says, a 204 with a
// body ends its connection, and the address checks and pinning of the dial
// apply. An https origin is sent inline only after the Transport has spoken
// HTTP/1.1 with it (h1 below): HTTP/2 origins stay on the Transport's
// multiplexed connections.
type inlineClient struct {
	t           *http.Transport
	maxIdle     int           // idle connections kept per origin
	idleTimeout time.Duration // an idle connection is closed after this
	headTimeout time.Duration // ResponseHeaderTimeout
	maxHead     int64         // MaxResponseHeaderBytes

	mu      sync.Mutex
	idle    map[inlineKey][]*inlineConn
	h1      map[string]bool // https authorities that answered over HTTP/1.1
	sweeper bool            // the idle sweep runs
}

// inlineKey is an origin as the dial sees it: the pin of transparent mode
// changes where a connection goes.
type inlineKey struct {
	scheme, addr, pin string
}

// maxH1Origins bounds the origins remembered as HTTP/1.1; past it the
// memory starts again (each origin then goes once more through the
// Transport).
const maxH1Origins = 4096

func newInlineClient(t *http.Transport, cfg *Config) *inlineClient {
	maxHead := t.MaxResponseHeaderBytes
	if maxHead <= 0 {
		maxHead = 1 << 20
	}
	idle := cfg.UpstreamIdleTimeout
	if idle <= 0 {
		idle = 90 * time.Second
	}
	return &inlineClient{
		t: t, maxIdle: cfg.MaxIdleConnsPerHost, idleTimeout: idle, headTimeout: cfg.ResponseHeaderTimeout,
		maxHead: maxHead,
		idle:    map[inlineKey][]*inlineConn{}, h1: map[string]bool{},
	}
}

// inlineConn is a pooled connection with its buffers.
type inlineConn struct {
	g    *guardConn
	head headLimit // under br
	br   *bufio.Reader
	bw   *bufio.Writer
	used time.Time // when it went idle
}

// RoundTrip sends req inline when it can, else through the Transport.
func (ic *inlineClient) RoundTrip(req *http.Request) (*http.Response, error) {
	key, ok := ic.inlineKey(req)
	if !ok {
		resp, err := ic.t.RoundTrip(req)
		if err == nil && req.URL.Scheme == "https" && resp.ProtoMajor == 1 && inlineable(req) {
			ic.learnH1(req.URL.Host)
		}
		return resp, err
	}
	for attempt := 0; ; attempt++ {
		c, reused, err := ic.get(req.Context(), key)
		if err != nil {
			if errors.Is(err, errNotH1) { // the origin now offers HTTP/2
				ic.forgetH1(req.URL.Host)
				return ic.t.RoundTrip(req)
			}
			return nil, err
		}
		resp, retry, err := ic.exchange(c, key, req)
		if err == nil {
			return resp, nil
		}
		if !(retry && reused && attempt == 0) {
			return nil, err
		}
		// A pooled connection the origin closed (or spoke on) while it
		// was idle: once more on a new one, as the Transport does.
	}
}

// inlineable reports whether req can go inline: GET or HEAD, no body,
// no upgrade.
func inlineable(req *http.Request) bool {
	return (req.Method == http.MethodGet || req.Method == http.MethodHead) &&
		(req.Body == nil || req.Body == http.NoBody) && req.ContentLength == 0 &&
		!routeOf(req.Context()).http1Only && len(req.TransferEncoding) == 0
}

// inlineKey returns req's origin, or false when req goes through the
// Transport.
func (ic *inlineClient) inlineKey(req *http.Request) (inlineKey, bool) {
	if !inlineable(req) || req.URL.User != nil {
		return inlineKey{}, false
	}
	switch req.URL.Scheme {
	case "http":
	case "https":
		ic.mu.Lock()
		h1 := ic.h1[req.URL.Host]
		ic.mu.Unlock()
		if !h1 {
			return inlineKey{}, false
		}
	default:
		return inlineKey{}, false
	}
	return inlineKey{scheme: req.URL.Scheme, addr: hostPort(req.URL), pin: routeOf(req.Context()).pin}, true
}

func (ic *inlineClient) learnH1(host string) {
	ic.mu.Lock()
	if len(ic.h1) >= maxH1Origins {
		clear(ic.h1)
	}
	ic.h1[host] = true
	ic.mu.Unlock()
}

func (ic *inlineClient) forgetH1(host string) {
	ic.mu.Lock()
	delete(ic.h1, host)
	ic.mu.Unlock()
}

// errNotH1 is a new https connection on which the origin chose HTTP/2.
var errNotH1 = errors.New("origin chose HTTP/2")

// get returns a pooled connection to key, or a new one; reused says which.
func (ic *inlineClient) get(ctx context.Context, key inlineKey) (*inlineConn, bool, error) {
	now := time.Now()
	var stale []*inlineConn
	ic.mu.Lock()
	for l := ic.idle[key]; len(l) > 0; l = ic.idle[key] {
		c := l[len(l)-1]
		l[len(l)-1] = nil
		ic.idle[key] = l[:len(l)-1]
		if now.Sub(c.used) < ic.idleTimeout {
			ic.mu.Unlock()
			closeAll(stale)
			return c, true, nil
		}
		stale = append(stale, c)
	}
	ic.mu.Unlock()
	closeAll(stale)

	dial := ic.t.DialContext
	if key.scheme == "https" {
		dial = ic.t.DialTLSContext
	}
	nc, err := dial(ctx, "tcp", key.addr)
	if err != nil {
		return nil, false, err
	}
	g, ok := nc.(*guardConn)
	if !ok {
		nc.Close()
		return nil, false, errNotH1
	}
	c := &inlineConn{g: g, head: headLimit{r: g, max: ic.maxHead, left: -1}}
	c.br = bufio.NewReaderSize(&c.head, 4096)
	c.bw = bufio.NewWriterSize(g, 4096)
	return c, false, nil
}

func closeAll(cs []*inlineConn) {
	for _, c := range cs {
		c.g.Close()
	}
}

// headLimit bounds the bytes read for a response head (the Transport's
// MaxResponseHeaderBytes): between arm and disarm, reads past max fail.
type headLimit struct {
	r    io.Reader
	max  int64
	left int64 // < 0: no limit
}

func (h *headLimit) arm()    { h.left = h.max }
func (h *headLimit) disarm() { h.left = -1 }

func (h *headLimit) Read(p []byte) (int, error) {
	if h.left == 0 {
		return 0, errHeadTooLarge
	}
	if h.left > 0 && int64(len(p)) > h.left {
		p = p[:h.left]
	}
	n, err := h.r.Read(p)
	if h.left > 0 {
		h.left -= int64(n)
	}
	return n, err
}

// errHeadTooLarge is a response head over the limit.
var errHeadTooLarge = errors.New("upstream response head too large")

// put pools c for key, or closes it.
func (ic *inlineClient) put(key inlineKey, c *inlineConn) {
	c.used = time.Now()
	ic.mu.Lock()
	if len(ic.idle[key]) >= ic.maxIdle {
		ic.mu.Unlock()
		c.g.Close()
		return
	}
	ic.idle[key] = append(ic.idle[key], c)
	if !ic.sweeper {
		ic.sweeper = true
		go ic.sweep()
	}
	ic.mu.Unlock()
}

// sweep closes the connections idle longer than idleTimeout, every half of
// it, until none is left.
func (ic *inlineClient) sweep() {
	for {
		time.Sleep(ic.idleTimeout / 2)
		now := time.Now()
		var stale []*inlineConn
		ic.mu.Lock()
		for key, l := range ic.idle {
			keep := l[:0]
			for _, c := range l {
				if now.Sub(c.used) < ic.idleTimeout {
					keep = append(keep, c)
				} else {
					stale = append(stale, c)
				}
			}
			clear(l[len(keep):])
			if len(keep) == 0 {
				delete(ic.idle, key)
			} else {
				ic.idle[key] = keep
			}
		}
		done := len(ic.idle) == 0
		if done {
			ic.sweeper = false
		}
		ic.mu.Unlock()
		closeAll(stale)
		if done {
			return
		}
	}
}

// CloseIdleConnections closes every pooled connection.
func (ic *inlineClient) CloseIdleConnections() {
	ic.mu.Lock()
	idle := ic.idle
	ic.idle = map[inlineKey][]*inlineConn{}
	ic.mu.Unlock()
	for _, l := range idle {
		closeAll(l)
	}
}

// exchange sends req on c and reads the head of its response; the body
// gives c back when it has been read to its end. retry says the request
// failed before the origin answered a byte of it.
func (ic *inlineClient) exchange(c *inlineConn, key inlineKey, req *http.Request) (resp *http.Response, retry bool, err error) {
	ctx := req.Context()
	var timedOut atomic.Bool
	timer := noTimer
	if ic.headTimeout > 0 {
		timer = time.AfterFunc(ic.headTimeout, func() { timedOut.Store(true); c.g.Close() })
	}
	stop := context.AfterFunc(ctx, func() { c.g.Close() })
	defer func() {
		if err != nil {
			timer.Stop()
			stop()
			c.g.Close()
			switch {
			case ctx.Err() != nil:
				err, retry = ctx.Err(), false
			case timedOut.Load():
				err, retry = errHeadTimeout, false
			}
		}
	}()
	if err := req.Write(c.bw); err != nil {
		return nil, true, err // nothing answered yet (a quiet check that failed, a reset)
	}
	if err := c.bw.Flush(); err != nil {
		return nil, true, err
	}
	c.head.arm()
	if _, err := c.br.Peek(1); err != nil {
		return nil, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET), err
	}
	for {
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			return nil, false, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		// 1xx (103 Early Hints): informational, the final answer follows.
	}
	c.head.disarm()
	timer.Stop()
	if timedOut.Load() {
		return nil, false, errHeadTimeout
	}
	b := &inlineBody{rc: resp.Body, ic: ic, key: key, c: c, stop: stop, close: resp.Close}
	b.ended.Store(resp.Body == http.NoBody)
	resp.Body = b
	return resp, false, nil
}

// noTimer stands for the head timeout when there is none.
var noTimer = func() *time.Timer { t := time.NewTimer(time.Hour); t.Stop(); return t }()

// errHeadTimeout is a response head that did not come within
// ResponseHeaderTimeout: a timeout, as the Transport's own.
var errHeadTimeout error = &os.SyscallError{Syscall: "read", Err: os.ErrDeadlineExceeded}

// inlineBody is a response body on an inline connection: read to its end
// and closed, it gives the connection back to the pool. Closed before its
// end (the client left, a download was blocked), it closes the connection
// first: net/http's body would otherwise read the rest of it on Close, and
// a Read blocked in another goroutine returns at once.
type inlineBody struct {
	rc    io.ReadCloser
	ic    *inlineClient
	key   inlineKey
	c     *inlineConn
	stop  func() bool
	close bool // the response said Connection: close
	ended atomic.Bool
	done  atomic.Bool
}

func (b *inlineBody) Read(p []byte) (int, error) {
	if b.done.Load() {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.ended.Store(true)
	}
	return n, err
}

// Close closes the body; the connection goes back to the pool when the
// body was read to its end and the guard says the connection may carry
// another request.
func (b *inlineBody) Close() error {
	if b.done.Swap(true) {
		return nil
	}
	reuse := b.ended.Load() && !b.close
	if !reuse {
		b.c.g.Close() // first: the body's Close then reads nothing more
	}
	b.rc.Close()
	if b.stop() && reuse && b.c.br.Buffered() == 0 && b.c.g.reusable() {
		b.ic.put(b.key, b.c)
		return nil
	}
	b.c.g.Close()
	return nil
}

// reusable reports whether another request may start on g: its last
// response ended and nothing spoiled it.
func (g *guardConn) reusable() bool {
	g.t.mu.Lock()
	defer g.t.mu.Unlock()
	return g.t.spoiled == nil && g.t.phase == phaseIdle
}
