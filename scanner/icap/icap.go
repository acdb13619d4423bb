// Package icap is a small ICAP client (RFC 3507) for anti-virus services:
// RESPMOD for downloads and REQMOD for uploads, OPTIONS negotiation cached
// for the service's Options-TTL (ISTag, Methods, Preview, Transfer-Preview,
// Transfer-Ignore, Transfer-Complete, Max-Connections, Allow: 204), previews
// with ieof and 100 Continue, 204 No Content, encapsulated HTTP headers and
// chunked bodies both ways, and connection reuse. A server's modified
// response or its infection headers (X-Infection-Found, X-Virus-ID,
// X-Violations-Found) are a detection. It implements scanner.Engine.
//
// No maintained Go ICAP client was found that streams bodies, reuses
// connections and bounds what a server may send, hence this one; it knows
// only what an anti-virus client needs.
package icap

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/picket-proxy/picket/scanner"
	"github.com/picket-proxy/picket/scanner/internal/wire"
)

// Defaults of Config.
const (
	DefaultTimeout         = 30 * time.Second
	DefaultMaxConnections  = 32
	DefaultIdleConnections = 4
	DefaultIdleTimeout     = 30 * time.Second
	DefaultHealthInterval  = 30 * time.Second
	// DefaultOptionsTTL is used when the server sends no Options-TTL.
	DefaultOptionsTTL = time.Hour
	// DefaultPort is ICAP's port.
	DefaultPort = "1344"
)

// Config configures a Client. Zero fields take the defaults above.
type Config struct {
	// Name names the engine in logs and metrics; default "icap".
	Name string
	// URL is the RESPMOD service for downloads:
	// icap://host[:port]/service ("" scans no downloads).
	URL string
	// ReqmodURL is the REQMOD service for uploads ("" sends none; often
	// the same URL as a c-icap service handles both). At least one of the
	// two is needed.
	ReqmodURL string
	// Timeout bounds every exchange: connecting, OPTIONS, each write, the
	// answer to a preview and the verdict after the body's last byte.
	Timeout time.Duration
	// MaxConnections bounds the connections open at once (a server's
	// Max-Connections lowers it); a scan waits for a free one up to
	// Timeout.
	MaxConnections int
	// IdleConnections are kept open between requests, each for
	// IdleTimeout.
	IdleConnections int
	IdleTimeout     time.Duration
	// HealthInterval is how often OPTIONS is asked to check the server
	// (besides its Options-TTL), on a connection outside the pool;
	// negative: never.
	HealthInterval time.Duration
}

// Options are a service's answer to OPTIONS.
type Options struct {
	Methods []string
	ISTag   string
	Service string
	// Preview is how many bytes the server wants first; -1 for no preview.
	Preview int
	// The Transfer-* lists of file extensions ("*" for the rest).
	TransferPreview, TransferIgnore, TransferComplete []string
	MaxConnections                                    int // 0 if unlimited
	TTL                                               time.Duration
	Allow204                                          bool
	Fetched                                           time.Time
}

// Client talks to one ICAP server's anti-virus service(s). It is safe for
// concurrent use; Close stops its health checks and closes its connections.
type Client struct {
	cfg     Config
	respmod *service // nil without downloads
	reqmod  *service // nil without uploads
	health  *wire.Health
	once    sync.Once
}

var _ scanner.Engine = (*Client)(nil)

// service is one ICAP service URL with its options and connections.
type service struct {
	c      *Client
	method string // RESPMOD or REQMOD
	url    string // as sent in request lines
	host   string // host:port
	path   string
	pool   *wire.Pool

	fetch sync.Mutex // one OPTIONS request at a time
	mu    sync.Mutex
	opts  *Options
	istag string // the latest ISTag seen
}

