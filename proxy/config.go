package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/scanner"
)

// Config is everything the proxy needs. cmd/picket maps config.toml into it;
// zero values mean the documented default.
type Config struct {
	// Clients are the networks allowed to use the proxy; empty means
	// loopback only (never an open proxy by default).
	Clients []netip.Prefix
	// Via is the pseudonym added to the Via header; "" adds none.
	Via string
	// ForwardedFor appends the client address to X-Forwarded-For.
	ForwardedFor bool
	// LogQuery keeps query strings in access-logged URLs.
	LogQuery bool
	// MaxHeaderBytes bounds a request's header block (default 64 KiB); larger
	// requests get 431.
	MaxHeaderBytes int

	ReadHeaderTimeout     time.Duration // client request headers (default 10s)
	IdleTimeout           time.Duration // idle client keep-alive (default 120s)
	TunnelIdleTimeout     time.Duration // tunnel and upstream idle, both directions (default 10m)
	DialTimeout           time.Duration // upstream TCP connect (default 10s)
	TLSHandshakeTimeout   time.Duration // upstream TLS handshake (default 10s)
	ResponseHeaderTimeout time.Duration // upstream response headers (default 60s)
	UpstreamIdleTimeout   time.Duration // pooled upstream connection idle (default 90s)
	// TCPKeepAlive is the idle time before TCP keepalive probes on upstream
	// connections (client connections: the listener's, see Listen); 0: none.
	TCPKeepAlive time.Duration
	// MaxIdleConnsPerHost sizes the upstream keep-alive pool (default 256).
	MaxIdleConnsPerHost int
	// DisableHTTP2 keeps every connection on HTTP/1.1: intercepted clients
	// are offered only http/1.1 by ALPN and origins are asked for it. By
	// default HTTP/2 is spoken on either side whose peer offers it (h2.go).
	DisableHTTP2 bool
	// HTTP2MaxStreams bounds the concurrent streams of one intercepted
	// HTTP/2 client connection (default DefaultHTTP2MaxStreams).
	HTTP2MaxStreams int
	// MaxConns and MaxConnsPerClient bound the open client connections,
	// overall and per client address; beyond them a connection gets 503
	// and is closed. 0 means no limit.
	MaxConns, MaxConnsPerClient int

	// AllowDestinations are exempted from the destination deny lists (a
	// loopback test origin, an intranet range denied by DenyDestinations).
	AllowDestinations []netip.Prefix
	// DenyDestinations are added to the built-in deny list (loopback,
	// link-local, unspecified, multicast), which is always on.
	DenyDestinations []netip.Prefix
	// DenyPrivateDestinations also denies the intranet ranges (RFC 1918,
	// 100.64/10, fc00::/7), which are allowed by default.
	DenyPrivateDestinations bool
	// ConnectPorts are the ports CONNECT may reach; nil means 80, 443,
	// 8080 and 8443.
	ConnectPorts []PortRange
	// BlockAddresses refuses destination addresses (the threat feeds'
	// address lists), checked on every address about to be dialled for
	// CONNECT, plain and transparent traffic alike: the client gets a block
	// page (or 403) showing its Decision. Nil checks nothing.
	BlockAddresses AddressBlocker

	// RootCAs verifies upstream certificates; nil means the system roots.
	RootCAs *x509.CertPool

	// Parents are the parent proxies, http://[user:password@]host:port,
	// that forwarded requests and tunnels go through, in failover order
	// (upstream.go); empty: Picket connects to every destination itself.
	Parents []*url.URL
	// DirectHosts reports whether a host (a name or an IP address, without
	// port) is reached directly rather than through the parents; nil: none.
	DirectHosts func(host string) bool
	// DirectNetworks are reached directly: IP addresses in them, and names
	// that resolve into them.
	DirectNetworks []netip.Prefix
	// ParentBackoff is how long a parent that failed is skipped (default
	// 5s); it doubles with each failure in a row up to ParentMaxBackoff
	// (default 2m).
	ParentBackoff, ParentMaxBackoff time.Duration
	// Upstream, if not nil, is the way out to use (shared with Picket's own
	// requests, NewUpstream); nil builds one from the fields above.
	Upstream *Upstream

	// Decider decides every request and CONNECT; nil allows everything and
	// tunnels CONNECTs untouched.
	Decider Decider
	// Intercept returns the server-side TLS configuration that presents a
	// minted certificate for host (host without port) to an intercepted
	// client; nil disables interception whatever the Decider says.
	Intercept func(host string) (*tls.Config, error)
	// BlockTemplate and WarnTemplate are html/template sources of the block
	// and warn pages; "" uses the embedded page.
	BlockTemplate, WarnTemplate string
	// Contact is the administrator's e-mail address shown on block pages.
	Contact string
	// WarnFor is how long "continue" on a warn page allows the host for the
	// client (default 1h).
	WarnFor time.Duration

	// Authenticate checks a request's Proxy-Authorization header and
	// returns the user and groups; nil means no authentication. An error
	// that is a *RateLimited gets 429 with Retry-After, one that is
	// ErrAuthUnavailable 503; any other error 407 with AuthChallenge in
	// Proxy-Authenticate.
	Authenticate  func(client netip.Addr, header string) (user string, groups []string, err error)
	AuthChallenge string
	// PAC, if not nil, serves /proxy.pac and /wpad.dat to clients that ask
	// the proxy itself for them.
	PAC http.Handler

	// CACert is the interception CA's certificate, served to clients at
	// /picket-ca.pem (and .der, .crt) with an install page at /ca; nil
	// serves none.
	CACert *x509.Certificate
	// HandshakeFailed is told the host of every intercepted tunnel whose
	// client refused our certificate (a pinned app); nil ignores them.
	HandshakeFailed func(host string)

	// Scanner scans downloads whose true type calls for it; nil scans
	// nothing.
	Scanner *scanner.Scanner
	// ScanMode is how scanned downloads are delivered (buffer or trickle).
	ScanMode ScanMode
	// ScanFailClosed blocks a download (or upload) the scanner could not
	// decide on; by default it is delivered (and logged).
	ScanFailClosed bool
	// ScanUploads has Scanner judge every request body (an upload: POST,
	// PUT, ...) before it is forwarded (upload.go); false forwards bodies
	// unscanned.
	ScanUploads bool

	// WantSample says whether participation wants a sample of a scanned
	// download that passed with an unknown verdict, downloaded by client;
	// OfferSample is then given the file's bytes (it copies what it keeps
	// before returning). Nil sends no samples.
	WantSample  func(client netip.Addr, e ScanEvent) bool
	OfferSample func(ScanEvent, io.Reader)

	// Observe is called once for every finished request or tunnel, after
	// its access-log line, on the goroutine that finished it: it must be
	// fast and must not block. Nil observes nothing.
	Observe func(Event)

	// AccessFormat is the access log's format: JSON lines through
	// AccessLog (default) or Squid's native format written to
	// AccessWriter.
	AccessFormat AccessFormat
	AccessWriter io.Writer

	// Log is the application log; AccessLog gets one line per request or
	// tunnel. Zero values discard.
	Log       zerolog.Logger
	AccessLog zerolog.Logger
}

