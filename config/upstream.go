package config

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/picket-proxy/picket/policy"
)

// Upstream is the [upstream] section: the parent proxies Picket forwards
// through, in failover order, and the destinations it reaches directly
// instead. Without parents Picket connects to every destination itself.
type Upstream struct {
	// Proxies are the parent proxies, "http://[user:password@]host:port",
	// tried in this order. Default empty: no parent.
	Proxies []string `toml:"proxies"`
	// DirectHosts are host patterns ([tls] bypass syntax) reached directly,
	// never through a parent. Default empty.
	DirectHosts []string `toml:"direct_hosts"`
	// DirectNetworks are networks (CIDR) reached directly: IP addresses in
	// them, and names that resolve into them. Default empty.
	DirectNetworks []string `toml:"direct_networks"`
	// Backoff is how long a parent that failed is skipped; it doubles with
	// each failure in a row, up to MaxBackoff. Defaults 5s and 2m.
	Backoff    Duration `toml:"backoff"`
	MaxBackoff Duration `toml:"max_backoff"`
}

func (c *Upstream) defaults() {
	c.Backoff = Duration(5 * time.Second)
	c.MaxBackoff = Duration(2 * time.Minute)
}

func (c *Upstream) validate(p *problems) {
	seen := make(map[string]bool)
	for _, s := range c.Proxies {
		u, err := ParentProxy(s)
		if err != nil {
			p.check("upstream.proxies", err)
			continue
		}
		if seen[u.Host] {
			p.add("upstream.proxies", "parent proxy %s listed twice", u.Host)
		}
		seen[u.Host] = true
	}
	if _, err := policy.CompileHosts(c.DirectHosts); err != nil {
		p.check("upstream.direct_hosts", err)
	}
	for _, n := range c.DirectNetworks {
		p.check("upstream.direct_networks", checkCIDR(n))
	}
	if c.Backoff.D() < 100*time.Millisecond {
		p.add("upstream.backoff", "must be at least 100ms, got %s", c.Backoff.D())
	}
	if c.MaxBackoff < c.Backoff {
		p.add("upstream.max_backoff", "must not be shorter than upstream.backoff (%s), got %s", c.Backoff.D(), c.MaxBackoff.D())
	}
}

// ParentProxy parses a parent proxy address, "http://[user:password@]host:port".
// Errors never repeat the password.
func ParentProxy(s string) (*url.URL, error) {
	shown := redactUserinfo(s)
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("invalid parent proxy %q (want http://[user:password@]host:port)", shown)
	}
	var errs []string
	if u.Scheme != "http" {
		errs = append(errs, "the scheme must be http (Picket speaks plain HTTP to its parents, CONNECT for TLS)")
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" {
		errs = append(errs, "it needs a host and a port")
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		errs = append(errs, fmt.Sprintf("invalid port %q", port))
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		errs = append(errs, "no path, query or fragment")
	}
	if u.User != nil && u.User.Username() == "" {
		errs = append(errs, "empty user name")
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid parent proxy %q: %s", shown, strings.Join(errs, "; "))
	}
	u.Path = ""
	return u, nil
}

// redactUserinfo hides the password of a URL-like string, for messages.
func redactUserinfo(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		scheme, rest = "", s
	}
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		return s
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return s
	}
	out := user + ":xxxxx" + rest[at:]
	if ok {
		out = scheme + "://" + out
	}
	return out
}
