package policy

import (
	"context"
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/internal/testutil"
	"github.com/picket-proxy/picket/reputation"
)

var _ Lookuper = (*reputation.Client)(nil)

// fakeLookuper answers with a function.
type fakeLookuper struct {
	lookup func(ctx context.Context, q reputation.Query) (reputation.Verdict, error)

	mu    sync.Mutex
	calls []string
}

func (f *fakeLookuper) Lookup(ctx context.Context, q reputation.Query) (reputation.Verdict, error) {
	f.mu.Lock()
	f.calls = append(f.calls, q.URL)
	f.mu.Unlock()
	if f.lookup == nil {
		return reputation.Verdict{Source: reputation.SourceNone}, nil
	}
	return f.lookup(ctx, q)
}

// byHost gives verdicts by host name; other hosts are unknown.
func byHost(m map[string]reputation.Verdict) *fakeLookuper {
	return &fakeLookuper{lookup: func(_ context.Context, q reputation.Query) (reputation.Verdict, error) {
		u, err := url.Parse(q.URL)
		if err != nil {
			return reputation.Verdict{}, err
		}
		v, ok := m[u.Hostname()]
		if !ok {
			return reputation.Verdict{Source: reputation.SourceServer}, nil
		}
		v.Source = reputation.SourceServer
		return v, nil
	}}
}

var (
	malware  = reputation.Verdict{Kind: reputation.KindMalware, Category: "malware_download"}
	phishing = reputation.Verdict{Kind: reputation.KindPhishing, Category: "phishing"}
	unwanted = reputation.Verdict{Kind: reputation.KindUnwanted, Category: "adware"}
	clean    = reputation.Verdict{Kind: reputation.KindClean, Category: "news"}
)

func berlin(t testing.TB) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatalf("LoadLocation: %v", err)
	}
	return loc
}

func req(method, rawURL string) *Input {
	u, err := url.Parse(rawURL)
	if err != nil {
		panic(err)
	}
	return &Input{Client: netip.MustParseAddr("10.1.2.3"), Method: method, URL: u}
}

func connect(hostport string) *Input {
	return &Input{Client: netip.MustParseAddr("10.1.2.3"), Method: "CONNECT", URL: &url.URL{Host: hostport}, Connect: true}
}

