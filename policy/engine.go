package policy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/picket-proxy/picket/reputation"
)

// Lookuper looks verdicts up; *reputation.Client implements it. The client
// already applies the administrator's allow and block lists and the
// fail-open or fail-closed policy, so the engine does not.
type Lookuper interface {
	Lookup(ctx context.Context, q reputation.Query) (reputation.Verdict, error)
}

// Config configures an Engine. The zero Config has no rules, the default
// protection table, the local time zone and no TLS interception.
type Config struct {
	// Rules are the administrator's rules in file order; within a stage the
	// first matching rule wins.
	Rules []Rule
	// Protection maps verdict kinds to actions for requests no protection
	// rule matched. Kinds not in the map take DefaultProtection's action.
	Protection map[reputation.Kind]Action
	// Location is the time zone of the rules' days and hours; nil means
	// time.Local.
	Location *time.Location
	// Inspection is the TLS inspection policy for CONNECT tunnels.
	Inspection Inspection
}

// Inspection is the TLS inspection policy ([tls] in config.toml).
type Inspection struct {
	// Intercept turns TLS interception on. False tunnels every CONNECT
	// untouched (except for block pages, see BlockPageIntercept). The
	// proxy must leave it false when it has no certificate authority.
	Intercept bool
	// Bypass are host patterns never intercepted (banking, pinned apps).
	// They are still looked up at CONNECT time.
	Bypass []string
	// InterceptOnly, when not empty, limits interception to these host
	// patterns.
	InterceptOnly []string
	// BlockPageIntercept intercepts a blocked (or warned) host that would
	// otherwise be tunnelled because of Intercept or InterceptOnly, just to
	// show the page. Hosts in Bypass, auto-bypassed hosts and bypass rules
	// are never intercepted.
	BlockPageIntercept bool
	// AutoBypass is how long a host whose clients keep failing the
	// intercepted handshake is tunnelled untouched; 0 disables auto-bypass.
	AutoBypass time.Duration
	// AutoBypassFailures is how many handshake failures within
	// AutoBypassWindow start an auto-bypass; 0 means 3.
	AutoBypassFailures int
	// AutoBypassWindow is the period in which failures are counted; 0
	// means 5 minutes.
	AutoBypassWindow time.Duration
}

// Defaults of Inspection.
const (
	DefaultAutoBypassFailures = 3
	DefaultAutoBypassWindow   = 5 * time.Minute
)

// DefaultProtection is what each verdict kind does when no protection rule
// matches and Config.Protection does not say otherwise.
var DefaultProtection = map[reputation.Kind]Action{
	reputation.KindUnknown:  Allow,
	reputation.KindClean:    Allow,
	reputation.KindUnwanted: Warn,
	reputation.KindPhishing: Block,
	reputation.KindMalware:  Block,
}

// Input is what the engine sees of a request. It is read-only for the
// engine.
type Input struct {
	// Client is the address of the client; the zero Addr matches no
	// clients criterion.
	Client netip.Addr
	// Method is the HTTP method; "CONNECT" (or empty) for a tunnel.
	Method string
	// URL is the full URL of a plain or intercepted request. For a CONNECT
	// only its Host ("host:port") is used.
	URL *url.URL
	// Connect is true for the host-level decision taken when a CONNECT
	// arrives.
	Connect bool
	// User and Groups are the authenticated user and their groups; empty
	// when the client did not authenticate.
	User   string
	Groups []string
}

// Decision is what the engine decided and why. A block is a Decision, not
// an error.
type Decision struct {
	Action Action
	// Stage is the stage whose rule or table decided.
	Stage Stage
	// Rule names the rule that decided; for the protection table it is
	// "protection.<kind>" (the config key).
	Rule string
	// Verdict is the reputation verdict; the zero Verdict (unknown, source
	// none) when the request was not looked up.
	Verdict reputation.Verdict
	// Intercept asks for TLS interception of a CONNECT tunnel. With Action
	// Block or Warn it means "intercept to show the page". A Warn with
	// Intercept false cannot show a page; the proxy decides (the engine
	// suggests tunnelling it, as the warning is advisory).
	Intercept bool
	// Bypass is true when a bypass rule matched: the traffic is neither
	// intercepted, nor looked up, nor scanned.
	Bypass bool
	// Reason says why in plain words, for block pages and logs; empty for
	// an ordinary allow.
	Reason string
}

