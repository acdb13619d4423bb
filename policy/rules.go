package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"strings"

	"github.com/picket-proxy/picket/internal/netaddr"
	"github.com/picket-proxy/picket/reputation"
)

// Rule is one administrator's rule as written in the configuration; New
// compiles it. All given criteria must match; a list criterion matches when
// any of its entries does; an empty criterion matches everything.
type Rule struct {
	// Name identifies the rule in decisions, logs and block pages; required
	// and unique.
	Name string
	// Stage is "bypass", "access" or "protection". Empty means "bypass" when
	// Action is "bypass", otherwise "access".
	Stage string
	// Action is "bypass" for bypass rules (may be empty there), and "allow",
	// "warn" or "block" for access and protection rules.
	Action string

	// Hosts are host patterns (see HostSet) matched against the URL's host.
	Hosts []string
	// URLPrefixes match the start of the URL in normal form
	// ("https://example.com/downloads/"); a prefix without a scheme
	// ("example.com/downloads/") matches http and https.
	URLPrefixes []string
	// URLRegex is an RE2 regular expression matched against the URL in
	// normal form (unanchored: use ^ and $ to anchor).
	URLRegex string
	// Categories are verdict categories ("phishing", "blocklist"),
	// case-insensitive. Not allowed in the bypass stage.
	Categories []string
	// Verdicts are verdict kinds: unknown, clean, unwanted, phishing,
	// malware. Not allowed in the bypass stage.
	Verdicts []string
	// Clients are client addresses or networks ("10.1.0.0/16", "::1").
	Clients []string
	// Users and Groups are authenticated user and group names,
	// case-insensitive; an unauthenticated request matches neither.
	Users, Groups []string
	// Methods are HTTP methods ("GET", "POST", "CONNECT"), case-insensitive.
	Methods []string
	// Days are days of the week: mon, tue, wed, thu, fri, sat, sun.
	Days []string
	// Hours is a wall-clock window "HH:MM-HH:MM" in the configured time
	// zone, end exclusive; "22:00-06:00" spans midnight and belongs to the
	// day it starts on; "24:00" is allowed as an end.
	Hours string
}

// RuleError is a rule that does not compile: which rule (its position in
// the list, from 0, and its name), which key, and why.
type RuleError struct {
	Index int
	Rule  string
	Key   string // "hosts", "url_regex", ... as written in config.toml
	Err   error
}

func (e *RuleError) Error() string {
	return fmt.Sprintf("rule %q (rules[%d]): %s: %v", e.Rule, e.Index, e.Key, e.Err)
}

func (e *RuleError) Unwrap() error { return e.Err }

// CheckRules compiles rules and reports every problem as a *RuleError,
// joined; nil when all rules are valid. It is what New does to the rules,
// for configuration validation.
func CheckRules(rules []Rule) error {
	_, err := compileRules(rules)
	return err
}

// rule is a compiled Rule.
type rule struct {
	name   string
	stage  Stage
	action Action

	hosts    *HostSet
	prefixes []urlPrefix
	re       *regexp.Regexp
	cats     []string // lower case
	kinds    uint8    // bit set of reputation.Kind
	clients  []netip.Prefix
	users    []string
	groups   []string
	methods  []string // upper case
	window   *window

	needsURL     bool // prefixes or regex: build the URL's normal form
	needsVerdict bool // categories or verdicts: look the URL up
}

// urlPrefix is a prefix of a URL in normal form; anyScheme prefixes are
// compared with the URL after "scheme://".
type urlPrefix struct {
	s         string
	anyScheme bool
}

