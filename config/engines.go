package config

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ScannerClamd is [scanner.clamd]: ClamAV's daemon as a scanning engine.
// An empty Address leaves it off.
type ScannerClamd struct {
	// Address is clamd's socket: "unix:/run/clamav/clamd.ctl" or
	// "host:port" (clamd's TCPSocket).
	Address string `toml:"address"`
	// Name names the engine in logs, metrics and block pages; default
	// "clamd".
	Name string `toml:"name"`
	// Timeout bounds connecting, each write of a body and the verdict
	// after its last byte; default 30s.
	Timeout Duration `toml:"timeout"`
	// StreamMaxLength is clamd.conf's StreamMaxLength: longer bodies are
	// scanned up to it and marked partial; default 25MiB (Debian's).
	StreamMaxLength Size `toml:"stream_max_length"`
	// MaxConnections bounds the connections to clamd (one per body being
	// scanned); default 32. IdleConnections are kept for reuse; default 4.
	MaxConnections  int `toml:"max_connections"`
	IdleConnections int `toml:"idle_connections"`
	// HealthInterval is how often PING and VERSION run; default 30s.
	HealthInterval Duration `toml:"health_interval"`
	// Fail is what happens to a body clamd could not judge: "open"
	// (default: it goes on to the next checks, logged and counted) or
	// "closed" (blocked).
	Fail string `toml:"fail"`
}

// ScannerICAP is [scanner.icap]: an ICAP anti-virus service (c-icap,
// commercial engines). With neither URL nor ReqmodURL it is off.
type ScannerICAP struct {
	// URL is the RESPMOD service for downloads: icap://host[:1344]/service;
	// "" sends none.
	URL string `toml:"url"`
	// ReqmodURL is the REQMOD service for uploads; "" sends none. Setting
	// it turns upload scanning on ([scanner] uploads = "auto").
	ReqmodURL string `toml:"reqmod_url"`
	// Name names the engine; default "icap".
	Name string `toml:"name"`
	// Timeout bounds connecting, OPTIONS, each write, the answer to a
	// preview and the verdict; default 30s.
	Timeout Duration `toml:"timeout"`
	// MaxConnections (lowered by the server's Max-Connections) and
	// IdleConnections, as for clamd; defaults 32 and 4.
	MaxConnections  int `toml:"max_connections"`
	IdleConnections int `toml:"idle_connections"`
	// HealthInterval is how often OPTIONS checks the server; default 30s.
	HealthInterval Duration `toml:"health_interval"`
	// Fail is "open" (default) or "closed", as for clamd.
	Fail string `toml:"fail"`
}

func (c *ScannerClamd) defaults() {
	c.Timeout = Duration(30 * time.Second)
	c.StreamMaxLength = 25 << 20
	c.MaxConnections, c.IdleConnections = 32, 4
	c.HealthInterval = Duration(30 * time.Second)
	c.Fail = "open"
}

func (c *ScannerICAP) defaults() {
	c.Timeout = Duration(30 * time.Second)
	c.MaxConnections, c.IdleConnections = 32, 4
	c.HealthInterval = Duration(30 * time.Second)
	c.Fail = "open"
}

func (c *ScannerClamd) validate(p *problems) {
	if c.Address != "" {
		p.check("scanner.clamd.address", checkClamdAddress(c.Address))
	}
	if c.StreamMaxLength < 1<<10 {
		p.add("scanner.clamd.stream_max_length", "must be at least 1KiB, got %d bytes", c.StreamMaxLength)
	}
	validateEngine(p, "scanner.clamd", c.Timeout, c.HealthInterval, c.MaxConnections, c.IdleConnections, c.Fail)
}

func (c *ScannerICAP) validate(p *problems) {
	if c.URL != "" {
		p.check("scanner.icap.url", checkICAPURL(c.URL))
	}
	if c.ReqmodURL != "" {
		p.check("scanner.icap.reqmod_url", checkICAPURL(c.ReqmodURL))
	}
	validateEngine(p, "scanner.icap", c.Timeout, c.HealthInterval, c.MaxConnections, c.IdleConnections, c.Fail)
}

func validateEngine(p *problems, key string, timeout, health Duration, maxConns, idle int, fail string) {
	if timeout < Duration(100*time.Millisecond) || timeout > Duration(10*time.Minute) {
		p.add(key+".timeout", "must be between 100ms and 10m, got %s", timeout.D())
	}
	if health < Duration(time.Second) {
		p.add(key+".health_interval", "must be at least 1s, got %s", health.D())
	}
	if maxConns < 1 || maxConns > 10000 {
		p.add(key+".max_connections", "must be between 1 and 10000, got %d", maxConns)
	}
	if idle < 0 || idle > maxConns {
		p.add(key+".idle_connections", "must be between 0 and max_connections (%d), got %d", maxConns, idle)
	}
	p.oneOf(key+".fail", "policy", fail, "open", "closed")
}

// checkClamdAddress accepts "unix:/abs/path", "/abs/path" and "host:port".
func checkClamdAddress(a string) error {
	path, isUnix := strings.CutPrefix(a, "unix:")
	if isUnix || strings.HasPrefix(a, "/") {
		if !strings.HasPrefix(path, "/") {
			return fmt.Errorf("invalid address %q: want unix:/absolute/path/clamd.ctl", a)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(strings.TrimPrefix(a, "tcp:"))
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
		return fmt.Errorf("invalid address %q: want unix:/path/to/clamd.ctl or host:port", a)
	}
	return nil
}

// checkICAPURL accepts icap://host[:port]/service.
func checkICAPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "icap" || u.Host == "" || u.User != nil || strings.Trim(u.Path, "/") == "" {
		return fmt.Errorf("invalid ICAP service URL %q: want icap://host[:port]/service", s)
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("invalid ICAP service URL %q: bad port", s)
		}
	}
	return nil
}