// Errors of Decide about its input.
var (
	// ErrNoURL is returned for an Input without a URL or host.
	ErrNoURL = errors.New("policy: input has no URL")
	// ErrInvalidHost is returned for a host that is neither a valid name
	// nor an IP address.
	ErrInvalidHost = errors.New("policy: invalid host")
)

// Engine decides requests by the administrator's rules. It is safe for
// concurrent use; only the auto-bypass list changes after New.
type Engine struct {
	bypass, access, protection []*rule
	table                      [reputation.KindMalware + 1]Action
	loc                        *time.Location
	rep                        Lookuper
	now                        func() time.Time

	intercept          bool
	tlsBypass          *HostSet
	interceptOnly      *HostSet
	blockPageIntercept bool
	auto               autoBypass
}

// New compiles cfg. rep may be nil: then every verdict is unknown. now is
// the clock; nil means time.Now. An invalid rule is reported as a
// *RuleError naming the rule and key; all problems are joined.
func New(cfg Config, rep Lookuper, now func() time.Time) (*Engine, error) {
	if now == nil {
		now = time.Now
	}
	e := &Engine{rep: rep, now: now, loc: cfg.Location}
	if e.loc == nil {
		e.loc = time.Local
	}
	var errs []error
	rules, err := compileRules(cfg.Rules)
	if err != nil {
		errs = append(errs, err)
	}
	for _, r := range rules {
		switch r.stage {
		case StageBypass:
			e.bypass = append(e.bypass, r)
		case StageAccess:
			e.access = append(e.access, r)
		case StageProtection:
			e.protection = append(e.protection, r)
		}
	}
	for k := range e.table {
		kind := reputation.Kind(k)
		a, ok := cfg.Protection[kind]
		if !ok {
			a = DefaultProtection[kind]
		}
		e.table[k] = a
	}
	for k, a := range cfg.Protection {
		if int(k) >= len(e.table) || a > Block {
			errs = append(errs, fmt.Errorf("policy: protection: invalid %v = %v", k, a))
		}
	}
	in := cfg.Inspection
	e.intercept, e.blockPageIntercept = in.Intercept, in.BlockPageIntercept
	if e.tlsBypass, err = CompileHosts(in.Bypass); err != nil {
		errs = append(errs, fmt.Errorf("policy: tls.bypass: %w", err))
	}
	if e.interceptOnly, err = CompileHosts(in.InterceptOnly); err != nil {
		errs = append(errs, fmt.Errorf("policy: tls.intercept_only: %w", err))
	}
	e.auto.init(in)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return e, nil
}

// request is one Decide call's state: the facts computed once and the
// verdict, looked up at most once and only when needed.
type request struct {
	ctx    context.Context
	in     *Input
	method string
	host   target
	local  time.Time // now in the engine's time zone
	lookup string    // the URL to look up
	normal string    // the URL in normal form; "" until needed
	e      *Engine

	verdict reputation.Verdict
	looked  bool
}

