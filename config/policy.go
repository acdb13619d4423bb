package config

import (
	"sort"
	"time"

	"github.com/picket-proxy/picket/policy"
	"github.com/picket-proxy/picket/reputation"
)

// Policy is the [policy] section: settings shared by all [[rules]].
type Policy struct {
	// Timezone is the IANA time zone of the rules' days and hours
	// ("Europe/Berlin"); default "" is the machine's local time zone.
	Timezone string `toml:"timezone"`
	// Protection maps verdict kinds (unknown, clean, unwanted, phishing,
	// malware) to "allow", "warn" or "block" for requests no protection
	// rule matched. Kinds not given keep their defaults: malware and
	// phishing block, unwanted warns, unknown and clean pass.
	Protection map[string]string `toml:"protection"`
}

func (c *Policy) defaults() {}

func (c *Policy) validate(p *problems) {
	if _, err := c.Location(); err != nil {
		p.add("policy.timezone", "unknown time zone %q (want an IANA name such as \"Europe/Berlin\", or \"UTC\")", c.Timezone)
	}
	kinds := make([]string, 0, len(c.Protection))
	for k := range c.Protection {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		key := "policy.protection." + k
		if _, err := reputation.ParseKind(k); err != nil {
			p.add(key, "%v", err)
		}
		if _, err := policy.ParseAction(c.Protection[k]); err != nil {
			p.add(key, "%v", err)
		}
	}
}

// Location returns the rules' time zone.
func (c *Policy) Location() (*time.Location, error) {
	if c.Timezone == "" {
		return time.Local, nil
	}
	return time.LoadLocation(c.Timezone)
}

// PolicyConfig maps [[rules]], [policy] and the inspection part of [tls]
// into the policy engine's Config. haveCA is false when the proxy has no
// certificate authority. The file must have been validated.
func PolicyConfig(rules Rules, pol *Policy, tls *TLSPolicy, haveCA bool) (policy.Config, error) {
	loc, err := pol.Location()
	if err != nil {
		return policy.Config{}, err
	}
	prot := make(map[reputation.Kind]policy.Action, len(pol.Protection))
	for k, a := range pol.Protection {
		kind, err := reputation.ParseKind(k)
		if err != nil {
			return policy.Config{}, err
		}
		act, err := policy.ParseAction(a)
		if err != nil {
			return policy.Config{}, err
		}
		prot[kind] = act
	}
	return policy.Config{
		Rules:      rules.Policy(),
		Protection: prot,
		Location:   loc,
		Inspection: tls.Inspection(haveCA),
	}, nil
}
