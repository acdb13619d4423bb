package main

import (
	"slices"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/auth"
	"github.com/picket-proxy/picket/config"
	"github.com/picket-proxy/picket/pac"
)

// pacConfig maps [pac] (c, which is f.PAC) into the PAC handler's Config:
// paths resolved against the config file, and the [tls] bypass hosts added
// to the direct hosts when bypass_tls is set.
func pacConfig(f *config.File, c config.PAC) pac.Config {
	direct := slices.Clone(c.DirectHosts)
	if c.BypassTLS {
		direct = append(direct, f.TLS.Bypass...)
	}
	return pac.Config{
		Enabled:          c.Enabled,
		Proxies:          slices.Clone(c.Proxies),
		FallbackDirect:   c.FallbackDirect,
		DirectPlainHosts: c.DirectPlainHosts,
		DirectHosts:      direct,
		DirectNetworks:   slices.Clone(c.DirectNetworks),
		File:             f.Resolve(c.File),
		MaxAge:           c.MaxAge.D(),
	}
}

// newPAC builds the handler of /proxy.pac and /wpad.dat from [pac] (c,
// which is f.PAC). The proxy hands it origin-form requests for pac.Paths;
// when [pac] is disabled it answers 404.
func newPAC(f *config.File, c config.PAC, log zerolog.Logger) (*pac.Handler, error) {
	return pac.NewHandler(pacConfig(f, c), log)
}

// newAuthenticator builds proxy authentication from [auth] (c, which is
// f.Auth), or returns nil, nil when it is off (no htpasswd, no directory).
// The caller Closes it. It answers auth.ErrNoCredentials and
// auth.ErrBadCredentials with 407 and Proxy-Authenticate: Challenge(),
// auth.ErrRateLimited with 429 and Retry-After, auth.ErrUnavailable with 503.
func newAuthenticator(f *config.File, c config.Auth, log zerolog.Logger) (*auth.Authenticator, error) {
	if !c.Enabled() {
		return nil, nil
	}
	cfg := auth.Config{
		Htpasswd:        f.Resolve(c.Htpasswd),
		Groups:          f.Resolve(c.Groups),
		Realm:           c.Realm,
		MaxFailures:     c.MaxFailures,
		MaxUserFailures: c.MaxUserFailures,
		FailureWindow:   c.FailureWindow.D(),
		CacheTTL:        c.CacheTTL.D(),
	}
	if c.LDAP.Enabled() {
		cfg.LDAP = ldapConfig(f, c.LDAP, log)
	}
	return auth.New(cfg, log)
}