// Decide decides one request or CONNECT. An error means it could not
// decide: no URL, a URL the reputation client refuses, or ctx ended.
//
// The order: 1. bypass rules (nothing else happens); 2. access rules (a
// block ends here, without a lookup); 3. the reputation lookup;
// 4. protection rules, then the protection table; the more severe of the
// access and protection actions wins, the access rule on a tie; 5. for a
// CONNECT, whether to intercept.
func (e *Engine) Decide(ctx context.Context, in *Input) (Decision, error) {
	// 0. The request's facts.
	if in == nil || in.URL == nil || in.URL.Host == "" {
		return Decision{}, ErrNoURL
	}
	q := &request{ctx: ctx, in: in, e: e, host: parseTarget(in.URL.Host), local: e.now().In(e.loc)}
	if !q.host.valid() {
		return Decision{}, ErrInvalidHost
	}
	q.method = strings.ToUpper(in.Method)
	if in.Connect {
		if q.method == "" {
			q.method = "CONNECT"
		}
		q.normal = normalURL(&url.URL{Scheme: "https", Host: in.URL.Host})
		q.lookup = q.normal
	} else {
		q.lookup = in.URL.String()
	}

	// 1. Bypass rules: tunnelled or forwarded untouched.
	r, err := q.first(e.bypass)
	if err != nil {
		return Decision{}, err
	}
	if r != nil {
		return Decision{Action: Allow, Stage: StageBypass, Rule: r.name, Bypass: true,
			Reason: fmt.Sprintf("bypassed by rule %q", r.name)}, nil
	}

	// 2. Access rules.
	d := Decision{Action: Allow}
	acc, err := q.first(e.access)
	if err != nil {
		return Decision{}, err
	}
	if acc != nil {
		d = Decision{Action: acc.action, Stage: StageAccess, Rule: acc.name, Reason: ruleReason(acc)}
	}

	// 3. The verdict, unless an access rule already blocked.
	if d.Action != Block {
		if err := q.look(); err != nil {
			return Decision{}, err
		}

		// 4. Protection rules, then the table.
		prot, err := q.first(e.protection)
		if err != nil {
			return Decision{}, err
		}
		var p Decision
		if prot != nil {
			p = Decision{Action: prot.action, Stage: StageProtection, Rule: prot.name, Reason: ruleReason(prot)}
		} else if rule, a, ok := adminVerdict(q.verdict); ok {
			// The administrator's own lists, and the fail-closed policy,
			// override the table: the block list and fail = "closed"
			// always block, the allow list always allows. The verdict's
			// Source says which, also when a cache answered.
			p = Decision{Action: a, Stage: StageProtection, Rule: rule, Reason: verdictWhy(q.verdict)}
		} else {
			k := q.verdict.Kind
			if int(k) >= len(e.table) {
				k = reputation.KindMalware
			}
			p = Decision{Action: e.table[k], Stage: StageProtection, Rule: "protection." + q.verdict.Kind.String(),
				Reason: verdictReason(q.verdict, e.table[k])}
		}
		if acc == nil || p.Action > d.Action {
			d = p
		}
	}
	d.Verdict = q.verdict

	// 5. Interception of a CONNECT tunnel.
	if in.Connect {
		d.Intercept = e.interceptFor(q.host, d.Action)
	}
	return d, nil
}

// interceptFor applies the inspection policy to a CONNECT's host.
func (e *Engine) interceptFor(host target, a Action) bool {
	if e.tlsBypass.matchTarget(host) || e.auto.active(host.key(), e.now()) {
		return false
	}
	if e.intercept && (e.interceptOnly.Len() == 0 || e.interceptOnly.matchTarget(host)) {
		return true
	}
	return a != Allow && e.blockPageIntercept
}

// first returns the first rule of the stage that matches, or nil.
func (q *request) first(rules []*rule) (*rule, error) {
	for _, r := range rules {
		ok, err := r.matches(q)
		if err != nil {
			return nil, err
		}
		if ok {
			return r, nil
		}
	}
	return nil, nil
}

// look looks the request up once.
func (q *request) look() error {
	if q.looked {
		return nil
	}
	q.looked = true
	if q.e.rep == nil {
		return nil
	}
	v, err := q.e.rep.Lookup(q.ctx, reputation.Query{URL: q.lookup})
	if err != nil {
		return fmt.Errorf("policy: reputation lookup: %w", err)
	}
	q.verdict = v
	return nil
}

// normalForm returns the URL in normal form, computed once.
func (q *request) normalForm() string {
	if q.normal == "" {
		q.normal = normalURL(q.in.URL)
	}
	return q.normal
}