func compileRules(rules []Rule) ([]*rule, error) {
	var errs []error
	out := make([]*rule, 0, len(rules))
	seen := make(map[string]int)
	for i, r := range rules {
		fail := func(key string, err error) {
			errs = append(errs, &RuleError{Index: i, Rule: r.Name, Key: key, Err: err})
		}
		if strings.TrimSpace(r.Name) == "" {
			fail("name", errors.New("a rule needs a name"))
		} else if j, dup := seen[r.Name]; dup {
			fail("name", fmt.Errorf("duplicate name (also rules[%d])", j))
		} else {
			seen[r.Name] = i
		}
		c, cerrs := compileRule(r)
		for _, ke := range cerrs {
			fail(ke.key, ke.err)
		}
		out = append(out, c)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

type keyError struct {
	key string
	err error
}

func compileRule(r Rule) (*rule, []keyError) {
	var errs []keyError
	fail := func(key string, err error) { errs = append(errs, keyError{key, err}) }
	c := &rule{name: r.Name}
	c.stage, c.action = ruleStage(r, fail)
	c.compileURLCriteria(r, fail)
	c.compileVerdictCriteria(r, fail)
	c.compileWhoCriteria(r, fail)
	if len(r.Days) > 0 || r.Hours != "" {
		w, kerrs := compileWindow(r.Days, r.Hours)
		errs = append(errs, kerrs...)
		c.window = w
	}
	c.needsURL = len(c.prefixes) > 0 || c.re != nil
	c.needsVerdict = len(c.cats) > 0 || c.kinds != 0
	return c, errs
}

// ruleStage reads a rule's stage and action: a bypass rule's action is
// bypass; other stages need allow, warn or block.
func ruleStage(r Rule, fail func(string, error)) (stage Stage, action Action) {
	switch {
	case r.Stage != "":
		s, err := ParseStage(r.Stage)
		if err != nil {
			fail("stage", err)
		}
		stage = s
	case r.Action == "bypass":
		stage = StageBypass
	default:
		stage = StageAccess
	}
	switch {
	case stage == StageBypass:
		if r.Action != "" && r.Action != "bypass" {
			fail("action", fmt.Errorf("a bypass rule's action is \"bypass\" (or empty), got %q", r.Action))
		}
	case r.Action == "":
		fail("action", errors.New("missing (want allow, warn or block)"))
	case r.Action == "bypass":
		fail("action", fmt.Errorf("\"bypass\" needs stage \"bypass\", not %q", r.Stage))
	default:
		a, err := ParseAction(r.Action)
		if err != nil {
			fail("action", err)
		}
		action = a
	}
	return stage, action
}

// compileURLCriteria compiles what a rule matches of the URL: hosts, URL
// prefixes, a regular expression.
func (c *rule) compileURLCriteria(r Rule, fail func(string, error)) {
	if len(r.Hosts) > 0 {
		hs, err := CompileHosts(r.Hosts)
		if err != nil {
			fail("hosts", err)
		}
		c.hosts = hs
	}
	for _, p := range r.URLPrefixes {
		up, err := compilePrefix(p)
		if err != nil {
			fail("url_prefixes", err)
			continue
		}
		c.prefixes = append(c.prefixes, up)
	}
	if r.URLRegex != "" {
		re, err := regexp.Compile(r.URLRegex)
		if err != nil {
			fail("url_regex", err)
		}
		c.re = re
	}
}

// compileVerdictCriteria compiles what a rule matches of the reputation
// verdict (categories, kinds), which a bypass rule cannot know.
func (c *rule) compileVerdictCriteria(r Rule, fail func(string, error)) {
	for _, cat := range r.Categories {
		if strings.TrimSpace(cat) == "" {
			fail("categories", errors.New("empty category"))
			continue
		}
		c.cats = append(c.cats, strings.ToLower(strings.TrimSpace(cat)))
	}
	for _, v := range r.Verdicts {
		k, err := reputation.ParseKind(strings.ToLower(strings.TrimSpace(v)))
		if err != nil {
			fail("verdicts", err)
			continue
		}
		c.kinds |= 1 << k
	}
	if c.stage == StageBypass {
		if len(r.Categories) > 0 {
			fail("categories", errors.New("bypass rules are decided before any lookup: no categories"))
		}
		if len(r.Verdicts) > 0 {
			fail("verdicts", errors.New("bypass rules are decided before any lookup: no verdicts"))
		}
	}
}

// compileWhoCriteria compiles what a rule matches of who asks and how:
// client networks, users, groups, methods.
func (c *rule) compileWhoCriteria(r Rule, fail func(string, error)) {
	for _, n := range r.Clients {
		p, err := netaddr.ParsePrefix(n)
		if err != nil {
			fail("clients", err)
			continue
		}
		c.clients = append(c.clients, p)
	}
	c.users = nonEmpty(r.Users, "users", fail)
	c.groups = nonEmpty(r.Groups, "groups", fail)
	for _, m := range r.Methods {
		m = strings.ToUpper(strings.TrimSpace(m))
		if !validMethod(m) {
			fail("methods", fmt.Errorf("invalid method %q", m))
			continue
		}
		c.methods = append(c.methods, m)
	}
}

func nonEmpty(list []string, key string, fail func(string, error)) []string {
	var out []string
	for _, s := range list {
		if s = strings.TrimSpace(s); s == "" {
			fail(key, errors.New("empty name"))
			continue
		}
		out = append(out, s)
	}
	return out
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; !(c >= 'A' && c <= 'Z') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// compilePrefix normalizes a URL prefix like the URLs it is compared with.
// A prefix naming only a host gets a "/" so that "https://example.com" does
// not match "https://example.com.evil.example/".
func compilePrefix(p string) (urlPrefix, error) {
	p = strings.TrimSpace(p)
	anyScheme := !strings.Contains(p, "://")
	raw := p
	if anyScheme {
		raw = "http://" + p
	}
	u, err := url.Parse(raw)
	if err != nil {
		return urlPrefix{}, fmt.Errorf("invalid URL prefix %q: %v", p, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return urlPrefix{}, fmt.Errorf("URL prefix %q: scheme must be http or https", p)
	}
	if u.Host == "" || u.User != nil || u.Fragment != "" {
		return urlPrefix{}, fmt.Errorf("URL prefix %q: want [scheme://]host[:port][/path][?query]", p)
	}
	if _, ok := normalizeHost(u.Host); !ok {
		return urlPrefix{}, fmt.Errorf("URL prefix %q: invalid host", p)
	}
	if u.Path == "" && u.RawQuery == "" && !u.ForceQuery {
		u.Path = "/"
	}
	n := normalURL(u)
	if anyScheme {
		n = strings.TrimPrefix(n, "http://")
	}
	return urlPrefix{s: n, anyScheme: anyScheme}, nil
}

// normalURL writes u as scheme://host[:port]/path[?query]: scheme and host
// lower case, international host in punycode, default port dropped, no user
// information, no fragment; the path as origins read it (normalPath); the
// query as escaped in the request. URL prefixes and regular expressions see
// this form.
func normalURL(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host, _ := normalizeHost(u.Host)
	if port := u.Port(); port != "" && port != defaultPort(scheme) {
		if strings.IndexByte(host, ':') >= 0 {
			host = "[" + host + "]"
		}
		host += ":" + port
	} else if strings.IndexByte(host, ':') >= 0 {
		host = "[" + host + "]"
	}
	p := normalPath(u.Path)
	var b strings.Builder
	b.Grow(len(scheme) + 3 + len(host) + len(p) + 1 + len(u.RawQuery))
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(host)
	b.WriteString(p)
	if u.RawQuery != "" || u.ForceQuery {
		b.WriteByte('?')
		b.WriteString(u.RawQuery)
	}
	return b.String()
}

// normalPath writes the path p, unescaped once as url.URL.Path holds it,
// as origins read it: dot segments and repeated slashes resolved (a
// trailing slash kept), then '%', '?', '#', spaces, control and non-ASCII
// bytes escaped again. So "/%61dmin/", "/x/../admin/", "//admin/" and
// "/admin%2F" are all "/admin/", as an origin that unescapes the path
// before it routes (Go, nginx) serves them: written as the client escaped
// them, they slipped past the rules on "/admin/".
func normalPath(p string) string {
	if p == "" {
		return "/"
	}
	c := path.Clean(p)
	if c != "/" && (strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..")) {
		c += "/"
	}
	n := 0
	for i := 0; i < len(c); i++ {
		if escapeInPath(c[i]) {
			n++
		}
	}
	if n == 0 {
		return c
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(c)+2*n)
	for i := 0; i < len(c); i++ {
		if ch := c[i]; escapeInPath(ch) {
			b = append(b, '%', hex[ch>>4], hex[ch&15])
		} else {
			b = append(b, ch)
		}
	}
	return string(b)
}

func escapeInPath(c byte) bool { return c <= ' ' || c >= 0x7f || c == '%' || c == '?' || c == '#' }

func defaultPort(scheme string) string {
	switch scheme {
	case "http":
		return "80"
	case "https":
		return "443"
	}
	return ""
}

// normalizeHost returns the host of a URL or CONNECT target without port,
// as every part of Picket reads it: a lower-case punycode name or an IP
// address in canonical form.
func normalizeHost(hostport string) (string, bool) {
	h, _, err := netaddr.ParseHostPort(hostport)
	return h.String(), err == nil
}