func newEngine(t testing.TB, cfg Config, rep Lookuper, now func() time.Time) *Engine {
	t.Helper()
	if now == nil {
		fixed := time.Date(2025, 6, 4, 12, 0, 0, 0, time.UTC) // a Wednesday
		now = func() time.Time { return fixed }
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	e, err := New(cfg, rep, now)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func decide(t *testing.T, e *Engine, in *Input) Decision {
	t.Helper()
	d, err := e.Decide(context.Background(), in)
	if err != nil {
		t.Fatalf("Decide(%v): %v", in.URL, err)
	}
	return d
}

type want struct {
	action Action
	stage  Stage
	rule   string
}

func check(t *testing.T, d Decision, w want) {
	t.Helper()
	if d.Action != w.action || d.Stage != w.stage || d.Rule != w.rule {
		t.Errorf("got %v/%v/%q, want %v/%v/%q (reason %q)", d.Action, d.Stage, d.Rule, w.action, w.stage, w.rule, d.Reason)
	}
}

func TestStagesAndFirstMatch(t *testing.T) {
	rep := byHost(map[string]reputation.Verdict{
		"evil.example":    malware,
		"phish.example":   phishing,
		"ads.example":     unwanted,
		"news.example":    clean,
		"bypass.example":  malware,
		"trusted.example": malware,
		"social.example":  clean,
	})
	e := newEngine(t, Config{Rules: []Rule{
		{Name: "updates", Action: "bypass", Hosts: []string{"bypass.example", "*.update.example"}},
		{Name: "no-social", Action: "block", Hosts: []string{"social.example"}},
		{Name: "social-for-marketing", Action: "allow", Hosts: []string{"social.example"}},
		{Name: "careful-shop", Action: "warn", Hosts: []string{"shop.example", "evil.example"}},
		{Name: "trusted", Stage: "protection", Action: "allow", Hosts: []string{"trusted.example"}},
		{Name: "phish-warn-first", Stage: "protection", Action: "warn", Verdicts: []string{"phishing"}, Hosts: []string{"phish.example"}},
		{Name: "phish-block", Stage: "protection", Action: "block", Verdicts: []string{"phishing"}},
	}}, rep, nil)

	tests := []struct {
		name   string
		url    string
		want   want
		bypass bool
		looked bool
	}{
		{"bypass beats the verdict", "https://bypass.example/x", want{Allow, StageBypass, "updates"}, true, false},
		{"bypass wildcard", "http://a.update.example/f.bin", want{Allow, StageBypass, "updates"}, true, false},
		{"access block before lookup", "https://social.example/", want{Block, StageAccess, "no-social"}, false, false},
		{"access warn then table malware blocks", "https://evil.example/", want{Block, StageProtection, "protection.malware"}, false, true},
		{"access warn on clean stays warn", "https://shop.example/", want{Warn, StageAccess, "careful-shop"}, false, true},
		{"protection rule beats table", "https://trusted.example/", want{Allow, StageProtection, "trusted"}, false, true},
		{"first protection rule wins", "https://phish.example/login", want{Warn, StageProtection, "phish-warn-first"}, false, true},
		{"table: unwanted warns", "https://ads.example/", want{Warn, StageProtection, "protection.unwanted"}, false, true},
		{"table: clean passes", "https://news.example/", want{Allow, StageProtection, "protection.clean"}, false, true},
		{"table: unknown passes", "https://other.example/", want{Allow, StageProtection, "protection.unknown"}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep.mu.Lock()
			rep.calls = nil
			rep.mu.Unlock()
			d := decide(t, e, req("GET", tt.url))
			check(t, d, tt.want)
			if d.Bypass != tt.bypass {
				t.Errorf("Bypass = %v, want %v", d.Bypass, tt.bypass)
			}
			if looked := len(rep.calls) > 0; looked != tt.looked {
				t.Errorf("looked up = %v (%v), want %v", looked, rep.calls, tt.looked)
			}
			if len(rep.calls) > 1 {
				t.Errorf("looked up %d times, want at most once", len(rep.calls))
			}
			if d.Action != Allow && d.Reason == "" {
				t.Error("Reason is empty for a block or warn")
			}
		})
	}
}

func TestProtectionTable(t *testing.T) {
	rep := byHost(map[string]reputation.Verdict{"evil.example": malware, "ads.example": unwanted, "x.example": {Kind: reputation.KindUnknown}})
	e := newEngine(t, Config{Protection: map[reputation.Kind]Action{
		reputation.KindUnwanted: Block,
		reputation.KindUnknown:  Warn,
	}}, rep, nil)
	check(t, decide(t, e, req("GET", "https://ads.example/")), want{Block, StageProtection, "protection.unwanted"})
	check(t, decide(t, e, req("GET", "https://x.example/")), want{Warn, StageProtection, "protection.unknown"})
	check(t, decide(t, e, req("GET", "https://evil.example/")), want{Block, StageProtection, "protection.malware"})
}

func TestCriteria(t *testing.T) {
	rep := byHost(map[string]reputation.Verdict{"evil.example": malware, "ads.example": unwanted, "news.example": clean})
	at := func(s string) func() time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return func() time.Time { return tm }
	}
	wed := at("2025-06-04T12:00:00Z")
	tests := []struct {
		name  string
		rule  Rule
		in    *Input
		now   func() time.Time
		match bool
	}{
		{"hosts exact", Rule{Hosts: []string{"example.com"}}, req("GET", "http://EXAMPLE.com./a"), wed, true},
		{"hosts wildcard not apex", Rule{Hosts: []string{"*.example.com"}}, req("GET", "http://example.com/"), wed, false},
		{"hosts ip in cidr", Rule{Hosts: []string{"192.0.2.0/24"}}, req("GET", "http://192.0.2.9:8080/"), wed, true},
		// Security fix: an address rule used to miss the spellings the dialer
		// reads as that address (hex, decimal, short, IPv4-mapped), a bypass.
		{"hosts ip hex spelling", Rule{Hosts: []string{"10.0.0.5"}}, req("GET", "http://0xa.5/"), wed, true},
		{"hosts ip decimal spelling", Rule{Hosts: []string{"10.0.0.5"}}, req("GET", "http://167772165/"), wed, true},
		{"hosts ip octal spelling in cidr", Rule{Hosts: []string{"192.0.2.0/24"}}, req("GET", "http://0300.0.2.9:8080/"), wed, true},
		{"hosts ip mapped spelling", Rule{Hosts: []string{"10.0.0.5"}}, req("GET", "http://[::ffff:a00:5]/"), wed, true},
		{"hosts ip odd spelling of a CONNECT", Rule{Hosts: []string{"10.0.0.5"}}, connect("10.5:443"), wed, true},
		{"url prefix ip odd spelling", Rule{URLPrefixes: []string{"http://10.0.0.5/admin/"}}, req("GET", "http://0xa.0.0.5/admin/x"), wed, true},
		{"url prefix", Rule{URLPrefixes: []string{"https://example.com/downloads/"}}, req("GET", "https://Example.COM:443/downloads/x.exe"), wed, true},
		{"url prefix other path", Rule{URLPrefixes: []string{"https://example.com/downloads/"}}, req("GET", "https://example.com/download"), wed, false},
		{"url prefix scheme matters", Rule{URLPrefixes: []string{"https://example.com/"}}, req("GET", "http://example.com/"), wed, false},
		{"url prefix any scheme", Rule{URLPrefixes: []string{"example.com/a/"}}, req("GET", "http://example.com/a/b"), wed, true},
		{"url prefix host only is not a name prefix", Rule{URLPrefixes: []string{"https://example.com"}}, req("GET", "https://example.com.evil.example/"), wed, false},
		{"url prefix host only", Rule{URLPrefixes: []string{"https://example.com"}}, req("GET", "https://example.com/x"), wed, true},
		{"url prefix with port", Rule{URLPrefixes: []string{"http://example.com:8080/"}}, req("GET", "http://example.com:8080/x"), wed, true},
		{"url prefix with query", Rule{URLPrefixes: []string{"https://example.com/s?q="}}, req("GET", "https://example.com/s?q=x"), wed, true},
		// Security fix: the path was matched as the client escaped it, so an
		// escaped letter, dot segments or an escaped slash, which name the
		// same resource for the origin, slipped past path rules.
		{"url prefix escaped letter", Rule{URLPrefixes: []string{"example.com/admin/"}}, req("GET", "http://example.com/%61dmin/x"), wed, true},
		{"url prefix dot segments", Rule{URLPrefixes: []string{"example.com/admin/"}}, req("GET", "http://example.com/x/../admin/x"), wed, true},
		{"url prefix escaped dot segments", Rule{URLPrefixes: []string{"example.com/admin/"}}, req("GET", "http://example.com/x/%2E%2e/admin/x"), wed, true},
		{"url prefix double slash", Rule{URLPrefixes: []string{"example.com/admin/"}}, req("GET", "http://example.com//admin/x"), wed, true},
		{"url prefix escaped slash", Rule{URLPrefixes: []string{"example.com/admin/"}}, req("GET", "http://example.com/admin%2Fx"), wed, true},
		{"url prefix double escape is data", Rule{URLPrefixes: []string{"example.com/admin/"}}, req("GET", "http://example.com/%2561dmin/x"), wed, false},
		{"url prefix dot segments out of the prefix", Rule{URLPrefixes: []string{"example.com/public/"}}, req("GET", "http://example.com/public/../private/"), wed, false},
		{"url prefix written escaped", Rule{URLPrefixes: []string{"example.com/caf%C3%A9/"}}, req("GET", "http://example.com/caf%c3%a9/x"), wed, true},
		{"url regex escaped letter", Rule{URLRegex: `\.exe$`}, req("GET", "https://example.com/setup.%65xe"), wed, true},
		{"url regex sees a query mark of the path escaped", Rule{URLRegex: `\.exe\?`}, req("GET", "https://example.com/setup.exe%3F"), wed, false},
		{"url regex", Rule{URLRegex: `\.(exe|msi)$`}, req("GET", "https://example.com/setup.EXE"), wed, false},
		{"url regex case-insensitive flag", Rule{URLRegex: `(?i)\.(exe|msi)$`}, req("GET", "https://example.com/setup.EXE"), wed, true},
		{"url regex sees normal form", Rule{URLRegex: `^https://example\.com/`}, req("GET", "https://EXAMPLE.com:443/"), wed, true},
		{"categories", Rule{Stage: "protection", Categories: []string{"Adware"}}, req("GET", "https://ads.example/"), wed, true},
		{"categories other", Rule{Stage: "protection", Categories: []string{"adware"}}, req("GET", "https://news.example/"), wed, false},
		{"categories in access", Rule{Categories: []string{"news"}}, req("GET", "https://news.example/"), wed, true},
		{"verdicts", Rule{Stage: "protection", Verdicts: []string{"malware", "unwanted"}}, req("GET", "https://evil.example/"), wed, true},
		{"verdicts unknown", Rule{Stage: "protection", Verdicts: []string{"unknown"}}, req("GET", "https://nobody.example/"), wed, true},
		{"verdicts other", Rule{Stage: "protection", Verdicts: []string{"malware"}}, req("GET", "https://news.example/"), wed, false},
		{"clients cidr", Rule{Clients: []string{"10.0.0.0/8"}}, req("GET", "https://x.example/"), wed, true},
		{"clients single", Rule{Clients: []string{"10.1.2.4"}}, req("GET", "https://x.example/"), wed, false},
		{"clients ipv6", Rule{Clients: []string{"fd00::/8"}}, &Input{Client: netip.MustParseAddr("fd00::5"), Method: "GET", URL: &url.URL{Scheme: "http", Host: "x.example", Path: "/"}}, wed, true},
		{"clients mapped v4", Rule{Clients: []string{"10.0.0.0/8"}}, &Input{Client: netip.MustParseAddr("::ffff:10.0.0.1"), Method: "GET", URL: &url.URL{Scheme: "http", Host: "x.example", Path: "/"}}, wed, true},
		{"clients no address", Rule{Clients: []string{"0.0.0.0/0"}}, &Input{Method: "GET", URL: &url.URL{Scheme: "http", Host: "x.example", Path: "/"}}, wed, false},
		{"users", Rule{Users: []string{"Alice"}}, withUser(req("GET", "https://x.example/"), "alice"), wed, true},
		{"users unauthenticated", Rule{Users: []string{"alice"}}, req("GET", "https://x.example/"), wed, false},
		{"groups", Rule{Groups: []string{"staff"}}, withUser(req("GET", "https://x.example/"), "bob", "interns", "Staff"), wed, true},
		{"groups other", Rule{Groups: []string{"staff"}}, withUser(req("GET", "https://x.example/"), "bob", "interns"), wed, false},
		{"methods", Rule{Methods: []string{"post", "PUT"}}, req("POST", "https://x.example/"), wed, true},
		{"methods other", Rule{Methods: []string{"POST"}}, req("GET", "https://x.example/"), wed, false},
		{"methods connect", Rule{Methods: []string{"CONNECT"}}, connect("x.example:443"), wed, true},
		{"days", Rule{Days: []string{"wed"}}, req("GET", "https://x.example/"), wed, true},
		{"days other", Rule{Days: []string{"mon", "tue"}}, req("GET", "https://x.example/"), wed, false},
		{"hours", Rule{Hours: "09:00-17:00"}, req("GET", "https://x.example/"), wed, true},
		{"hours end exclusive", Rule{Hours: "09:00-12:00"}, req("GET", "https://x.example/"), wed, false},
		{"hours start inclusive", Rule{Hours: "12:00-13:00"}, req("GET", "https://x.example/"), wed, true},
		{"hours to 24:00", Rule{Hours: "12:00-24:00"}, req("GET", "https://x.example/"), at("2025-06-04T23:59:59Z"), true},
		{"all criteria must match", Rule{Hosts: []string{"x.example"}, Methods: []string{"POST"}}, req("GET", "https://x.example/"), wed, false},
		{"all criteria match", Rule{Hosts: []string{"x.example"}, Methods: []string{"GET"}, Clients: []string{"10.0.0.0/8"}, Days: []string{"wed"}, Hours: "08:00-18:00"}, req("GET", "https://x.example/"), wed, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.rule
			r.Name = "r"
			if r.Action == "" {
				r.Action = "block"
			}
			e := newEngine(t, Config{Rules: []Rule{r}, Protection: map[reputation.Kind]Action{reputation.KindMalware: Allow, reputation.KindUnwanted: Allow}}, rep, tt.now)
			d := decide(t, e, tt.in)
			if got := d.Rule == "r"; got != tt.match {
				t.Errorf("matched = %v, want %v (decision %v/%v/%q)", got, tt.match, d.Action, d.Stage, d.Rule)
			}
		})
	}
}

