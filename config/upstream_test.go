package config

import (
	"strings"
	"testing"
	"time"
)

func TestUpstream(t *testing.T) {
	f, err := Parse("t.toml", []byte(`[upstream]
proxies = ["http://picket:s3cr%40t@proxy1.example:3128", "http://10.0.0.3:8080/"]
direct_hosts = ["*.corp.example", "10.1.2.3"]
direct_networks = ["10.0.0.0/8"]
backoff = "1s"
max_backoff = "30s"
`))
	if err != nil {
		t.Fatal(err)
	}
	u := f.Upstream
	if len(u.Proxies) != 2 || u.Backoff.D() != time.Second || u.MaxBackoff.D() != 30*time.Second {
		t.Fatalf("got %+v", u)
	}
	p, err := ParentProxy(u.Proxies[0])
	if err != nil {
		t.Fatal(err)
	}
	if pass, _ := p.User.Password(); p.Host != "proxy1.example:3128" || p.User.Username() != "picket" || pass != "s3cr@t" {
		t.Errorf("parsed %q as host %q user %q password %q", u.Proxies[0], p.Host, p.User.Username(), pass)
	}
	if d := Default().Upstream; len(d.Proxies) != 0 || d.Backoff.D() != 5*time.Second || d.MaxBackoff.D() != 2*time.Minute {
		t.Errorf("defaults: %+v", d)
	}
}

// TestUpstreamErrors: every bad key is named with its line; a password in a
// bad URL is never repeated.
func TestUpstreamErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"https parent", `proxies = ["https://p.example:3128"]`, "t.toml:2: upstream.proxies: invalid parent proxy \"https://p.example:3128\": the scheme must be http"},
		{"no port", `proxies = ["http://p.example"]`, "needs a host and a port"},
		{"path", `proxies = ["http://p.example:3128/x"]`, "no path, query or fragment"},
		{"bad port, password hidden", `proxies = ["http://u:hunter2@p.example:99999"]`, `"http://u:xxxxx@p.example:99999": invalid port "99999"`},
		{"twice", `proxies = ["http://p.example:3128", "http://u:p@p.example:3128"]`, "parent proxy p.example:3128 listed twice"},
		{"direct host", `direct_hosts = ["*"]`, "t.toml:2: upstream.direct_hosts"},
		{"direct network", `direct_networks = ["10.0.0.0/33"]`, "t.toml:2: upstream.direct_networks"},
		{"backoff", `backoff = "1ms"`, "upstream.backoff: must be at least 100ms"},
		{"max_backoff", `max_backoff = "1s"`, "upstream.max_backoff: must not be shorter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte("[upstream]\n"+tc.text+"\n"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error repeats the password: %v", err)
			}
		})
	}
}
