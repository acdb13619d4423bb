package config

import (
	"errors"
	"slices"
	"testing"

	"github.com/BurntSushi/toml"
)

// decodeSection decodes text into doc (a struct holding the section,
// already defaulted) and validates the section with validate, as Parse will
// once File has it.
func decodeSection(t *testing.T, text string, doc any, validate func(*problems)) error {
	t.Helper()
	md, err := toml.Decode(text, doc)
	if err != nil {
		return err
	}
	p := &problems{file: "t.toml", lines: keyLines([]byte(text))}
	for _, k := range md.Undecoded() {
		p.add(k.String(), "unknown key")
	}
	validate(p)
	return errors.Join(p.errs...)
}

func parsePAC(t *testing.T, text string) (PAC, error) {
	t.Helper()
	var doc struct {
		PAC PAC `toml:"pac"`
	}
	doc.PAC.defaults()
	err := decodeSection(t, text, &doc, doc.PAC.validate)
	return doc.PAC, err
}

func TestPACDefaults(t *testing.T) {
	c, err := parsePAC(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Enabled || !c.DirectPlainHosts || c.FallbackDirect || c.BypassTLS || len(c.Proxies) != 0 || c.File != "" || c.MaxAge.D().Minutes() != 10 {
		t.Errorf("got %+v, want enabled, plain hosts direct, no proxies, 10m", c)
	}
	for _, n := range []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} {
		if !slices.Contains(c.DirectNetworks, n) {
			t.Errorf("got direct networks %q, want %s among them", c.DirectNetworks, n)
		}
	}
}

func TestPACKeys(t *testing.T) {
	c, err := parsePAC(t, `[pac]
enabled = true
proxies = ["picket1.corp.example:3128", "[2001:db8::1]:3128"]
fallback_direct = true
direct_plain_hosts = false
direct_hosts = ["intranet.example", "*.corp.example", "192.0.2.7", "198.51.100.0/24"]
direct_networks = ["10.0.0.0/8"]
bypass_tls = true
file = "proxy.pac"
max_age = "1h"
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Proxies) != 2 || !c.FallbackDirect || c.DirectPlainHosts || len(c.DirectHosts) != 4 ||
		!slices.Equal(c.DirectNetworks, []string{"10.0.0.0/8"}) || !c.BypassTLS || c.File != "proxy.pac" || c.MaxAge.D().Hours() != 1 {
		t.Errorf("got %+v", c)
	}
}

func TestPACInvalid(t *testing.T) {
	tests := []struct {
		name, text, key string
	}{
		{"proxy without port", `proxies = ["picket.example"]`, "pac.proxies"},
		{"proxy with a scheme", `proxies = ["http://picket.example:3128"]`, "pac.proxies"},
		{"bad host pattern", `direct_hosts = ["a.*.example"]`, "pac.direct_hosts"},
		{"pattern with port", `direct_hosts = ["intranet.example:80"]`, "pac.direct_hosts"},
		{"bad network", `direct_networks = ["10.0.0.0/33"]`, "pac.direct_networks"},
		{"name as network", `direct_networks = ["corp.example"]`, "pac.direct_networks"},
		{"max age too long", `max_age = "200h"`, "pac.max_age"},
		{"unknown key", `bypass = true`, "pac.bypass"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parsePAC(t, "[pac]\n"+tt.text+"\n")
			var ce *Error
			if !errors.As(err, &ce) || ce.Key != tt.key {
				t.Fatalf("got %v, want an error naming %s", err, tt.key)
			}
			if ce.Line != 2 {
				t.Errorf("got line %d, want 2", ce.Line)
			}
		})
	}
}