func withUser(in *Input, user string, groups ...string) *Input {
	in.User, in.Groups = user, groups
	return in
}

func TestTimeWindows(t *testing.T) {
	loc := berlin(t)
	local := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	utc := func(s string) time.Time {
		tm, err := time.Parse("2006-01-02 15:04", s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	night := Rule{Name: "night", Action: "block", Days: []string{"mon"}, Hours: "22:00-06:00"}
	office := Rule{Name: "office", Action: "block", Hours: "08:00-17:00"}
	early := Rule{Name: "early", Action: "block", Hours: "01:00-04:00"}
	tests := []struct {
		name  string
		rule  Rule
		at    time.Time
		match bool
	}{
		// 2025-06-02 is a Monday.
		{"overnight before start", night, local("2025-06-02 21:59"), false},
		{"overnight at start", night, local("2025-06-02 22:00"), true},
		{"overnight before midnight", night, local("2025-06-02 23:59"), true},
		{"overnight after midnight belongs to monday", night, local("2025-06-03 02:00"), true},
		{"overnight just before end", night, local("2025-06-03 05:59"), true},
		{"overnight at end", night, local("2025-06-03 06:00"), false},
		{"overnight tuesday evening is not monday", night, local("2025-06-03 23:00"), false},
		{"overnight monday early morning belongs to sunday", night, local("2025-06-02 02:00"), false},
		{"sunday to monday wraps the week", Rule{Name: "night", Action: "block", Days: []string{"sun"}, Hours: "22:00-06:00"}, local("2025-06-02 03:00"), true},
		// Berlin: 2025-03-30 02:00 CET -> 03:00 CEST; 2025-10-26 03:00 CEST -> 02:00 CET.
		{"spring: 06:30 UTC is 08:30 CEST, inside", office, utc("2025-03-30 06:30"), true},
		{"day before: 06:30 UTC is 07:30 CET, outside", office, utc("2025-03-29 06:30"), false},
		{"spring: 15:30 UTC is 17:30 CEST, outside", office, utc("2025-03-30 15:30"), false},
		{"day before: 15:30 UTC is 16:30 CET, inside", office, utc("2025-03-29 15:30"), true},
		{"autumn: 07:30 UTC is 08:30 CET, inside", office, utc("2025-10-26 07:30"), true},
		{"day before: 06:30 UTC is 08:30 CEST, inside", office, utc("2025-10-25 06:30"), true},
		{"autumn: 06:30 UTC is 07:30 CET, outside", office, utc("2025-10-26 06:30"), false},
		{"spring skip: 00:59 UTC is 01:59 CET, inside", early, utc("2025-03-30 00:59"), true},
		{"spring skip: 01:00 UTC is 03:00 CEST, inside", early, utc("2025-03-30 01:00"), true},
		{"spring skip: 02:00 UTC is 04:00 CEST, outside", early, utc("2025-03-30 02:00"), false},
		{"autumn repeat: 00:30 UTC is 02:30 CEST, inside", early, utc("2025-10-26 00:30"), true},
		{"autumn repeat: 01:30 UTC is 02:30 CET, inside", early, utc("2025-10-26 01:30"), true},
		{"autumn repeat: 02:30 UTC is 03:30 CET, inside", early, utc("2025-10-26 02:30"), true},
		{"autumn repeat: 03:00 UTC is 04:00 CET, outside", early, utc("2025-10-26 03:00"), false},
	}
	clk := testutil.NewClock(time.Time{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk.Set(tt.at)
			e := newEngine(t, Config{Rules: []Rule{tt.rule}, Location: loc}, nil, clk.Now)
			d := decide(t, e, req("GET", "https://x.example/"))
			if got := d.Rule == tt.rule.Name; got != tt.match {
				t.Errorf("at %v: matched = %v, want %v", tt.at.In(loc), got, tt.match)
			}
		})
	}
}

// TestLocalListsOverrideReputation uses a real reputation client whose
// backend knows every host below as malware: the administrator's lists win
// over the service and over the protection table, on the first lookup, on
// the second (answered by the client's cache) and after the cache entry
// expired.
func TestLocalListsOverrideReputation(t *testing.T) {
	backend := &fakeBackend{known: map[reputation.Hash]reputation.Verdict{}}
	for _, h := range []string{"evil.example/", "good.example/", "fine.example/", "blocked.example/"} {
		backend.known[reputation.HashExpression(h)] = reputation.Verdict{Kind: reputation.KindMalware, Category: "malware", TTL: time.Hour}
	}
	backend.known[reputation.HashExpression("ads.example/")] = reputation.Verdict{Kind: reputation.KindUnwanted, TTL: time.Hour}
	clk := testutil.NewClock(time.Time{})
	clk.Set(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	rep, err := reputation.New(reputation.Config{
		Backend: backend,
		Allow:   []string{"good.example"},
		Block:   []string{"blocked.example"},
		Now:     clk.Now,
	}, zerolog.Nop())
	if err != nil {
		t.Fatalf("reputation.New: %v", err)
	}
	defer rep.Close()
	// A table that would allow unwanted and block clean: the lists still win.
	odd := map[reputation.Kind]Action{reputation.KindUnwanted: Allow, reputation.KindClean: Block}
	tests := []struct {
		name   string
		table  map[reputation.Kind]Action
		url    string
		want   want
		source reputation.Source
		reason string
	}{
		{"service", nil, "https://evil.example/x", want{Block, StageProtection, "protection.malware"}, reputation.SourceDatabase, "known malware site"},
		{"allow list", nil, "https://good.example/x", want{Allow, StageProtection, "reputation.allow"}, reputation.SourceLocal, "on the administrator's allow list"},
		{"block list", nil, "https://blocked.example/x", want{Block, StageProtection, "reputation.block"}, reputation.SourceLocal, "on the administrator's block list"},
		{"service unknown", nil, "https://clean.example/", want{Allow, StageProtection, "protection.unknown"}, reputation.SourceDatabase, ""},
		{"service unwanted", nil, "https://ads.example/", want{Warn, StageProtection, "protection.unwanted"}, reputation.SourceDatabase, "unwanted or risky site"},
		{"allow list, odd table", odd, "https://good.example/y", want{Allow, StageProtection, "reputation.allow"}, reputation.SourceLocal, "on the administrator's allow list"},
		{"block list, odd table", odd, "https://blocked.example/y", want{Block, StageProtection, "reputation.block"}, reputation.SourceLocal, "on the administrator's block list"},
		{"service unwanted, odd table", odd, "https://ads.example/y", want{Allow, StageProtection, "protection.unwanted"}, reputation.SourceDatabase, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(t, Config{Protection: tt.table}, rep, nil)
			for i, cached := range []bool{false, true, false} {
				if i == 2 {
					clk.Add(reputation.LocalTTL + time.Hour) // every entry expired
				}
				d := decide(t, e, req("GET", tt.url))
				check(t, d, tt.want)
				if d.Verdict.Source != tt.source || d.Verdict.Cached != cached {
					t.Errorf("lookup %d: verdict source = %v (cached %v), want %v (cached %v)", i+1, d.Verdict.Source, d.Verdict.Cached, tt.source, cached)
				}
				if d.Reason != tt.reason {
					t.Errorf("lookup %d: reason = %q, want %q", i+1, d.Reason, tt.reason)
				}
			}
		})
	}
	// The block list is "unwanted" with category "blocklist": a protection
	// rule on that category, written by the administrator, comes first.
	e := newEngine(t, Config{Rules: []Rule{{Name: "admin-list", Stage: "protection", Action: "block", Categories: []string{"blocklist"}}}}, rep, nil)
	check(t, decide(t, e, req("GET", "https://blocked.example/")), want{Block, StageProtection, "admin-list"})
}

type fakeBackend struct {
	known map[reputation.Hash]reputation.Verdict
}

func (b *fakeBackend) FindPrefixes(_ context.Context, prefixes []reputation.Prefix) (reputation.Answer, error) {
	ans := reputation.Answer{NegativeTTL: time.Hour, Source: reputation.SourceDatabase}
	for h, v := range b.known {
		for _, p := range prefixes {
			if h.Prefix() == p {
				ans.Matches = append(ans.Matches, reputation.Match{Hash: h, Verdict: v})
			}
		}
	}
	return ans, nil
}

func TestConnectInterception(t *testing.T) {
	rep := byHost(map[string]reputation.Verdict{"evil.example": malware, "bank.example": phishing, "ads.example": unwanted})
	rules := []Rule{
		{Name: "pinned-app", Action: "bypass", Hosts: []string{"*.pinned.example"}},
		{Name: "no-games", Action: "block", Hosts: []string{"games.example"}},
	}
	tests := []struct {
		name      string
		insp      Inspection
		host      string
		action    Action
		intercept bool
		bypass    bool
	}{
		{"intercept on: clean host intercepted", Inspection{Intercept: true}, "news.example:443", Allow, true, false},
		{"intercept on: blocked host intercepted for the page", Inspection{Intercept: true}, "evil.example:443", Block, true, false},
		{"intercept off: clean host tunnelled", Inspection{}, "news.example:443", Allow, false, false},
		{"intercept off: blocked host tunnelled, no page", Inspection{}, "evil.example:443", Block, false, false},
		{"intercept off: block page intercept", Inspection{BlockPageIntercept: true}, "evil.example:443", Block, true, false},
		{"intercept off: access block, block page intercept", Inspection{BlockPageIntercept: true}, "games.example:443", Block, true, false},
		{"intercept off: warn page intercept", Inspection{BlockPageIntercept: true}, "ads.example:443", Warn, true, false},
		{"tls.bypass never intercepted", Inspection{Intercept: true, Bypass: []string{"*.example"}}, "news.example:443", Allow, false, false},
		{"tls.bypass still looked up and blocked", Inspection{Intercept: true, BlockPageIntercept: true, Bypass: []string{"bank.example"}}, "bank.example:443", Block, false, false},
		{"intercept_only lists", Inspection{Intercept: true, InterceptOnly: []string{"news.example"}}, "news.example:443", Allow, true, false},
		{"intercept_only others tunnelled", Inspection{Intercept: true, InterceptOnly: []string{"news.example"}}, "other.example:443", Allow, false, false},
		{"intercept_only others blocked get the page", Inspection{Intercept: true, BlockPageIntercept: true, InterceptOnly: []string{"news.example"}}, "evil.example:443", Block, true, false},
		{"bypass rule: not intercepted, not looked up", Inspection{Intercept: true, BlockPageIntercept: true}, "evil.pinned.example:443", Allow, false, true},
		{"ip host", Inspection{Intercept: true, Bypass: []string{"192.0.2.0/24"}}, "192.0.2.1:443", Allow, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep.calls = nil
			e := newEngine(t, Config{Rules: rules, Inspection: tt.insp}, rep, nil)
			d := decide(t, e, connect(tt.host))
			if d.Action != tt.action || d.Intercept != tt.intercept || d.Bypass != tt.bypass {
				t.Errorf("got %v intercept=%v bypass=%v, want %v intercept=%v bypass=%v (rule %q)",
					d.Action, d.Intercept, d.Bypass, tt.action, tt.intercept, tt.bypass, d.Rule)
			}
			if tt.bypass && len(rep.calls) > 0 {
				t.Errorf("bypassed host looked up: %v", rep.calls)
			}
		})
	}
	// The host-level lookup is for https://host/, with the port only when
	// it is not 443.
	e := newEngine(t, Config{}, rep, nil)
	for host, wantURL := range map[string]string{"News.Example:443": "https://news.example/", "news.example:8443": "https://news.example:8443/", "[2001:db8::1]:443": "https://[2001:db8::1]/"} {
		rep.calls = nil
		decide(t, e, connect(host))
		if len(rep.calls) != 1 || rep.calls[0] != wantURL {
			t.Errorf("CONNECT %s looked up %v, want [%s]", host, rep.calls, wantURL)
		}
	}
}

