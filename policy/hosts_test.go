package policy

import (
	"strings"
	"testing"
)

func TestHostSetMatch(t *testing.T) {
	set := MustCompileHosts(
		"example.com",
		"*.corp.example",
		"Bank.Example.",
		"bücher.de",
		"*.müller.example",
		"192.0.2.7",
		"10.0.0.0/8",
		"2001:db8::1",
		"fc00::/7",
		"::ffff:198.51.100.0/120",
		"under_score.example",
	)
	tests := []struct {
		name string
		host string
		want bool
	}{
		{"exact", "example.com", true},
		{"exact upper case", "EXAMPLE.COM", true},
		{"exact trailing dot", "example.com.", true},
		{"exact with port", "example.com:443", true},
		{"exact upper case with port and dot", "Example.Com.:8080", true},
		{"subdomain of exact is not matched", "www.example.com", false},
		{"parent of exact is not matched", "com", false},
		{"longer name sharing a suffix", "badexample.com", false},
		{"pattern upper case and dot", "bank.example", true},
		{"wildcard one level", "a.corp.example", true},
		{"wildcard deep", "a.b.c.corp.example:443", true},
		{"wildcard apex not matched", "corp.example", false},
		{"wildcard lookalike", "evilcorp.example", false},
		{"wildcard upper case", "WWW.CORP.EXAMPLE", true},
		{"idn unicode host", "bücher.de", true},
		{"idn unicode upper case", "BÜCHER.de", true},
		{"idn punycode host", "xn--bcher-kva.de", true},
		{"idn wildcard", "www.xn--mller-kva.example", true},
		{"idn wildcard unicode", "shop.müller.example:443", true},
		{"idn wildcard apex", "müller.example", false},
		{"ipv4 exact", "192.0.2.7", true},
		{"ipv4 exact with port", "192.0.2.7:443", true},
		{"ipv4 other", "192.0.2.8", false},
		{"ipv4 cidr", "10.20.30.40", true},
		{"ipv4 cidr with port", "10.20.30.40:8443", true},
		{"ipv4 outside cidr", "11.0.0.1", false},
		// Security fix: the spellings the dialer reads as these addresses.
		{"ipv4 hex spelling", "0xc0.0.2.7", true},
		{"ipv4 short spelling with port", "192.0.519:443", true},
		{"ipv4 decimal spelling in cidr", "169090600", true},
		{"ipv4 octal spelling in cidr", "012.0.0.1", true},
		{"ipv4 spelling with trailing dot", "192.0.2.7.", true},
		{"percent-encoded name", "%65xample.com", true},
		{"full-width name", "ＥＸＡＭＰＬＥ.com", true},
		{"number that is no ipv4", "1.2.3.256", false},
		{"ipv4-mapped ipv6 in ipv4 cidr", "[::ffff:10.1.2.3]:443", true},
		{"ipv4 in mapped cidr", "198.51.100.9", true},
		{"ipv6 exact bare", "2001:db8::1", true},
		{"ipv6 exact bracketed", "[2001:db8::1]", true},
		{"ipv6 exact bracketed port", "[2001:DB8::1]:443", true},
		{"ipv6 other", "2001:db8::2", false},
		{"ipv6 cidr", "[fd12:3456::1]:443", true},
		{"ipv6 with zone", "[fe80::1%eth0]:443", false},
		{"underscore", "under_score.example", true},
		{"empty", "", false},
		{"port only", ":443", false},
		{"garbage", "exa mple.com", false},
		{"empty label", "a..example.com", false},
		{"just a dot", ".", false},
		{"ip does not match names", "127.0.0.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := set.Match(tt.host); got != tt.want {
				t.Errorf("Match(%q) = %v, want %v", tt.host, got, tt.want)
			}
		})
	}
}

func TestHostSetEmpty(t *testing.T) {
	var nilSet *HostSet
	if nilSet.Match("example.com") || nilSet.Len() != 0 {
		t.Errorf("nil set: got match or Len %d, want no match and 0", nilSet.Len())
	}
	empty, err := CompileHosts(nil)
	if err != nil {
		t.Fatalf("CompileHosts(nil): %v", err)
	}
	if empty.Match("example.com") || empty.Match("10.0.0.1") {
		t.Error("empty set matched, want no match")
	}
}

