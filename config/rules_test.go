package config

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/picket-proxy/picket/policy"
	"github.com/picket-proxy/picket/reputation"
)

// policyFile is the part of File this file adds, decoded and validated the
// way Parse does; TLS embeds TLSPolicy as config.TLS will.
type policyFile struct {
	Rules  Rules  `toml:"rules"`
	Policy Policy `toml:"policy"`
	TLS    struct {
		ExtraRoots []string `toml:"extra_roots"`
		TLSPolicy
	} `toml:"tls"`
}

func parsePolicy(t *testing.T, data string) (*policyFile, []*Error) {
	t.Helper()
	f := &policyFile{}
	f.Rules.defaults()
	f.Policy.defaults()
	f.TLS.TLSPolicy.defaults()
	md, err := toml.NewDecoder(strings.NewReader(data)).Decode(f)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	p := &problems{file: "t.toml", lines: keyLines([]byte(data))}
	for _, k := range md.Undecoded() {
		p.add(k.String(), "unknown key")
	}
	f.Rules.validate(p)
	f.Policy.validate(p)
	f.TLS.TLSPolicy.validate(p)
	var out []*Error
	for _, e := range p.errs {
		var ce *Error
		if !errors.As(e, &ce) {
			t.Fatalf("problem %v is not a *Error", e)
		}
		out = append(out, ce)
	}
	return f, out
}

func TestRulesParsed(t *testing.T) {
	f, errs := parsePolicy(t, `
[policy]
timezone = "Europe/Berlin"
protection = { unwanted = "block", unknown = "warn" }

[tls]
extra_roots = ["roots.pem"]
intercept = true
bypass = ["*.bank.example", "10.0.0.0/8"]
intercept_only = []
block_page_intercept = false
auto_bypass = "30m"

[[rules]]
name = "updates"
action = "bypass"
hosts = ["*.update.example"]

[[rules]]
name = "night uploads"
stage = "access"
action = "block"
methods = ["POST"]
days = ["mon", "tue"]
hours = "22:00-06:00"
clients = ["10.1.0.0/16"]

[[rules]]
name = "lab"
stage = "protection"
action = "allow"
verdicts = ["phishing"]
categories = ["phishing"]
users = ["alice"]
groups = ["lab"]
url_prefixes = ["https://phish.example/"]
url_regex = "^https://"
`)
	if len(errs) > 0 {
		t.Fatalf("got problems %v, want none", errs)
	}
	if got := len(f.Rules); got != 3 {
		t.Fatalf("got %d rules, want 3", got)
	}
	if got, want := f.Rules[1].Hours, "22:00-06:00"; got != want {
		t.Errorf("rules[1].hours: got %q, want %q", got, want)
	}
	if f.TLS.BlockPageIntercept || !f.TLS.Intercept || f.TLS.AutoBypass.D() != 30*time.Minute || len(f.TLS.ExtraRoots) != 1 {
		t.Errorf("tls: got %+v, want intercept, no block page intercept, auto_bypass 30m, one extra root", f.TLS)
	}
	cfg, err := PolicyConfig(f.Rules, &f.Policy, &f.TLS.TLSPolicy, true)
	if err != nil {
		t.Fatalf("PolicyConfig: %v", err)
	}
	if cfg.Location.String() != "Europe/Berlin" {
		t.Errorf("location: got %v, want Europe/Berlin", cfg.Location)
	}
	if cfg.Protection[reputation.KindUnwanted] != policy.Block || cfg.Protection[reputation.KindUnknown] != policy.Warn {
		t.Errorf("protection: got %v, want unwanted block, unknown warn", cfg.Protection)
	}
	if !cfg.Inspection.Intercept || len(cfg.Inspection.Bypass) != 2 || cfg.Inspection.AutoBypass != 30*time.Minute {
		t.Errorf("inspection: got %+v", cfg.Inspection)
	}
	if _, err := policy.New(cfg, nil, nil); err != nil {
		t.Errorf("policy.New: %v", err)
	}
	noCA, _ := PolicyConfig(f.Rules, &f.Policy, &f.TLS.TLSPolicy, false)
	if noCA.Inspection.Intercept || noCA.Inspection.BlockPageIntercept {
		t.Errorf("without a CA: got %+v, want no interception", noCA.Inspection)
	}
}