// New checks cfg and returns a Client; it starts the health checks (the
// first at once, in the background) and does not wait for the server.
func New(cfg Config) (*Client, error) {
	if cfg.Timeout < 0 || cfg.MaxConnections < 0 || cfg.IdleConnections < 0 || cfg.IdleTimeout < 0 {
		return nil, errors.New("icap: negative timeout or count")
	}
	cfg.Name = cmp.Or(cfg.Name, "icap")
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultTimeout)
	cfg.MaxConnections = cmp.Or(cfg.MaxConnections, DefaultMaxConnections)
	cfg.IdleConnections = cmp.Or(cfg.IdleConnections, DefaultIdleConnections)
	cfg.IdleTimeout = cmp.Or(cfg.IdleTimeout, DefaultIdleTimeout)
	cfg.HealthInterval = cmp.Or(cfg.HealthInterval, DefaultHealthInterval)
	if cfg.URL == "" && cfg.ReqmodURL == "" {
		return nil, errors.New("icap: no service URL (RESPMOD or REQMOD)")
	}
	c := &Client{cfg: cfg}
	var err error
	if cfg.URL != "" {
		if c.respmod, err = c.newService("RESPMOD", cfg.URL); err != nil {
			return nil, err
		}
	}
	if cfg.ReqmodURL != "" {
		if c.reqmod, err = c.newService("REQMOD", cfg.ReqmodURL); err != nil {
			return nil, err
		}
	}
	c.health = wire.NewHealth("icap", c.primary().url)
	if cfg.HealthInterval > 0 {
		c.health.Run(cfg.HealthInterval, c.Check)
	}
	return c, nil
}

// ParseURL checks an ICAP service URL and returns host:port and the path.
func ParseURL(raw string) (hostport, path string, err error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "icap" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return "", "", fmt.Errorf("icap: service URL %q: want icap://host[:port]/service", raw)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = DefaultPort
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", "", fmt.Errorf("icap: service URL %q: bad port", raw)
	}
	path = u.EscapedPath()
	if path == "" || path == "/" {
		return "", "", fmt.Errorf("icap: service URL %q: want a service name after the host (icap://host/avscan)", raw)
	}
	if u.RawQuery != "" {
		path += "?" + u.RawQuery
	}
	return net.JoinHostPort(host, port), path, nil
}

func (c *Client) newService(method, raw string) (*service, error) {
	hostport, path, err := ParseURL(raw)
	if err != nil {
		return nil, err
	}
	s := &service{c: c, method: method, host: hostport, path: path, url: "icap://" + hostport + path}
	s.pool = wire.NewPool(s.dial, c.cfg.MaxConnections, c.cfg.IdleConnections, c.cfg.IdleTimeout)
	return s, nil
}

func (s *service) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: s.c.cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", s.host)
	if err != nil {
		return nil, fmt.Errorf("icap: %w", err)
	}
	return conn, nil
}

// Name implements scanner.Engine.
func (c *Client) Name() string { return c.cfg.Name }

// primary is the service that speaks for the server in health, options
// and tags: the RESPMOD service, else the REQMOD one.
func (c *Client) primary() *service {
	if c.respmod != nil {
		return c.respmod
	}
	return c.reqmod
}

// Tag implements scanner.Engine: the primary service's ISTag (a c-icap
// virus_scan ISTag changes with the signatures).
func (c *Client) Tag() string {
	p := c.primary()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.istag
}

// Health implements scanner.Engine.
func (c *Client) Health() scanner.EngineHealth { return c.health.Get() }

// Close stops the health checks and closes the idle connections. It is
// idempotent.
func (c *Client) Close() error {
	c.once.Do(func() {
		c.health.Stop()
		for _, s := range []*service{c.respmod, c.reqmod} {
			if s != nil {
				s.pool.Close()
			}
		}
	})
	return nil
}

// Check asks OPTIONS of the services now and records the result in Health.
func (c *Client) Check(ctx context.Context) error {
	o, err := c.primary().refresh(ctx)
	if err == nil && c.respmod != nil && c.reqmod != nil {
		_, err = c.reqmod.refresh(ctx)
	}
	if o != nil {
		c.health.Update(func(h *scanner.EngineHealth) { h.Version, h.Signatures = o.Service, o.ISTag })
	}
	c.health.Set(err)
	return err
}

// Options returns the primary service's options (RESPMOD's, else
// REQMOD's), asking the server when they are older than their Options-TTL.
func (c *Client) Options(ctx context.Context) (*Options, error) { return c.primary().options(ctx) }

