package config

import (
	"fmt"
	"runtime"
	"time"
)

// Proxy is the [proxy] section: the client-facing listener and the upstream
// transport.
type Proxy struct {
	// Listen is the proxy's address; default "127.0.0.1:3128".
	Listen string `toml:"listen"`
	// AllowClients lists the networks allowed to use the proxy; default
	// loopback and the private ranges (RFC 1918, RFC 4193, link-local).
	AllowClients []string `toml:"allow_clients"`
	// AllowDestinations are CIDRs exempted from the destination deny list
	// (loopback, link-local, unspecified, multicast are denied by default).
	AllowDestinations []string `toml:"allow_destinations"`
	// DenyDestinations are CIDRs added to the destination deny list.
	DenyDestinations []string `toml:"deny_destinations"`
	// AllowPrivateDestinations lets requests reach RFC 1918/ULA addresses
	// (the intranet); default true.
	AllowPrivateDestinations bool `toml:"allow_private_destinations"`
	// AllowPorts are the ports and ranges CONNECT may reach.
	AllowPorts []string `toml:"allow_ports"`
	// ProxyProtocolFrom are the load balancers (CIDRs) trusted to send a
	// PROXY protocol (v1/v2) header naming the real client; a header from
	// anyone else is refused. Empty: no PROXY protocol.
	ProxyProtocolFrom []string `toml:"proxy_protocol_from"`
	// Via is the pseudonym added to the Via header; "" adds no Via header.
	Via string `toml:"via"`
	// ForwardedFor adds the client address to X-Forwarded-For; off by default
	// for privacy.
	ForwardedFor bool `toml:"forwarded_for"`
	// MaxHeaderBytes bounds a request's header block; larger gets 431.
	MaxHeaderBytes Size `toml:"max_header_bytes"`

	ReadHeaderTimeout     Duration `toml:"read_header_timeout"`
	IdleTimeout           Duration `toml:"idle_timeout"`
	TunnelIdleTimeout     Duration `toml:"tunnel_idle_timeout"`
	DialTimeout           Duration `toml:"dial_timeout"`
	TLSHandshakeTimeout   Duration `toml:"tls_handshake_timeout"`
	ResponseHeaderTimeout Duration `toml:"response_header_timeout"`
	UpstreamIdleTimeout   Duration `toml:"upstream_idle_timeout"`
	// TCPKeepalive sends TCP keepalive probes on client and upstream
	// connections idle this long; 0 (the default) sends none.
	TCPKeepalive Duration `toml:"tcp_keepalive"`
	// MaxIdleConnsPerHost sizes the upstream keep-alive pool per origin.
	MaxIdleConnsPerHost int `toml:"max_idle_conns_per_host"`
	// HTTP2 speaks HTTP/2 with intercepted clients and with origins that
	// offer it (ALPN); default true. False keeps both sides on HTTP/1.1.
	HTTP2 bool `toml:"http2"`
	// HTTP2MaxStreams bounds the concurrent streams of one intercepted
	// HTTP/2 client connection; default 100.
	HTTP2MaxStreams int `toml:"http2_max_streams"`
	// MaxConns and MaxConnsPerClient bound open client connections
	// overall and per client address (503 beyond); 0 means no limit.
	MaxConns          int `toml:"max_conns"`
	MaxConnsPerClient int `toml:"max_conns_per_client"`
	// ShutdownGrace is how long in-flight requests may run after SIGTERM.
	ShutdownGrace Duration `toml:"shutdown_grace"`
	// DrainDelay is how long Picket keeps accepting after SIGTERM, with
	// /readyz failing and connections closed after each response, so that
	// load balancers stop sending before the listener closes; default 0s.
	DrainDelay Duration `toml:"drain_delay"`
	// GCPercent is the Go garbage collector's target (GOGC); the GOGC
	// environment variable wins. Default 400: a proxy's live heap is small.
	GCPercent int `toml:"gc_percent"`
	// MemoryLimit is the soft memory limit the collector works to stay
	// under (GOMEMLIMIT, which wins); default 1GiB; "0" for none.
	MemoryLimit Size `toml:"memory_limit"`
	// SchedulerAwake keeps Go's system monitor out of its deep sleep
	// (GODEBUG=schedtrace at its largest period, set by Picket restarting
	// itself at start on Linux; a schedtrace in GODEBUG wins): 12-15 % less
	// CPU per new tunnel under load on a 2-vCPU VM, 0.2 % of a CPU when idle.
	// Default true.
	SchedulerAwake bool `toml:"scheduler_awake"`
}

// AwakeSchedtrace is what [proxy] scheduler_awake adds to GODEBUG: the
// largest schedtrace period Go accepts (an int32 of milliseconds, 24.8
// days). With any schedtrace set, Go's system monitor never sleeps deeply
// (runtime/proc.go, sysmon); cmd/picket/sched.go says why that matters.
const AwakeSchedtrace = "schedtrace=2147483647"