func TestAutoBypass(t *testing.T) {
	clk := testutil.NewClock(time.Date(2025, 6, 4, 12, 0, 0, 0, time.UTC))
	e := newEngine(t, Config{Inspection: Inspection{Intercept: true, AutoBypass: time.Hour}}, nil, clk.Now)
	intercepted := func() bool { return decide(t, e, connect("app.example:443")).Intercept }

	if e.NoteHandshakeFailure("app.example:443") || e.NoteHandshakeFailure("APP.example") {
		t.Fatal("bypass started before the threshold")
	}
	clk.Add(5 * time.Minute) // the first two failures leave the window
	if e.NoteHandshakeFailure("app.example") {
		t.Fatal("bypass started with failures outside the window")
	}
	clk.Add(time.Minute)
	e.NoteHandshakeFailure("app.example")
	if !intercepted() {
		t.Fatal("bypass started early")
	}
	clk.Add(time.Minute)
	if !e.NoteHandshakeFailure("app.example:443") {
		t.Fatal("third failure within 5 minutes: got no bypass, want one")
	}
	if got := e.AutoBypassed(); len(got) != 1 || got[0] != "app.example" {
		t.Errorf("AutoBypassed() = %v, want [app.example]", got)
	}
	if intercepted() {
		t.Error("auto-bypassed host intercepted")
	}
	if !decide(t, e, connect("other.example:443")).Intercept {
		t.Error("other host not intercepted")
	}
	if e.NoteHandshakeFailure("app.example") {
		t.Error("failure during a bypass restarted it")
	}
	clk.Add(time.Hour - time.Second)
	if intercepted() {
		t.Error("auto-bypass ended early")
	}
	clk.Add(time.Second)
	if !intercepted() {
		t.Error("auto-bypass did not expire after an hour")
	}
	if got := e.AutoBypassed(); len(got) != 0 {
		t.Errorf("AutoBypassed() after expiry = %v, want none", got)
	}

	off := newEngine(t, Config{Inspection: Inspection{Intercept: true}}, nil, clk.Now)
	for range 10 {
		if off.NoteHandshakeFailure("app.example") {
			t.Fatal("auto-bypass disabled (AutoBypass 0) but started")
		}
	}
	if off.NoteHandshakeFailure("bad host!") {
		t.Error("invalid host started a bypass")
	}
}

