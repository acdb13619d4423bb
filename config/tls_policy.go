package config

import (
	"time"

	"github.com/picket-proxy/picket/policy"
)

// TLSPolicy is the inspection part of the [tls] section: which CONNECT
// tunnels are intercepted (docs/tls-interception.md, "Which connections are
// intercepted"). It is embedded in TLS, so its keys sit
// directly under [tls].
type TLSPolicy struct {
	// Intercept turns TLS interception on; default true.
	Intercept bool `toml:"intercept"`
	// Bypass are host patterns never intercepted (banking, pinned apps);
	// they are still looked up at CONNECT time. Default empty.
	Bypass []string `toml:"bypass"`
	// InterceptOnly, when not empty, limits interception to these host
	// patterns. Default empty.
	InterceptOnly []string `toml:"intercept_only"`
	// BlockPageIntercept intercepts a blocked host that would otherwise be
	// tunnelled, just to show the block page; default true.
	BlockPageIntercept bool `toml:"block_page_intercept"`
	// AutoBypass is how long a host whose clients keep failing the
	// intercepted handshake is tunnelled untouched; default "1h", "0s"
	// disables auto-bypass.
	AutoBypass Duration `toml:"auto_bypass"`
	// AutoBypassFailures handshake failures within AutoBypassWindow start
	// an auto-bypass; default 3.
	AutoBypassFailures int `toml:"auto_bypass_failures"`
	// AutoBypassWindow is the period failures are counted in; default "5m".
	AutoBypassWindow Duration `toml:"auto_bypass_window"`
}

func (c *TLSPolicy) defaults() {
	c.Intercept = true
	c.BlockPageIntercept = true
	c.AutoBypass = Duration(time.Hour)
	c.AutoBypassFailures = policy.DefaultAutoBypassFailures
	c.AutoBypassWindow = Duration(policy.DefaultAutoBypassWindow)
}

func (c *TLSPolicy) validate(p *problems) {
	if _, err := policy.CompileHosts(c.Bypass); err != nil {
		p.check("tls.bypass", err)
	}
	if _, err := policy.CompileHosts(c.InterceptOnly); err != nil {
		p.check("tls.intercept_only", err)
	}
	if c.AutoBypassFailures < 1 || c.AutoBypassFailures > 1000 {
		p.add("tls.auto_bypass_failures", "must be between 1 and 1000, got %d", c.AutoBypassFailures)
	}
	if c.AutoBypassWindow.D() <= 0 {
		p.add("tls.auto_bypass_window", "must be a positive duration")
	}
}

// Inspection returns the section as the policy engine takes it. haveCA is
// false when the proxy has no certificate authority: then nothing is
// intercepted, not even for block pages.
func (c *TLSPolicy) Inspection(haveCA bool) policy.Inspection {
	return policy.Inspection{
		Intercept:          c.Intercept && haveCA,
		Bypass:             c.Bypass,
		InterceptOnly:      c.InterceptOnly,
		BlockPageIntercept: c.BlockPageIntercept && haveCA,
		AutoBypass:         c.AutoBypass.D(),
		AutoBypassFailures: c.AutoBypassFailures,
		AutoBypassWindow:   c.AutoBypassWindow.D(),
	}
}