func (c *Proxy) defaults() {
	c.Listen = "127.0.0.1:3128"
	c.AllowPrivateDestinations = true
	c.AllowPorts = []string{"80", "443", "8080", "8443"}
	c.AllowClients = []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fe80::/10"}
	c.Via = "picket"
	c.MaxHeaderBytes = 64 << 10
	c.ReadHeaderTimeout = Duration(10 * time.Second)
	c.IdleTimeout = Duration(120 * time.Second)
	c.TunnelIdleTimeout = Duration(10 * time.Minute)
	c.DialTimeout = Duration(10 * time.Second)
	c.TLSHandshakeTimeout = Duration(10 * time.Second)
	c.ResponseHeaderTimeout = Duration(60 * time.Second)
	c.UpstreamIdleTimeout = Duration(90 * time.Second)
	c.MaxIdleConnsPerHost = 256
	c.HTTP2 = true
	c.HTTP2MaxStreams = 100
	c.MaxConns = 20000
	c.MaxConnsPerClient = 2000
	c.ShutdownGrace = Duration(15 * time.Second)
	c.GCPercent = 400
	c.MemoryLimit = 1 << 30
	c.SchedulerAwake = true
}

func (c *Proxy) validate(p *problems) {
	p.check("proxy.listen", checkListen(c.Listen))
	for key, list := range map[string][]string{
		"proxy.allow_clients":       c.AllowClients,
		"proxy.allow_destinations":  c.AllowDestinations,
		"proxy.deny_destinations":   c.DenyDestinations,
		"proxy.proxy_protocol_from": c.ProxyProtocolFrom,
	} {
		for _, n := range list {
			p.check(key, checkCIDR(n))
		}
	}
	for _, r := range c.AllowPorts {
		p.check("proxy.allow_ports", checkPortRange(r))
	}
	if c.MaxHeaderBytes < 1024 || c.MaxHeaderBytes > 1<<20 {
		p.add("proxy.max_header_bytes", "must be between 1KiB and 1MiB, got %d bytes", c.MaxHeaderBytes)
	}
	for key, d := range map[string]Duration{
		"proxy.read_header_timeout":     c.ReadHeaderTimeout,
		"proxy.idle_timeout":            c.IdleTimeout,
		"proxy.tunnel_idle_timeout":     c.TunnelIdleTimeout,
		"proxy.dial_timeout":            c.DialTimeout,
		"proxy.tls_handshake_timeout":   c.TLSHandshakeTimeout,
		"proxy.response_header_timeout": c.ResponseHeaderTimeout,
		"proxy.upstream_idle_timeout":   c.UpstreamIdleTimeout,
	} {
		if d <= 0 {
			p.add(key, "must be a positive duration")
		}
	}
	if c.DrainDelay.D() > 5*time.Minute {
		p.add("proxy.drain_delay", "must be at most 5m, got %s", c.DrainDelay.D())
	}
	if c.GCPercent < 25 || c.GCPercent > 10000 {
		p.add("proxy.gc_percent", "must be between 25 and 10000, got %d", c.GCPercent)
	}
	if c.MaxConns < 0 {
		p.add("proxy.max_conns", "must not be negative, got %d", c.MaxConns)
	}
	if c.MaxConnsPerClient < 0 {
		p.add("proxy.max_conns_per_client", "must not be negative, got %d", c.MaxConnsPerClient)
	}
	if c.HTTP2MaxStreams < 1 || c.HTTP2MaxStreams > 1000 {
		p.add("proxy.http2_max_streams", "must be between 1 and 1000, got %d", c.HTTP2MaxStreams)
	}
	if c.MaxIdleConnsPerHost < 0 {
		p.add("proxy.max_idle_conns_per_host", "must not be negative, got %d", c.MaxIdleConnsPerHost)
	}
}

// Admin is the [admin] section: the administration listener.
type Admin struct {
	// Listen is the admin API's address; default "127.0.0.1:9090"; "" disables it.
	Listen string `toml:"listen"`
	// AdminExtra holds token, token_file, allow_clients, recent, history
	// (admin.go).
	AdminExtra
}

func (c *Admin) defaults() {
	c.Listen = "127.0.0.1:9090"
	c.AdminExtra.defaults()
}

func (c *Admin) validate(p *problems) {
	c.AdminExtra.validate(p)
	if c.Listen != "" {
		p.check("admin.listen", checkListen(c.Listen))
	}
}

