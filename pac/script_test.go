package pac

import (
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/picket-proxy/picket/internal/netaddr"
	"github.com/picket-proxy/picket/policy"
)

var rfc1918 = []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}

// testDNS is what dnsResolve answers in the tests.
var testDNS = map[string]string{
	"wiki.corp.example":   "10.1.2.3",
	"printer.lan.example": "192.168.7.7",
	"www.example.com":     "93.184.215.14",
	"edge.example.net":    "172.31.255.1",
	"outside.example.net": "172.32.0.1",
	"loop.example":        "127.0.0.1",
}

func render(t *testing.T, cfg Config, proxies ...string) []byte {
	t.Helper()
	s, err := Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s.Render(proxies)
}

func TestScript(t *testing.T) {
	const proxies = "PROXY picket1.example:3128; PROXY picket2.example:3128"
	cfg := Config{
		DirectPlainHosts: true,
		DirectHosts:      []string{"intranet.example", "*.corp.example", "Straße.example", "192.0.2.7", "198.51.100.0/24", "2001:db8:1::/48"},
		DirectNetworks:   append(slices.Clone(rfc1918), "127.0.0.0/8", "::1", "fc00::/7"),
	}
	vm := newPACVM(t, render(t, cfg, "picket1.example:3128", "picket2.example:3128"), testDNS)
	tests := []struct {
		name, url, host string
		want            string
		lookups         []string // names dnsResolve was asked
	}{
		{"plain host name", "http://intranet/", "intranet", "DIRECT", nil},
		{"localhost", "http://localhost:8080/", "localhost", "DIRECT", nil},
		{"exact name", "http://intranet.example/x", "intranet.example", "DIRECT", nil},
		{"exact name, upper case", "http://INTRANET.example/", "INTRANET.example", "DIRECT", nil},
		{"exact name, trailing dot", "http://intranet.example./", "intranet.example.", "DIRECT", nil},
		{"exact name, not its subdomain", "http://a.intranet.example/", "a.intranet.example", proxies, []string{"a.intranet.example"}},
		{"suffix", "https://mail.corp.example/", "mail.corp.example", "DIRECT", nil},
		{"suffix, deeper", "https://a.b.corp.example/", "a.b.corp.example", "DIRECT", nil},
		{"suffix, not the apex", "https://corp.example/", "corp.example", proxies, []string{"corp.example"}},
		{"suffix, not a longer label", "https://badcorp.example/", "badcorp.example", proxies, []string{"badcorp.example"}},
		{"international name in punycode", "http://xn--strae-oqa.example/", "xn--strae-oqa.example", "DIRECT", nil},
		{"public name", "https://www.example.com/", "www.example.com", proxies, []string{"www.example.com"}},
		{"name resolving to RFC 1918", "http://wiki.corp2.example/", "printer.lan.example", "DIRECT", []string{"printer.lan.example"}},
		{"name resolving to 172.31", "http://edge.example.net/", "edge.example.net", "DIRECT", []string{"edge.example.net"}},
		{"name resolving to 172.32", "http://outside.example.net/", "outside.example.net", proxies, []string{"outside.example.net"}},
		{"name resolving to loopback", "http://loop.example/", "loop.example", "DIRECT", []string{"loop.example"}},
		{"unresolvable name", "http://nowhere.example/", "nowhere.example", proxies, []string{"nowhere.example"}},
		{"IPv4 in 10/8, no DNS", "http://10.9.8.7/", "10.9.8.7", "DIRECT", nil},
		{"IPv4 in 172.16/12, no DNS", "http://172.20.0.1/", "172.20.0.1", "DIRECT", nil},
		{"IPv4 just outside 172.16/12", "http://172.32.0.1/", "172.32.0.1", proxies, nil},
		{"IPv4 in 192.168/16", "http://192.168.0.1/", "192.168.0.1", "DIRECT", nil},
		{"IPv4 public", "http://93.184.215.14/", "93.184.215.14", proxies, nil},
		{"IPv4 address pattern", "http://192.0.2.7/", "192.0.2.7", "DIRECT", nil},
		{"IPv4 next to the address pattern", "http://192.0.2.8/", "192.0.2.8", proxies, nil},
		{"IPv4 network pattern", "http://198.51.100.200/", "198.51.100.200", "DIRECT", nil},
		{"IPv4 invalid octet", "http://999.1.1.1/", "999.1.1.1", proxies, nil},
		{"IPv6 loopback", "http://[::1]/", "::1", "DIRECT", nil},
		{"IPv6 loopback in brackets", "http://[::1]/", "[::1]", "DIRECT", nil},
		{"IPv6 ULA", "http://[fd12:3456::1]/", "fd12:3456::1", "DIRECT", nil},
		{"IPv6 network pattern", "http://[2001:db8:1:ffff::9]/", "2001:db8:1:ffff::9", "DIRECT", nil},
		{"IPv6 outside the pattern", "http://[2001:db8:2::9]/", "2001:db8:2::9", proxies, nil},
		{"IPv6 public", "http://[2606:4700::1111]/", "2606:4700::1111", proxies, nil},
		{"IPv6 full form", "http://[2001:0db8:0001:0000:0000:0000:0000:0001]/", "2001:0db8:0001:0000:0000:0000:0000:0001", "DIRECT", nil},
		{"IPv4-mapped private", "http://[::ffff:a00:1]/", "::ffff:a00:1", "DIRECT", nil},
		{"IPv4-mapped dotted", "http://[::ffff:10.0.0.1]/", "::ffff:10.0.0.1", "DIRECT", nil},
		{"IPv4-mapped public", "http://[::ffff:808:808]/", "::ffff:808:808", proxies, nil},
		{"IPv6 with a zone", "http://[fe80::1%25eth0]/", "fe80::1%eth0", proxies, nil},
		{"IPv6 garbage", "http://[1:::2]/", "1:::2", proxies, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, lookups := vm.call(t, tt.url, tt.host)
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if !slices.Equal(lookups, tt.lookups) {
				t.Errorf("got DNS lookups %q, want %q", lookups, tt.lookups)
			}
		})
	}
}