func TestPolicyDefaults(t *testing.T) {
	f, errs := parsePolicy(t, "")
	if len(errs) > 0 {
		t.Fatalf("got problems %v, want none", errs)
	}
	tp := f.TLS.TLSPolicy
	if !tp.Intercept || !tp.BlockPageIntercept || tp.AutoBypass.D() != time.Hour || tp.AutoBypassFailures != 3 || tp.AutoBypassWindow.D() != 5*time.Minute {
		t.Errorf("tls defaults: got %+v", tp)
	}
	if len(f.Rules) != 0 || f.Policy.Timezone != "" {
		t.Errorf("got rules %v, timezone %q; want none and local", f.Rules, f.Policy.Timezone)
	}
	cfg, err := PolicyConfig(f.Rules, &f.Policy, &f.TLS.TLSPolicy, true)
	if err != nil || cfg.Location != time.Local {
		t.Errorf("PolicyConfig: got location %v, err %v; want Local", cfg.Location, err)
	}
}

func TestInvalidRulesNamed(t *testing.T) {
	_, errs := parsePolicy(t, `
[[rules]]
name = "fine"
action = "allow"

[[rules]]
name = "broken"
action = "deny"
hosts = ["*"]
hours = "25:00-06:00"

[[rules]]
action = "block"

[[rules]]
name = "fine"
action = "block"
url_regex = "(?<x>"
host = ["typo.example"]
`)
	want := map[string]string{
		"rules[1].action":    `rule "broken": unknown action "deny"`,
		"rules[1].hosts":     `rule "broken": host pattern "*"`,
		"rules[1].hours":     `rule "broken": invalid window "25:00-06:00"`,
		"rules[2].name":      "unnamed rule: a rule needs a name",
		"rules[3].name":      `rule "fine": duplicate name (also rules[0])`,
		"rules[3].url_regex": `rule "fine": error parsing regexp`,
		"rules.host":         "unknown key",
	}
	got := map[string]string{}
	for _, e := range errs {
		got[e.Key] = e.Error()
	}
	for key, msg := range want {
		if !strings.Contains(got[key], msg) {
			t.Errorf("%s: got %q, want it to contain %q", key, got[key], msg)
		}
		if !strings.HasPrefix(got[key], "t.toml") {
			t.Errorf("%s: got %q, want the file name first", key, got[key])
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d problems %v, want %d", len(got), got, len(want))
	}
}

func TestInvalidPolicyAndTLS(t *testing.T) {
	_, errs := parsePolicy(t, `
[policy]
timezone = "Mars/Olympus"
protection = { evil = "block", malware = "drop" }

[tls]
bypass = ["ok.example", "bad host"]
intercept_only = ["*.*.example"]
auto_bypass_failures = 0
auto_bypass_window = "0s"
`)
	want := []string{
		"policy.timezone", "policy.protection.evil", "policy.protection.malware",
		"tls.bypass", "tls.intercept_only", "tls.auto_bypass_failures", "tls.auto_bypass_window",
	}
	var keys []string
	for _, e := range errs {
		keys = append(keys, e.Key)
	}
	if got := strings.Join(keys, ","); got != strings.Join(want, ",") {
		t.Errorf("keys: got %s, want %s", got, strings.Join(want, ","))
	}
	for _, e := range errs {
		if e.Key == "tls.bypass" && !strings.Contains(e.Msg, `"bad host"`) {
			t.Errorf("tls.bypass: got %q, want the bad pattern named", e.Msg)
		}
	}
}

func TestRuleFieldsMirrorPolicy(t *testing.T) {
	// Rules.Policy converts with policy.Rule(r): this fails to compile when
	// the two structs drift apart; the TOML keys are checked here.
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(Rule{Name: "n", Hosts: []string{"h"}, URLPrefixes: []string{"p"}, URLRegex: "r"}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"name", "hosts", "url_prefixes", "url_regex"} {
		if !strings.Contains(buf.String(), key+" =") {
			t.Errorf("encoded rule %q has no key %s", buf.String(), key)
		}
	}
}
