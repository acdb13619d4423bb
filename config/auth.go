package config

import (
	"strings"
	"time"
)

// Auth is the [auth] section: proxy authentication with HTTP Basic against
// an htpasswd file, a directory ([auth.ldap]) or both, the file's users first
// (docs/deployment.md, "Proxy authentication"). Off unless htpasswd or
// ldap.url is set.
type Auth struct {
	// Htpasswd is the htpasswd file of bcrypt entries ("htpasswd -B"),
	// relative to the config file; re-read when it changes. Default
	// empty: no local users.
	Htpasswd string `toml:"htpasswd"`
	// Groups is a file of "group: user1 user2" lines that rules can
	// match; default empty (no groups).
	Groups string `toml:"groups"`
	// Realm is the name browsers show when they ask for credentials;
	// default "Picket".
	Realm string `toml:"realm"`
	// MaxFailures is how many failed attempts a client address (an IPv6
	// client's /64) may make before it is refused with 429; it earns them
	// back over failure_window. Default 10.
	MaxFailures int `toml:"max_failures"`
	// MaxUserFailures is how many failed attempts one user name (from any
	// address) may take before it is refused with 429, earned back over
	// failure_window. Default 10.
	MaxUserFailures int `toml:"max_user_failures"`
	// FailureWindow is the period over which max_failures attempts are
	// earned back; default "1m".
	FailureWindow Duration `toml:"failure_window"`
	// CacheTTL is how long a verified user and password skip the (slow,
	// ~50 ms) bcrypt check; default "5m", "0s" checks every request.
	CacheTTL Duration `toml:"cache_ttl"`
	// LDAP is the [auth.ldap] section: a directory's users and groups.
	LDAP LDAP `toml:"ldap"`
}

// The bounds of the [auth] keys.
const (
	maxAuthFailures = 10000
	maxAuthWindow   = 24 * time.Hour
	maxAuthCacheTTL = time.Hour
	maxAuthRealm    = 200
)

func (c *Auth) defaults() {
	c.Realm = "Picket"
	c.MaxFailures = 10
	c.MaxUserFailures = 10
	c.FailureWindow = Duration(time.Minute)
	c.CacheTTL = Duration(5 * time.Minute)
	c.LDAP.defaults()
}

func (c *Auth) validate(p *problems) {
	if c.Groups != "" && !c.Enabled() {
		p.add("auth.groups", "needs auth.htpasswd or auth.ldap.url")
	}
	switch {
	case c.Realm == "" || len(c.Realm) > maxAuthRealm:
		p.add("auth.realm", "must be 1 to %d characters", maxAuthRealm)
	case strings.ContainsFunc(c.Realm, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		p.add("auth.realm", "must not contain control characters")
	}
	if c.MaxFailures < 1 || c.MaxFailures > maxAuthFailures {
		p.add("auth.max_failures", "must be between 1 and %d, got %d", maxAuthFailures, c.MaxFailures)
	}
	if c.MaxUserFailures < 1 || c.MaxUserFailures > maxAuthFailures {
		p.add("auth.max_user_failures", "must be between 1 and %d, got %d", maxAuthFailures, c.MaxUserFailures)
	}
	if c.FailureWindow < Duration(time.Second) || c.FailureWindow.D() > maxAuthWindow {
		p.add("auth.failure_window", "must be between 1s and 24h, got %s", c.FailureWindow.D())
	}
	if c.CacheTTL.D() > maxAuthCacheTTL {
		p.add("auth.cache_ttl", "must be at most 1h, got %s", c.CacheTTL.D())
	}
	c.LDAP.validate(p)
}

// Enabled reports whether proxy authentication is on.
func (c *Auth) Enabled() bool { return c.Htpasswd != "" || c.LDAP.Enabled() }

// AuthDefaults returns the defaults of [auth], for callers without a file.
func AuthDefaults() Auth {
	var c Auth
	c.defaults()
	return c
}