func TestScriptOptions(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		proxies []string
		host    string
		want    string
		lookups int
	}{
		{"fallback direct", Config{FallbackDirect: true}, []string{"p:3128"}, "www.example.com", "PROXY p:3128; DIRECT", 0},
		{"no proxies", Config{}, nil, "www.example.com", "DIRECT", 0},
		{"IPv6 proxy", Config{}, []string{"[2001:db8::1]:3128"}, "www.example.com", "PROXY [2001:db8::1]:3128", 0},
		{"plain names proxied when off", Config{}, []string{"p:1"}, "intranet", "PROXY p:1", 0},
		{"no networks, no DNS", Config{DirectHosts: []string{"*.corp.example"}}, []string{"p:1"}, "www.example.com", "PROXY p:1", 0},
		{"no networks, private literal proxied", Config{}, []string{"p:1"}, "10.0.0.1", "PROXY p:1", 0},
		{"IPv6 networks only: no DNS", Config{DirectNetworks: []string{"fc00::/7"}}, []string{"p:1"}, "wiki.corp.example", "PROXY p:1", 0},
		{"IPv6 networks only: literal matched", Config{DirectNetworks: []string{"fc00::/7"}}, []string{"p:1"}, "fd00::1", "DIRECT", 0},
		{"IPv4-mapped network pattern", Config{DirectHosts: []string{"::ffff:10.0.0.0/104"}}, []string{"p:1"}, "10.3.3.3", "DIRECT", 0},
		{"whole IPv4 space", Config{DirectNetworks: []string{"0.0.0.0/0"}}, []string{"p:1"}, "93.184.215.14", "DIRECT", 0},
		{"whole IPv6 space", Config{DirectNetworks: []string{"::/0"}}, []string{"p:1"}, "2606:4700::1", "DIRECT", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vm := newPACVM(t, render(t, tt.cfg, tt.proxies...), testDNS)
			got, lookups := vm.call(t, "http://"+tt.host+"/", tt.host)
			if got != tt.want || len(lookups) != tt.lookups {
				t.Errorf("got %q after %d lookups, want %q after %d", got, len(lookups), tt.want, tt.lookups)
			}
		})
	}
}

// TestScriptReadable checks the generated file uses the PAC functions an
// administrator expects to read.
func TestScriptReadable(t *testing.T) {
	src := string(render(t, Config{
		DirectPlainHosts: true,
		DirectHosts:      []string{"*.corp.example"},
		DirectNetworks:   []string{"10.0.0.0/8"},
	}, "p:3128"))
	for _, want := range []string{
		`isPlainHostName(host)`,
		`dnsDomainIs(host, ".corp.example")`,
		`isInNet(ip, "10.0.0.0", "255.0.0.0")`,
		`dnsResolve(host)`,
		`"PROXY p:3128"`,
	} {
		if !strings.Contains(src, want) {
			t.Errorf("got a file without %s:\n%s", want, src)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"bad host pattern", Config{DirectHosts: []string{"exa mple.com"}}},
		{"wildcard inside", Config{DirectHosts: []string{"a.*.example"}}},
		{"pattern with port", Config{DirectHosts: []string{"example.com:80"}}},
		{"bad network", Config{DirectNetworks: []string{"10.0.0.0/33"}}},
		{"name as network", Config{DirectNetworks: []string{"example.com"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Compile(tt.cfg); err == nil {
				t.Errorf("got no error, want one")
			}
		})
	}
}

func TestParseProxy(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"proxy.example:3128", "proxy.example:3128", true},
		{"Proxy.Example.:3128", "proxy.example:3128", true},
		{"192.0.2.1:8080", "192.0.2.1:8080", true},
		{"[2001:db8::1]:3128", "[2001:db8::1]:3128", true},
		{"[::ffff:192.0.2.1]:3128", "192.0.2.1:3128", true},
		{"bücher.example:3128", "xn--bcher-kva.example:3128", true},
		{"0x7f.1:3128", "127.0.0.1:3128", true},
		{"proxy.example", "", false},
		{"proxy.example:0", "", false},
		{"proxy.example:65536", "", false},
		{`pro"xy:3128`, "", false},
		{"a b:3128", "", false},
		{"[fe80::1%eth0]:3128", "", false},
		{":3128", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseProxy(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("got %q, %v, want %q (ok %v)", got, err, tt.want, tt.ok)
			}
		})
	}
}

