package config

import (
	"time"

	"github.com/picket-proxy/picket/pac"
	"github.com/picket-proxy/picket/policy"
)

// PAC is the [pac] section: the proxy auto-configuration file served at
// /proxy.pac and /wpad.dat on the proxy listener (docs/deployment.md, "PAC
// and WPAD").
type PAC struct {
	// Enabled serves the PAC file; default true.
	Enabled bool `toml:"enabled"`
	// Proxies are the proxy addresses ("picket1.corp.example:3128") in
	// failover order. Default empty: the address the client fetched the
	// file from (its Host header; the listener's port when the header has
	// none). Set it when the file is fetched through another name, port or
	// server than browsers should use, as with WPAD on port 80.
	Proxies []string `toml:"proxies"`
	// FallbackDirect lets browsers go direct, unfiltered, when no proxy
	// answers; default false.
	FallbackDirect bool `toml:"fallback_direct"`
	// DirectPlainHosts sends host names without a dot ("intranet",
	// "localhost") direct; default true.
	DirectPlainHosts bool `toml:"direct_plain_hosts"`
	// DirectHosts are host patterns sent direct, in the syntax of
	// [tls] bypass: "intranet.example", "*.corp.example" (subdomains, not
	// the apex), "192.0.2.7", "198.51.100.0/24". Default empty.
	DirectHosts []string `toml:"direct_hosts"`
	// DirectNetworks are networks sent direct: IP-literal hosts are
	// matched without DNS, host names are resolved by the browser (only
	// when an IPv4 network is listed). Default the RFC 1918 ranges,
	// loopback and IPv6 unique-local (fc00::/7); [] resolves nothing.
	DirectNetworks []string `toml:"direct_networks"`
	// BypassTLS also sends the [tls] bypass hosts direct. Default false:
	// bypassed hosts are still filtered by the proxy (looked up, blocked
	// if need be), only not intercepted.
	BypassTLS bool `toml:"bypass_tls"`
	// File, when set, is a PAC file served as it is (relative to the
	// config file) instead of the generated one; the keys above are then
	// ignored. Default empty.
	File string `toml:"file"`
	// MaxAge is the Cache-Control max-age of the file; default "10m", at
	// most "168h".
	MaxAge Duration `toml:"max_age"`
}

// maxPACAge bounds pac.max_age.
const maxPACAge = 7 * 24 * time.Hour

func (c *PAC) defaults() {
	c.Enabled = true
	c.DirectPlainHosts = true
	c.DirectNetworks = []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "::1/128", "fc00::/7"}
	c.MaxAge = Duration(10 * time.Minute)
}

func (c *PAC) validate(p *problems) {
	for _, s := range c.Proxies {
		_, err := pac.ParseProxy(s)
		p.check("pac.proxies", err)
	}
	if _, err := policy.CompileHosts(c.DirectHosts); err != nil {
		p.check("pac.direct_hosts", err)
	}
	for _, n := range c.DirectNetworks {
		_, err := pac.ParseNetwork(n)
		p.check("pac.direct_networks", err)
	}
	if c.MaxAge.D() > maxPACAge {
		p.add("pac.max_age", "must be at most 168h, got %s", c.MaxAge.D())
	}
}

// PACDefaults returns the defaults of [pac], for callers without a file.
func PACDefaults() PAC {
	var c PAC
	c.defaults()
	return c
}