// options returns the cached options while fresh, else asks the server.
func (s *service) options(ctx context.Context) (*Options, error) {
	s.mu.Lock()
	o := s.opts
	s.mu.Unlock()
	if o != nil && time.Since(o.Fetched) < o.TTL {
		return o, nil
	}
	s.fetch.Lock()
	defer s.fetch.Unlock()
	s.mu.Lock()
	o = s.opts
	s.mu.Unlock()
	if o != nil && time.Since(o.Fetched) < o.TTL {
		return o, nil
	}
	return s.ask(ctx, false)
}

// refresh asks OPTIONS now, on a connection of its own (outside the
// pool, so that a health check does not wait for busy scans).
func (s *service) refresh(ctx context.Context) (*Options, error) {
	s.fetch.Lock()
	defer s.fetch.Unlock()
	return s.ask(ctx, true)
}

// ask sends OPTIONS, on a pooled connection or, with own, on a new one
// closed after it; s.fetch is held.
func (s *service) ask(ctx context.Context, own bool) (*Options, error) {
	ctx, cancel := context.WithTimeout(ctx, s.c.cfg.Timeout)
	defer cancel()
	conn, release, err := s.conn(ctx, own)
	if err != nil {
		return nil, err
	}
	reusable := false
	defer func() { release(reusable) }()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	req := "OPTIONS " + s.url + " ICAP/1.0\r\nHost: " + s.host + "\r\nUser-Agent: Picket\r\nEncapsulated: null-body=0\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		return nil, fmt.Errorf("icap: OPTIONS: %w", err)
	}
	h, err := readHead(conn.R)
	if err != nil {
		return nil, fmt.Errorf("icap: OPTIONS %s: %w", s.url, err)
	}
	if h.status != 200 {
		return nil, fmt.Errorf("icap: OPTIONS %s: the server answered %d %s", s.url, h.status, clean(h.reason))
	}
	secs, err := parseEncapsulated(h.header.Get("Encapsulated"))
	if err != nil {
		return nil, fmt.Errorf("icap: OPTIONS %s: %w", s.url, err)
	}
	if len(secs) > 0 && secs[len(secs)-1].name == "opt-body" {
		if _, _, err := readChunked(conn.R, discard{}, 1<<20); err != nil {
			return nil, fmt.Errorf("icap: OPTIONS %s: %w", s.url, err)
		}
	}
	o := parseOptions(h, time.Now())
	if !o.has(s.method) {
		return nil, fmt.Errorf("icap: %s does not offer %s (its Methods: %s)", s.url, s.method, strings.Join(o.Methods, ", "))
	}
	s.pool.SetMax(min(s.c.cfg.MaxConnections, cmp.Or(o.MaxConnections, s.c.cfg.MaxConnections)))
	s.mu.Lock()
	s.opts, s.istag = o, o.ISTag
	s.mu.Unlock()
	reusable = !strings.EqualFold(h.header.Get("Connection"), "close")
	return o, nil
}

