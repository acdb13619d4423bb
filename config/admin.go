package config

import (
	"strings"
	"time"
)

// AdminExtra holds the [admin] keys beyond listen (docs/operations.md, "The
// admin listener"): the bearer token,
// who may reach the listener and how much history the console keeps. It is
// embedded in Admin, so its keys sit directly under [admin].
type AdminExtra struct {
	// Token is the bearer token the admin API requires of every non-loopback
	// request and of every state-changing request. "" (the default) uses the
	// token in TokenFile, generated on first start.
	Token string `toml:"token"`
	// TokenFile is where a generated token is kept (mode 0600; refused when
	// group or others may read it), relative to the config file; default
	// "data/admin.token". Ignored when Token is set.
	TokenFile string `toml:"token_file"`
	// AllowClients, when not empty, lists the networks allowed to reach the
	// admin listener at all (loopback is always allowed); others get 403
	// even with the token. Default empty: any address with the token.
	AllowClients []string `toml:"allow_clients"`
	// Recent is how many finished requests the recent-decisions buffer
	// keeps; default 1000.
	Recent int `toml:"recent"`
	// History is how far back the console's per-minute charts go; default
	// "6h", at most "168h".
	History Duration `toml:"history"`
}

// The bounds of the [admin] extra keys.
const (
	minAdminToken  = 16
	maxAdminRecent = 100000
	maxAdminHist   = 7 * 24 * time.Hour
)

// AdminDefaults returns the defaults of the [admin] extra keys, for callers
// that build the admin server without a file.
func AdminDefaults() AdminExtra {
	var c AdminExtra
	c.defaults()
	return c
}

func (c *AdminExtra) defaults() {
	c.TokenFile = "data/admin.token"
	c.Recent = 1000
	c.History = Duration(6 * time.Hour)
}

func (c *AdminExtra) validate(p *problems) {
	switch {
	case c.Token != "" && len(c.Token) < minAdminToken:
		p.add("admin.token", "must be at least %d characters (or empty to generate one), got %d", minAdminToken, len(c.Token))
	case strings.ContainsAny(c.Token, " \t\r\n"):
		p.add("admin.token", "must not contain white space")
	}
	if c.Token == "" && c.TokenFile == "" {
		p.add("admin.token_file", "must name a file when admin.token is empty")
	}
	for _, n := range c.AllowClients {
		p.check("admin.allow_clients", checkCIDR(n))
	}
	if c.Recent < 1 || c.Recent > maxAdminRecent {
		p.add("admin.recent", "must be between 1 and %d, got %d", maxAdminRecent, c.Recent)
	}
	if c.History < Duration(10*time.Minute) || c.History > Duration(maxAdminHist) {
		p.add("admin.history", "must be between 10m and 168h, got %s", c.History.D())
	}
}
