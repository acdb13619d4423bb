package config

import (
	"fmt"
	"net/url"
	"time"

	"github.com/picket-proxy/picket/reputation"
)

// Reputation is the [reputation] section: where verdicts for URLs and file
// hashes come from (docs/configuration.md, "[reputation]"). cmd/picket maps
// it into reputation.Config.
type Reputation struct {
	// Mode is "kpsn" (a private server, or the embedded database when
	// [reputation.kpsn] server is empty; the default) or "ksn" (the cloud).
	Mode string `toml:"mode"`
	// Fail is what a lookup gives when the service cannot answer in time:
	// "open" (unknown, the request goes on; the default) or "closed" (block).
	Fail string `toml:"fail"`
	// Timeout bounds one lookup request; default 300ms.
	Timeout Duration `toml:"timeout"`
	// CacheSize is the number of entries of each verdict cache; default 10000.
	CacheSize int `toml:"cache_size"`
	// Allow and Block are the administrator's lists: URLs, host expressions
	// ("example.org", "example.org/path/") or hex MD5/SHA-1/SHA-256 file
	// hashes. Block wins over Allow; both win over the service.
	Allow []string `toml:"allow"`
	Block []string `toml:"block"`
	// BreakerFailures consecutive failures open the circuit breaker; default 5.
	BreakerFailures int `toml:"breaker_failures"`
	// BreakerCooldown is how long the breaker stays open; default 10s.
	BreakerCooldown Duration `toml:"breaker_cooldown"`

	KSN  ReputationKSN  `toml:"ksn"`
	KPSN ReputationKPSN `toml:"kpsn"`
}

// ReputationKSN is [reputation.ksn]: the cloud service, and whether Picket
// participates in it (statistics and samples: docs/ksn.md).
type ReputationKSN struct {
	// Server is the cloud reputation server's base URL; required in ksn mode.
	Server string `toml:"server"`
	// Token is the bearer token sent to the server; "" sends none.
	Token string `toml:"token"`
	// Participation holds the participation switches
	// (config/participation.go).
	Participation
}

// ReputationKPSN is [reputation.kpsn]: the private service.
type ReputationKPSN struct {
	// Server is the private reputation server's base URL; "" uses the
	// embedded database instead.
	Server string `toml:"server"`
	// Token is the bearer token (KPSN licence) sent to the server.
	Token string `toml:"token"`
	// Database is the feed directory of the embedded database, relative to
	// the config file; default "data/feeds".
	Database string `toml:"database"`
	// Reload is how often the embedded database checks its feeds for
	// changes; "0s" only on SIGHUP. Default 5s.
	Reload Duration `toml:"reload"`
	// Compiled is the embedded database's compiled file, relative to the
	// config file: written at each load, mapped at start when the feeds
	// have not changed. "" is .feeds.db in the feed directory; "-" none.
	Compiled string `toml:"compiled"`
}

func (c *Reputation) defaults() {
	c.Mode = "kpsn"
	c.Fail = "open"
	c.Timeout = Duration(300 * time.Millisecond)
	c.CacheSize = 10000
	c.BreakerFailures = 5
	c.BreakerCooldown = Duration(10 * time.Second)
	c.KPSN.Database = "data/feeds"
	c.KPSN.Reload = Duration(5 * time.Second)
	c.KSN.Participation.defaults()
}

func (c *Reputation) validate(p *problems) {
	c.KSN.Participation.validate(p)
	p.oneOf("reputation.mode", "mode", c.Mode, "kpsn", "ksn")
	p.oneOf("reputation.fail", "policy", c.Fail, "open", "closed")
	if c.Timeout.D() < time.Millisecond || c.Timeout.D() > time.Minute {
		p.add("reputation.timeout", "must be between 1ms and 1m, got %s", c.Timeout.D())
	}
	if c.CacheSize < 1 || c.CacheSize > 10_000_000 {
		p.add("reputation.cache_size", "must be between 1 and 10000000 entries, got %d", c.CacheSize)
	}
	if c.BreakerFailures < 1 {
		p.add("reputation.breaker_failures", "must be at least 1, got %d", c.BreakerFailures)
	}
	if c.BreakerCooldown.D() <= 0 {
		p.add("reputation.breaker_cooldown", "must be positive")
	}
	for _, key := range []string{"allow", "block"} {
		list := c.Allow
		if key == "block" {
			list = c.Block
		}
		for _, e := range list {
			if _, err := reputation.ParseListEntry(e); err != nil {
				p.add("reputation."+key, "bad entry %q: want a URL, a host or a hex MD5/SHA-1/SHA-256", e)
			}
		}
	}
	if c.KSN.Server != "" {
		p.check("reputation.ksn.server", checkServerURL(c.KSN.Server))
	} else if c.Mode == "ksn" {
		p.add("reputation.ksn.server", "required in ksn mode")
	}
	if c.KPSN.Server != "" {
		p.check("reputation.kpsn.server", checkServerURL(c.KPSN.Server))
	} else if c.Mode == "kpsn" && c.KPSN.Database == "" {
		p.add("reputation.kpsn.database", "required in kpsn mode without a server")
	}
}

// checkServerURL accepts http(s)://host[:port][/path] without query,
// fragment or user info.
func checkServerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("invalid server URL %q (want http(s)://host[:port], no query or user info)", s)
	}
	return nil
}