func TestAutoBypassConcurrent(t *testing.T) {
	e := newEngine(t, Config{Inspection: Inspection{Intercept: true, AutoBypass: time.Hour}}, nil, time.Now)
	var wg sync.WaitGroup
	started := make(chan string, 64)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				host := []string{"a.example", "b.example"}[(i+j)%2]
				if e.NoteHandshakeFailure(host) {
					started <- host
				}
				e.Decide(context.Background(), connect(host+":443"))
				e.AutoBypassed()
			}
		}()
	}
	wg.Wait()
	close(started)
	n := 0
	for range started {
		n++
	}
	if n != 2 {
		t.Errorf("bypasses started = %d, want 2 (one per host)", n)
	}
}

func TestInvalidRules(t *testing.T) {
	tests := []struct {
		name string
		rule Rule
		key  string
	}{
		{"no name", Rule{Action: "block"}, "name"},
		{"bad stage", Rule{Name: "x", Stage: "later", Action: "block"}, "stage"},
		{"bad action", Rule{Name: "x", Action: "deny"}, "action"},
		{"no action", Rule{Name: "x"}, "action"},
		{"bypass action in access", Rule{Name: "x", Stage: "access", Action: "bypass"}, "action"},
		{"block in bypass stage", Rule{Name: "x", Stage: "bypass", Action: "block"}, "action"},
		{"bad host", Rule{Name: "x", Action: "block", Hosts: []string{"*"}}, "hosts"},
		{"bad prefix", Rule{Name: "x", Action: "block", URLPrefixes: []string{"ftp://example.com/"}}, "url_prefixes"},
		{"bad regex", Rule{Name: "x", Action: "block", URLRegex: "a(b"}, "url_regex"},
		{"perl regex", Rule{Name: "x", Action: "block", URLRegex: `(?=x)`}, "url_regex"},
		{"empty category", Rule{Name: "x", Action: "block", Categories: []string{""}}, "categories"},
		{"bad verdict", Rule{Name: "x", Stage: "protection", Action: "block", Verdicts: []string{"evil"}}, "verdicts"},
		{"verdicts in bypass", Rule{Name: "x", Action: "bypass", Verdicts: []string{"clean"}}, "verdicts"},
		{"categories in bypass", Rule{Name: "x", Action: "bypass", Categories: []string{"news"}}, "categories"},
		{"bad client", Rule{Name: "x", Action: "block", Clients: []string{"10.0.0.0/33"}}, "clients"},
		{"empty user", Rule{Name: "x", Action: "block", Users: []string{" "}}, "users"},
		{"empty group", Rule{Name: "x", Action: "block", Groups: []string{""}}, "groups"},
		{"bad method", Rule{Name: "x", Action: "block", Methods: []string{"GE T"}}, "methods"},
		{"bad day", Rule{Name: "x", Action: "block", Days: []string{"monday"}}, "days"},
		{"bad hours", Rule{Name: "x", Action: "block", Hours: "9-17"}, "hours"},
		{"hours out of range", Rule{Name: "x", Action: "block", Hours: "22:00-24:01"}, "hours"},
		{"hours no dash", Rule{Name: "x", Action: "block", Hours: "22:00"}, "hours"},
		{"hours empty window", Rule{Name: "x", Action: "block", Hours: "10:00-10:00"}, "hours"},
		{"hours 24:00 start", Rule{Name: "x", Action: "block", Hours: "24:00-06:00"}, "hours"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules := []Rule{{Name: "fine", Action: "allow"}, tt.rule}
			_, err := New(Config{Rules: rules}, nil, nil)
			if err == nil {
				t.Fatal("New: got nil error, want one")
			}
			var re *RuleError
			if !errors.As(err, &re) {
				t.Fatalf("error %v is not a *RuleError", err)
			}
			if re.Index != 1 || re.Key != tt.key || re.Rule != tt.rule.Name {
				t.Errorf("got rules[%d] %q key %q, want rules[1] %q key %q (%v)", re.Index, re.Rule, re.Key, tt.rule.Name, tt.key, err)
			}
			if tt.rule.Name != "" && !strings.Contains(err.Error(), `"`+tt.rule.Name+`"`) {
				t.Errorf("error %q does not name the rule", err)
			}
			if CheckRules(rules) == nil {
				t.Error("CheckRules: got nil error, want one")
			}
		})
	}
}