// reference decides like the PAC file should, in Go: policy's HostSet for the
// patterns, netip for the networks.
func reference(cfg Config, hosts *policy.HostSet, nets []netip.Prefix, dns map[string]string, host string) bool {
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		if hosts.MatchAddr(a) {
			return true
		}
		for _, n := range nets {
			if n.Contains(a) {
				return true
			}
		}
		return false
	}
	if cfg.DirectPlainHosts && !strings.Contains(host, ".") {
		return true
	}
	if hosts.Match(host) {
		return true
	}
	ip, ok := dns[host]
	if !ok {
		return false
	}
	a := netip.MustParseAddr(ip)
	for _, n := range nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// checkAgainstReference evaluates host in the PAC file and in reference.
func checkAgainstReference(t *testing.T, cfg Config, host string) {
	t.Helper()
	hosts, err := policy.CompileHosts(cfg.DirectHosts)
	if err != nil {
		t.Skip()
	}
	var nets []netip.Prefix
	for _, n := range cfg.DirectNetworks {
		p, err := ParseNetwork(n)
		if err != nil {
			t.Skip()
		}
		nets = append(nets, netip.PrefixFrom(p.Addr().Unmap(), p.Bits()))
	}
	s, err := Compile(cfg)
	if err != nil {
		t.Fatalf("Compile: %v, but policy accepted %q", err, cfg.DirectHosts)
	}
	vm := newPACVM(t, s.Render([]string{"p:1"}), testDNS)
	got, _ := vm.call(t, "http://x/", host)
	want := "PROXY p:1"
	if reference(cfg, hosts, nets, testDNS, host) {
		want = "DIRECT"
	}
	if got != want {
		t.Errorf("host %q with %q, %q: got %q, want %q", host, cfg.DirectHosts, cfg.DirectNetworks, got, want)
	}
}

func TestScriptMatchesPolicy(t *testing.T) {
	// "0xc0.0.2.8" is 192.0.2.8 to policy, and now to the PAC file too (it
	// was a name there, which no browser ever hands it).
	patterns := []string{"example.com", "*.corp.example", "*.a.b.example", "10.1.0.0/16", "2001:db8::/32", "192.0.2.7", "::1", "0xc0.0.2.8"}
	hosts := []string{"example.com", "www.example.com", "corp.example", "x.corp.example", "x.y.corp.example", "xcorp.example",
		"b.example", "a.b.example", "z.a.b.example", "10.1.2.3", "10.2.0.1", "2001:db8::5", "2001:db9::5", "192.0.2.7",
		"192.0.2.70", "::1", "::2", "wiki.corp.example", "printer.lan.example", "intranet", "192.0.2.8"}
	for _, h := range hosts {
		checkAgainstReference(t, Config{DirectPlainHosts: true, DirectHosts: patterns, DirectNetworks: rfc1918}, h)
		checkAgainstReference(t, Config{DirectHosts: patterns}, h)
	}
}

var dottedQuad = regexp.MustCompile(`^[0-9]{1,3}(\.[0-9]{1,3}){3}$`)

// FuzzScript checks that whatever patterns policy accepts, the PAC file runs
// and decides a host like policy's HostSet does.
func FuzzScript(f *testing.F) {
	f.Add("*.corp.example", "10.0.0.0/8", "a.corp.example")
	f.Add("example.com", "fc00::/7", "fd00::1")
	f.Add("192.0.2.0/24", "::1", "192.0.2.9")
	f.Add("*.xn--bcher-kva.example", "172.16.0.0/12", "wiki.corp.example")
	f.Fuzz(func(t *testing.T, pattern, network, host string) {
		h := strings.ToLower(strings.TrimSuffix(host, "."))
		if a, err := netip.ParseAddr(h); err == nil {
			if a.Zone() != "" || a.String() != h {
				t.Skip() // browsers hand PAC files canonical addresses
			}
		} else if n, err := netaddr.ParseHost(h); err != nil || n.String() != h || dottedQuad.MatchString(h) {
			t.Skip() // and names in punycode, never a bad dotted quad
		}
		checkAgainstReference(t, Config{DirectHosts: []string{pattern}, DirectNetworks: []string{network}}, h)
	})
}
