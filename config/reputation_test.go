package config

import (
	"strings"
	"testing"
	"time"
)

func TestReputationDefaults(t *testing.T) {
	f, err := Parse("/etc/picket/config.toml", []byte(""))
	if err != nil {
		t.Fatal(err)
	}
	r := f.Reputation
	if r.Mode != "kpsn" || r.Fail != "open" || r.Timeout.D() != 300*time.Millisecond || r.CacheSize != 10000 ||
		r.KPSN.Database != "data/feeds" || r.BreakerFailures != 5 {
		t.Errorf("defaults = %+v", r)
	}
	if got, want := f.Resolve(r.KPSN.Database), "/etc/picket/data/feeds"; got != want {
		t.Errorf("database resolves to %q, want %q", got, want)
	}
}

func TestReputationParse(t *testing.T) {
	f, err := Parse("c.toml", []byte(`
[reputation]
mode = "ksn"
fail = "closed"
timeout = "150ms"
cache_size = 500
allow = ["good.example", "http://intranet.example/app/"]
block = ["bad.example", "44d88612fea8a8f36de82e1278abb02f"]
breaker_failures = 3
breaker_cooldown = "30s"

[reputation.ksn]
server = "https://ksn.example.org"
token = "t"

[reputation.kpsn]
server = "http://10.0.0.5:8443"
database = "/var/lib/picket/feeds"
reload = "0s"
`))
	if err != nil {
		t.Fatal(err)
	}
	r := f.Reputation
	if r.Mode != "ksn" || r.Fail != "closed" || r.Timeout.D() != 150*time.Millisecond || r.CacheSize != 500 ||
		len(r.Allow) != 2 || len(r.Block) != 2 || r.KSN.Server != "https://ksn.example.org" || r.KSN.Token != "t" ||
		r.KPSN.Reload != 0 || r.BreakerCooldown.D() != 30*time.Second {
		t.Errorf("parsed = %+v", r)
	}
}

func TestReputationErrors(t *testing.T) {
	tests := []struct {
		name, toml string
		want       []string
	}{
		{"mode", "[reputation]\nmode = \"cloud\"\n", []string{"c.toml:2: reputation.mode: unknown mode"}},
		{"fail", "[reputation]\nfail = \"maybe\"\n", []string{"reputation.fail"}},
		{"timeout", "[reputation]\ntimeout = \"0s\"\n", []string{"reputation.timeout"}},
		{"cache", "[reputation]\ncache_size = 0\n", []string{"reputation.cache_size"}},
		{"ksn needs server", "[reputation]\nmode = \"ksn\"\n", []string{"reputation.ksn.server: required"}},
		{"bad server", "[reputation.kpsn]\nserver = \"ftp://x\"\n", []string{"reputation.kpsn.server"}},
		{"server with query", "[reputation.ksn]\nserver = \"https://x/?a=1\"\n", []string{"reputation.ksn.server"}},
		{"bad list entries", "[reputation]\nallow = [\"http://\"]\nblock = [\"ok.example\", \"http://[::1\"]\n",
			[]string{"c.toml:2: reputation.allow: bad entry", "c.toml:3: reputation.block: bad entry"}},
		{"kpsn without database", "[reputation.kpsn]\ndatabase = \"\"\n", []string{"reputation.kpsn.database"}},
		{"unknown key", "[reputation]\ncolour = 1\n", []string{"reputation.colour: unknown key"}},
		{"all at once", "[reputation]\nmode = \"x\"\nfail = \"y\"\n", []string{"reputation.mode", "reputation.fail"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.toml", []byte(tt.toml))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to contain %q", err, w)
				}
			}
		})
	}
}