// matches checks the cheap criteria first and looks up only when every
// other criterion matched.
func (r *rule) matches(q *request) (bool, error) {
	if !r.matchesWho(q) || r.window != nil && !r.window.contains(q.local) {
		return false, nil
	}
	if r.hosts != nil && !r.hosts.matchTarget(q.host) || r.needsURL && !r.matchesURL(q.normalForm()) {
		return false, nil
	}
	if !r.needsVerdict {
		return true, nil
	}
	if err := q.look(); err != nil {
		return false, err
	}
	return r.matchesVerdict(q.verdict), nil
}

// matchesWho checks the method, the client, the user and the groups.
func (r *rule) matchesWho(q *request) bool {
	switch {
	case len(r.methods) > 0 && !contains(r.methods, q.method),
		len(r.clients) > 0 && !inPrefixes(r.clients, q.in.Client),
		len(r.users) > 0 && (q.in.User == "" || !containsFold(r.users, q.in.User)),
		len(r.groups) > 0 && !anyFold(r.groups, q.in.Groups):
		return false
	}
	return true
}

// matchesURL checks the URL prefixes and the regular expression on the
// URL's normal form u.
func (r *rule) matchesURL(u string) bool {
	return (len(r.prefixes) == 0 || matchPrefixes(r.prefixes, u)) && (r.re == nil || r.re.MatchString(u))
}

// matchesVerdict checks the verdict's kind and category.
func (r *rule) matchesVerdict(v reputation.Verdict) bool {
	if r.kinds != 0 && r.kinds&(1<<v.Kind) == 0 {
		return false
	}
	return len(r.cats) == 0 || v.Category != "" && containsFold(r.cats, v.Category)
}

func matchPrefixes(ps []urlPrefix, u string) bool {
	rest := u
	if i := strings.Index(u, "://"); i >= 0 {
		rest = u[i+3:]
	}
	for _, p := range ps {
		s := u
		if p.anyScheme {
			s = rest
		}
		if strings.HasPrefix(s, p.s) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func anyFold(list, of []string) bool {
	for _, s := range of {
		if containsFold(list, s) {
			return true
		}
	}
	return false
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// adminVerdict names the administrator's setting behind a verdict that
// decides whatever the protection table says, and its action: the block
// list ("reputation.block", block), the allow list ("reputation.allow",
// allow) or fail = "closed" ("reputation.fail", block). ok is false for
// verdicts of the reputation service and for fail = "open" (the table
// decides those).
func adminVerdict(v reputation.Verdict) (rule string, a Action, ok bool) {
	switch {
	case v.Source == reputation.SourceLocal && v.Kind.Blocks():
		return "reputation.block", Block, true
	case v.Source == reputation.SourceLocal && v.Kind == reputation.KindClean:
		return "reputation.allow", Allow, true
	case v.Source == reputation.SourceFailure && v.Kind.Blocks():
		return "reputation.fail", Block, true
	}
	return "", Allow, false
}

func ruleReason(r *rule) string {
	switch r.action {
	case Block:
		return fmt.Sprintf("blocked by the administrator's rule %q", r.name)
	case Warn:
		return fmt.Sprintf("the administrator's rule %q asks you to confirm", r.name)
	}
	return fmt.Sprintf("allowed by rule %q", r.name)
}

// verdictReason says in plain words why a verdict blocks or warns.
func verdictReason(v reputation.Verdict, a Action) string {
	if a == Allow {
		return ""
	}
	return verdictWhy(v)
}

// verdictWhy says in plain words who gave a verdict, or what it means.
func verdictWhy(v reputation.Verdict) string {
	switch {
	case v.Source == reputation.SourceLocal && v.Kind == reputation.KindClean:
		return "on the administrator's allow list"
	case v.Source == reputation.SourceLocal:
		return "on the administrator's block list"
	case v.Source == reputation.SourceFailure:
		return "the reputation service is unavailable"
	}
	switch v.Kind {
	case reputation.KindMalware:
		return "known malware site"
	case reputation.KindPhishing:
		return "known phishing site"
	case reputation.KindUnwanted:
		return "unwanted or risky site"
	case reputation.KindClean:
		return "site rated clean"
	}
	return "site of unknown reputation"
}