// conn returns a pooled connection, or with own a new one outside the
// pool, and the function that gives it back.
func (s *service) conn(ctx context.Context, own bool) (*wire.Conn, func(reusable bool), error) {
	if !own {
		c, err := s.pool.Get(ctx)
		if err != nil {
			return nil, nil, err
		}
		return c, c.Release, nil
	}
	nc, err := s.dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	return &wire.Conn{Conn: nc, R: bufio.NewReaderSize(nc, 4<<10)}, func(bool) { nc.Close() }, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func parseOptions(h *head, now time.Time) *Options {
	o := &Options{Preview: -1, TTL: DefaultOptionsTTL, Fetched: now,
		ISTag: clean(strings.Trim(h.header.Get("Istag"), `"`)), Service: clean(h.header.Get("Service"))}
	for m := range strings.SplitSeq(h.header.Get("Methods"), ",") {
		if m = strings.ToUpper(strings.TrimSpace(m)); m != "" {
			o.Methods = append(o.Methods, m)
		}
	}
	if n, err := strconv.Atoi(strings.TrimSpace(h.header.Get("Preview"))); err == nil && n >= 0 {
		o.Preview = min(n, 1<<20)
	}
	if n, err := strconv.Atoi(strings.TrimSpace(h.header.Get("Options-Ttl"))); err == nil && n > 0 {
		o.TTL = time.Duration(n) * time.Second
	}
	if n, err := strconv.Atoi(strings.TrimSpace(h.header.Get("Max-Connections"))); err == nil && n > 0 {
		o.MaxConnections = n
	}
	for _, v := range h.header.Values("Allow") {
		for a := range strings.SplitSeq(v, ",") {
			o.Allow204 = o.Allow204 || strings.TrimSpace(a) == "204"
		}
	}
	o.TransferPreview = extList(h.header.Get("Transfer-Preview"))
	o.TransferIgnore = extList(h.header.Get("Transfer-Ignore"))
	o.TransferComplete = extList(h.header.Get("Transfer-Complete"))
	return o
}

func extList(v string) []string {
	var out []string
	for e := range strings.SplitSeq(v, ",") {
		if e = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(e), ".")); e != "" {
			out = append(out, e)
		}
	}
	return out
}

func (o *Options) has(method string) bool {
	if len(o.Methods) == 0 {
		return true // a server that lists none is taken at its word that the service exists
	}
	for _, m := range o.Methods {
		if m == method {
			return true
		}
	}
	return false
}

// transfer is what the Transfer-* lists say of a file.
type transfer uint8

const (
	transferPreview transfer = iota
	transferComplete
	transferIgnore
)

// transferFor applies the Transfer-* lists to a file name's extension: an
// extension listed explicitly wins, then the list holding "*"; with none,
// preview.
func (o *Options) transferFor(name string) transfer {
	ext := ""
	if i := strings.LastIndexByte(name, '.'); i >= 0 && i < len(name)-1 && !strings.ContainsAny(name[i:], "/") {
		ext = strings.ToLower(name[i+1:])
	}
	lists := []struct {
		l []string
		t transfer
	}{{o.TransferComplete, transferComplete}, {o.TransferIgnore, transferIgnore}, {o.TransferPreview, transferPreview}}
	if ext != "" {
		for _, x := range lists {
			for _, e := range x.l {
				if e == ext {
					return x.t
				}
			}
		}
	}
	for _, x := range lists {
		for _, e := range x.l {
			if e == "*" {
				return x.t
			}
		}
	}
	return transferPreview
}

// noteISTag records the ISTag of a response: a new one means new
// signatures (cached verdicts under the old one are stale).
func (s *service) noteISTag(v string) {
	v = clean(strings.Trim(v, `"`))
	if v == "" {
		return
	}
	s.mu.Lock()
	s.istag = v
	s.mu.Unlock()
}

// encapsulated builds the HTTP header sections sent with a body: the
// request (origin form, Host), and for RESPMOD the response head.
func encapsulated(m scanner.EngineMeta, upload bool) (reqHdr, resHdr []byte) {
	method := cmp.Or(m.Method, "GET")
	host, path := "unknown", "/"
	if u, err := url.Parse(m.URL); err == nil && u.Host != "" {
		host, path = u.Host, cmp.Or(u.EscapedPath(), "/")
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", headerValue(method), headerValue(path), headerValue(host))
	if upload {
		if m.ContentType != "" {
			fmt.Fprintf(&b, "Content-Type: %s\r\n", headerValue(m.ContentType))
		}
		if m.Size >= 0 {
			fmt.Fprintf(&b, "Content-Length: %d\r\n", m.Size)
		}
		b.WriteString("\r\n")
		return b.Bytes(), nil
	}
	b.WriteString("\r\n")
	var r bytes.Buffer
	r.WriteString("HTTP/1.1 200 OK\r\n")
	if m.ContentType != "" {
		fmt.Fprintf(&r, "Content-Type: %s\r\n", headerValue(m.ContentType))
	}
	if m.Size >= 0 {
		fmt.Fprintf(&r, "Content-Length: %d\r\n", m.Size)
	}
	r.WriteString("\r\n")
	return b.Bytes(), r.Bytes()
}