// Log is the [log] section.
type Log struct {
	// Level is the application log level: debug, info, warn or error.
	Level string `toml:"level"`
	// Format is "auto" (console on a terminal, JSON otherwise), "console" or "json".
	Format string `toml:"format"`
	// Output is where the application log goes: "stderr", "stdout" or a file path.
	Output string `toml:"output"`
	// AccessLog is where the access log goes: "stdout", "stderr", a file path or "off".
	AccessLog string `toml:"access_log"`
	// AccessLogQuery keeps query strings in logged URLs; off by default (they
	// often carry personal data and tokens).
	AccessLogQuery bool `toml:"access_log_query"`
	// AccessFormat is "json" (one object a line) or "squid" (Squid's native
	// access.log format, for SARG, Calamaris and SIEM parsers).
	AccessFormat string `toml:"access_format"`
}

func (c *Log) defaults() {
	c.Level = "info"
	c.Format = "auto"
	c.Output = "stderr"
	c.AccessLog = "stdout"
	c.AccessFormat = "json"
}

func (c *Log) validate(p *problems) {
	p.oneOf("log.level", "level", c.Level, "debug", "info", "warn", "error")
	p.oneOf("log.format", "format", c.Format, "auto", "console", "json")
	if c.Output == "" || c.Output == "off" {
		p.add("log.output", "must be stderr, stdout or a file path")
	}
	p.oneOf("log.access_format", "format", c.AccessFormat, "json", "squid")
	if c.AccessLog == "" {
		p.add("log.access_log", `must be stdout, stderr, a file path or "off"`)
	}
}

// TLS is the [tls] section: the interception CA, leaf certificates and
// upstream verification.
type TLS struct {
	// CACert and CAKey are the PEM files of the interception CA; both are
	// generated on first start when both are absent. Relative to the
	// config file; defaults "data/ca/picket-ca.pem" and "data/ca/picket-ca.key".
	CACert string `toml:"ca_cert"`
	CAKey  string `toml:"ca_key"`
	// CAName is the common name of a generated CA.
	CAName string `toml:"ca_name"`
	// LeafValidity is the lifetime of a minted leaf certificate (default 7 days).
	LeafValidity Duration `toml:"leaf_validity"`
	// CertCacheSize is the most minted certificates kept in memory.
	CertCacheSize int `toml:"cert_cache_size"`
	// ExtraRoots are PEM files of CA certificates trusted for upstream
	// servers in addition to the system roots.
	ExtraRoots []string `toml:"extra_roots"`
	// TLSPolicy holds the inspection keys: intercept, bypass,
	// intercept_only, block_page_intercept, auto_bypass* (tls_policy.go).
	TLSPolicy
}

func (c *TLS) defaults() {
	c.CACert = "data/ca/picket-ca.pem"
	c.CAKey = "data/ca/picket-ca.key"
	c.CAName = "Picket Interception CA"
	c.LeafValidity = Duration(7 * 24 * time.Hour)
	c.CertCacheSize = 10000
	c.TLSPolicy.defaults()
}

func (c *TLS) validate(p *problems) {
	c.TLSPolicy.validate(p)
	if c.CACert == "" {
		p.add("tls.ca_cert", "must name a file")
	}
	if c.CAKey == "" {
		p.add("tls.ca_key", "must name a file")
	}
	if c.LeafValidity < Duration(2*time.Hour) || c.LeafValidity > Duration(397*24*time.Hour) {
		p.add("tls.leaf_validity", "must be between 2h and 397 days, got %s", c.LeafValidity.D())
	}
	if c.CertCacheSize < 1 {
		p.add("tls.cert_cache_size", "must be at least 1, got %d", c.CertCacheSize)
	}
	for _, r := range c.ExtraRoots {
		if r == "" {
			p.add("tls.extra_roots", "empty path")
		}
	}
}

// Transparent is the [transparent] section: listeners for traffic that a
// gateway's firewall redirects to Picket (iptables/nftables REDIRECT).
type Transparent struct {
	// HTTPListen receives redirected port-80 traffic; "" disables it.
	HTTPListen string `toml:"http_listen"`
	// HTTPSListen receives redirected port-443 traffic; "" disables it.
	HTTPSListen string `toml:"https_listen"`
}

func (c *Transparent) defaults() {}

func (c *Transparent) validate(p *problems) {
	if c.HTTPListen != "" {
		p.check("transparent.http_listen", transparentHere())
		p.check("transparent.http_listen", checkListen(c.HTTPListen))
	}
	if c.HTTPSListen != "" {
		p.check("transparent.https_listen", transparentHere())
		p.check("transparent.https_listen", checkListen(c.HTTPSListen))
	}
}

// transparentHere refuses the transparent listeners outside Linux: only
// Linux tells a redirected connection's original destination
// (SO_ORIGINAL_DST), which Picket dials instead of the name a client sends.
func transparentHere() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("transparent listeners need Linux (SO_ORIGINAL_DST), not %s", runtime.GOOS)
	}
	return nil
}