func TestHostSetLen(t *testing.T) {
	s := MustCompileHosts("a.example", "*.b.example", "10.0.0.1", "10.0.0.0/8", "a.example")
	if got, want := s.Len(), 5; got != want {
		t.Errorf("Len() = %d, want %d", got, want)
	}
}

func TestCompileHostsErrors(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
	}{
		{"empty", ""},
		{"blank", "   "},
		{"star alone", "*"},
		{"star mid", "www.*.example.com"},
		{"star suffix", "example.*"},
		{"partial star", "*foo.example.com"},
		{"double star", "*.*.example.com"},
		{"port", "example.com:443"},
		{"bracketed ipv6 with port", "[::1]:443"},
		{"bad cidr", "10.0.0.0/33"},
		{"bad cidr addr", "10.0.0/8"},
		{"space", "exa mple.com"},
		{"empty label", "a..b"},
		{"leading dot", ".example.com"},
		{"long label", strings.Repeat("a", 64) + ".com"},
		{"long name", strings.Repeat("abcdefghi.", 26) + "com"},
		{"wildcard ip", "*.10.0.0.1"},
		{"url", "https://example.com/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CompileHosts([]string{"ok.example", tt.pattern})
			if err == nil {
				t.Fatalf("CompileHosts(%q): got nil error, want one", tt.pattern)
			}
			if !strings.Contains(err.Error(), "\""+strings.ReplaceAll(tt.pattern, `"`, `\"`)+"\"") {
				t.Errorf("error %q does not name the pattern %q", err, tt.pattern)
			}
		})
	}
}

func TestCompileHostsReportsAll(t *testing.T) {
	_, err := CompileHosts([]string{"bad one", "ok.example", "*"})
	if err == nil {
		t.Fatal("got nil error, want one")
	}
	for _, want := range []string{`"bad one"`, `"*"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func FuzzHostSetMatch(f *testing.F) {
	for _, s := range []string{
		"example.com", "WWW.Example.COM.:443", "[::1]:443", "10.0.0.1", "bücher.de", "[", "]:", "::ffff:1.2.3.4",
		"xn--", "a..b", "*.x", "[fe80::1%eth0]:1", "\xff\xfe", strings.Repeat("a.", 200),
	} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, pattern, host string) {
		fixed := MustCompileHosts("*.example.com", "example.org", "10.0.0.0/8", "2001:db8::/32", "bücher.de")
		fixed.Match(host)
		s, err := CompileHosts([]string{pattern})
		if err != nil {
			return
		}
		s.Match(host)
		// A compiled exact name or address must match itself. Patterns are
		// read trimmed, so "\v*.x" is a wildcard, not a name.
		p := strings.TrimSpace(pattern)
		if !strings.HasPrefix(p, "*.") && !strings.Contains(p, "/") && !s.Match(p) {
			t.Errorf("pattern %q does not match itself", pattern)
		}
	})
}

func BenchmarkHostSetMatch(b *testing.B) {
	patterns := []string{"10.0.0.0/8", "192.168.0.0/16", "fc00::/7", "192.0.2.1"}
	for i := 0; i < 500; i++ {
		patterns = append(patterns, "host"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+".example.com")
		patterns = append(patterns, "*.zone"+string(rune('a'+i%26))+strings.Repeat("y", i%5)+".example.net")
	}
	s := MustCompileHosts(patterns...)
	for _, bc := range []struct{ name, host string }{
		{"exact hit", "hostxa.example.com:443"},
		{"suffix hit", "a.b.c.zonea.example.net"},
		{"miss", "www.unrelated.example.org:443"},
		{"mixed case miss", "WWW.Unrelated.Example.ORG"},
		{"idn miss", "www.bücher.de"},
		{"ip hit", "10.1.2.3:443"},
		{"ip miss", "[2001:db8::1]:443"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Match(bc.host)
			}
		})
	}
}
