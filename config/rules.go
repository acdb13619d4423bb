package config

import (
	"errors"
	"fmt"

	"github.com/picket-proxy/picket/policy"
)

// Rule is one [[rules]] entry: an administrator's rule. The keys mirror
// policy.Rule, which documents what each criterion matches (docs/policy.md).
type Rule struct {
	// Name identifies the rule in logs and block pages; required, unique.
	Name string `toml:"name"`
	// Stage is "bypass", "access" or "protection"; default "bypass" when
	// action is "bypass", otherwise "access".
	Stage string `toml:"stage"`
	// Action is "bypass" (bypass stage), or "allow", "warn" or "block".
	Action string `toml:"action"`

	Hosts       []string `toml:"hosts"`
	URLPrefixes []string `toml:"url_prefixes"`
	URLRegex    string   `toml:"url_regex"`
	Categories  []string `toml:"categories"`
	Verdicts    []string `toml:"verdicts"`
	Clients     []string `toml:"clients"`
	Users       []string `toml:"users"`
	Groups      []string `toml:"groups"`
	Methods     []string `toml:"methods"`
	Days        []string `toml:"days"`
	Hours       string   `toml:"hours"`
}

// Rules is the ordered [[rules]] list; default empty.
type Rules []Rule

func (rs Rules) defaults() {}

// validate compiles the rules the way the engine will and reports each
// problem against its key, "rules[3].hosts", naming the rule.
func (rs Rules) validate(p *problems) {
	err := policy.CheckRules(rs.Policy())
	if err == nil {
		return
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var re *policy.RuleError
		if !errors.As(e, &re) {
			p.add("rules", "%v", e)
			continue
		}
		name := "unnamed rule"
		if re.Rule != "" {
			name = fmt.Sprintf("rule %q", re.Rule)
		}
		key := fmt.Sprintf("rules[%d].%s", re.Index, re.Key)
		if _, ok := p.lines[key]; !ok && p.lines != nil {
			// A missing key: point at the rule's [[rules]] header.
			if n, ok := p.lines[fmt.Sprintf("rules[%d]", re.Index)]; ok {
				p.lines[key] = n
			}
		}
		p.add(key, "%s: %v", name, re.Err)
	}
}

// Policy returns the rules as the policy engine takes them.
func (rs Rules) Policy() []policy.Rule {
	out := make([]policy.Rule, len(rs))
	for i, r := range rs {
		out[i] = policy.Rule(r)
	}
	return out
}