func (c *Config) setDefaults() {
	if len(c.Clients) == 0 {
		c.Clients = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	setDefault(&c.MaxHeaderBytes, 64<<10)
	setDefault(&c.ReadHeaderTimeout, 10*time.Second)
	setDefault(&c.IdleTimeout, 120*time.Second)
	setDefault(&c.TunnelIdleTimeout, 10*time.Minute)
	setDefault(&c.DialTimeout, 10*time.Second)
	setDefault(&c.TLSHandshakeTimeout, 10*time.Second)
	setDefault(&c.ResponseHeaderTimeout, 60*time.Second)
	setDefault(&c.UpstreamIdleTimeout, 90*time.Second)
	setDefault(&c.MaxIdleConnsPerHost, 256)
	setDefault(&c.HTTP2MaxStreams, DefaultHTTP2MaxStreams)
	setDefault(&c.WarnFor, time.Hour)
	setDefault(&c.ParentBackoff, 5*time.Second)
	setDefault(&c.ParentMaxBackoff, 2*time.Minute)
	if c.Decider == nil {
		c.Decider = allowAll
	}
}

func setDefault[T int | time.Duration](v *T, d T) {
	if *v == 0 {
		*v = d
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.MaxHeaderBytes < 0 {
		errs = append(errs, errors.New("proxy: MaxHeaderBytes must not be negative"))
	}
	if c.HTTP2MaxStreams < 0 {
		errs = append(errs, errors.New("proxy: HTTP2MaxStreams must not be negative"))
	}
	for _, p := range c.Clients {
		if !p.IsValid() {
			errs = append(errs, errors.New("proxy: invalid client prefix"))
		}
	}
	for _, u := range c.Parents {
		if u == nil || u.Scheme != "http" || u.Port() == "" {
			errs = append(errs, errors.New("proxy: a parent proxy must be http://host:port"))
		}
	}
	return errors.Join(errs...)
}

// AccessFormat is the format of the access log.
type AccessFormat uint8

const (
	// AccessJSON writes one JSON object a line (zerolog).
	AccessJSON AccessFormat = iota
	// AccessSquid writes Squid's native access.log format.
	AccessSquid
)
