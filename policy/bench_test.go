package policy

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/reputation"
)

// typicalRules is a rule set like an office's: 20 rules over all stages and
// most criteria.
func typicalRules() []Rule {
	return []Rule{
		{Name: "os-updates", Action: "bypass", Hosts: []string{"*.windowsupdate.com", "*.update.microsoft.com", "*.apple.com"}},
		{Name: "banking", Action: "bypass", Hosts: []string{"*.bank.example", "onlinebanking.example"}},
		{Name: "monitoring", Action: "bypass", Clients: []string{"10.99.0.0/16"}},
		{Name: "internal", Action: "bypass", Hosts: []string{"10.0.0.0/8", "*.corp.example"}},
		{Name: "no-uploads-at-night", Action: "block", Methods: []string{"POST", "PUT"}, Days: []string{"mon", "tue", "wed", "thu", "fri"}, Hours: "22:00-06:00"},
		{Name: "gaming", Action: "block", Hosts: []string{"*.games.example", "games.example", "*.casino.example"}},
		{Name: "social-staff", Action: "allow", Hosts: []string{"*.social.example"}, Groups: []string{"marketing"}},
		{Name: "social", Action: "block", Hosts: []string{"*.social.example"}, Hours: "09:00-17:00"},
		{Name: "executables", Action: "warn", URLRegex: `(?i)\.(exe|msi|scr|bat)$`},
		{Name: "filesharing", Action: "warn", URLPrefixes: []string{"https://files.example/upload/", "share.example/put/"}},
		{Name: "guest-net", Action: "block", Clients: []string{"192.168.50.0/24"}, Hosts: []string{"*.streaming.example"}},
		{Name: "admins", Action: "allow", Users: []string{"root", "admin"}},
		{Name: "contractors", Action: "block", Groups: []string{"contractors"}, Hosts: []string{"*.hr.example"}},
		{Name: "weekend", Action: "warn", Days: []string{"sat", "sun"}, Hosts: []string{"*.shop.example"}},
		{Name: "ads", Action: "block", Hosts: []string{"*.ads.example", "*.tracker.example", "*.doubleclick.example"}},
		{Name: "trusted-vendor", Stage: "protection", Action: "allow", Hosts: []string{"*.vendor.example"}},
		{Name: "phish-lab", Stage: "protection", Action: "allow", Clients: []string{"10.50.0.0/24"}, Verdicts: []string{"phishing"}},
		{Name: "adware-block", Stage: "protection", Action: "block", Categories: []string{"adware", "riskware"}},
		{Name: "unknown-downloads", Stage: "protection", Action: "warn", Verdicts: []string{"unknown"}, URLRegex: `\.(zip|7z|rar)$`},
		{Name: "malware", Stage: "protection", Action: "block", Verdicts: []string{"malware"}},
	}
}

func BenchmarkDecide(b *testing.B) {
	rep, err := reputation.New(reputation.Config{Block: []string{"blocked.example"}}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	defer rep.Close()
	loc := berlin(b)
	fixed := time.Date(2025, 6, 4, 10, 0, 0, 0, loc)
	e := newEngine(b, Config{Rules: typicalRules(), Location: loc, Inspection: Inspection{Intercept: true, BlockPageIntercept: true, AutoBypass: time.Hour}},
		rep, func() time.Time { return fixed })
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		in   *Input
	}{
		{"request passes all rules", req("GET", "https://www.news.example/world/article-1234.html?page=2")},
		{"request blocked by access", req("GET", "https://www.games.example/play")},
		{"request bypassed", req("GET", "https://www.bank.example/login")},
		{"connect intercepted", connect("www.news.example:443")},
	} {
		if _, err := e.Decide(ctx, bc.in); err != nil { // warm the cache
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Decide(ctx, bc.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	if s := rep.Stats(); s.CacheHits == 0 {
		b.Errorf("no cache hits: %+v", s)
	}
}

func FuzzDecide(f *testing.F) {
	for _, s := range []string{
		"https://example.com/a?b=c", "http://[::1]:8080/", "http://xn--bcher-kva.de/", "https://EXAMPLE.com.:443/x.exe",
		"http://a..b/", "http://%zz/", "https://bücher.de/ü", "http:///", "//x", "http://10.1.2.3/",
	} {
		f.Add(s, "GET", false)
		f.Add(s, "CONNECT", true)
	}
	rep := byHost(map[string]reputation.Verdict{"example.com": malware})
	e, err := New(Config{Rules: typicalRules(), Inspection: Inspection{Intercept: true}}, rep, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw, method string, isConnect bool) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		in := &Input{Client: netip.MustParseAddr("10.1.2.3"), Method: method, URL: u, Connect: isConnect, User: "u", Groups: []string{"g"}}
		d, err := e.Decide(context.Background(), in)
		if err == nil && d.Bypass && d.Intercept {
			t.Errorf("%q: bypass and intercept at once", raw)
		}
	})
}

func ExampleEngine_Decide() {
	e, err := New(Config{
		Rules: []Rule{
			{Name: "updates", Action: "bypass", Hosts: []string{"*.update.example"}},
			{Name: "no-games", Action: "block", Hosts: []string{"*.games.example"}, Hours: "09:00-17:00"},
		},
		Location:   time.UTC,
		Inspection: Inspection{Intercept: true, BlockPageIntercept: true},
	}, nil, func() time.Time { return time.Date(2025, 6, 4, 10, 0, 0, 0, time.UTC) })
	if err != nil {
		panic(err)
	}
	for _, raw := range []string{"https://www.games.example/", "https://dl.update.example/f.bin"} {
		u, _ := url.Parse(raw)
		d, _ := e.Decide(context.Background(), &Input{Method: "GET", URL: u})
		fmt.Println(d.Action, d.Stage, d.Rule, d.Bypass)
	}
	// Output:
	// block access no-games false
	// allow bypass updates true
}