func TestInvalidRulesAllReported(t *testing.T) {
	err := CheckRules([]Rule{
		{Name: "a", Action: "block", Hosts: []string{"bad host"}, URLRegex: "("},
		{Name: "a", Action: "nope"},
	})
	var keys []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var re *RuleError
		if errors.As(e, &re) {
			keys = append(keys, re.Key)
		}
	}
	if got, want := strings.Join(keys, ","), "hosts,url_regex,name,action"; got != want {
		t.Errorf("keys = %s, want %s", got, want)
	}
}

func TestInvalidInspection(t *testing.T) {
	_, err := New(Config{Inspection: Inspection{Bypass: []string{"ok.example", "*"}, InterceptOnly: []string{"a b"}}}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "tls.bypass") || !strings.Contains(err.Error(), "tls.intercept_only") {
		t.Errorf("got %v, want errors naming tls.bypass and tls.intercept_only", err)
	}
}

func TestDecideErrors(t *testing.T) {
	boom := errors.New("boom")
	e := newEngine(t, Config{}, &fakeLookuper{lookup: func(context.Context, reputation.Query) (reputation.Verdict, error) {
		return reputation.Verdict{}, boom
	}}, nil)
	if _, err := e.Decide(context.Background(), req("GET", "https://x.example/")); !errors.Is(err, boom) {
		t.Errorf("lookup error: got %v, want %v", err, boom)
	}
	if _, err := e.Decide(context.Background(), &Input{Method: "GET"}); !errors.Is(err, ErrNoURL) {
		t.Errorf("no URL: got %v, want ErrNoURL", err)
	}
	if _, err := e.Decide(context.Background(), connect("bad host:443")); !errors.Is(err, ErrInvalidHost) {
		t.Errorf("bad host: got %v, want ErrInvalidHost", err)
	}
	// No lookuper: every verdict is unknown.
	e = newEngine(t, Config{}, nil, nil)
	check(t, decide(t, e, req("GET", "https://x.example/")), want{Allow, StageProtection, "protection.unknown"})
}

func TestEnums(t *testing.T) {
	for _, a := range []Action{Allow, Warn, Block} {
		if got, err := ParseAction(a.String()); err != nil || got != a {
			t.Errorf("ParseAction(%q) = %v, %v; want %v", a, got, err, a)
		}
	}
	for _, s := range []Stage{StageBypass, StageAccess, StageProtection} {
		if got, err := ParseStage(s.String()); err != nil || got != s {
			t.Errorf("ParseStage(%q) = %v, %v; want %v", s, got, err, s)
		}
	}
	if _, err := ParseStage("none"); err == nil {
		t.Error("ParseStage(none): got nil error, want one")
	}
	if got := Action(9).String(); got != "Action(9)" {
		t.Errorf("Action(9).String() = %q", got)
	}
}
