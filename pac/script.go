package pac

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/picket-proxy/picket/internal/netaddr"
	"github.com/picket-proxy/picket/policy"
)

// Script is a compiled PAC configuration: the direct rules, ready to be
// written out with a proxy list. It is immutable and safe for concurrent use.
type Script struct {
	plain    bool
	exact    []string       // "intranet.example"
	suffixes []string       // "corp.example" for "*.corp.example"
	nets4    []netip.Prefix // masked IPv4 networks
	nets6    []netip.Prefix // masked IPv6 networks
	fallback bool
}

// Compile checks cfg's direct rules and compiles them. Proxies and File are
// not looked at: the proxy list is given to Render.
func Compile(cfg Config) (*Script, error) {
	s := &Script{plain: cfg.DirectPlainHosts, fallback: cfg.FallbackDirect}
	var errs []error
	if _, err := policy.CompileHosts(cfg.DirectHosts); err != nil {
		errs = append(errs, fmt.Errorf("direct hosts: %w", err))
	} else {
		for _, p := range cfg.DirectHosts {
			s.addPattern(p)
		}
	}
	for _, n := range cfg.DirectNetworks {
		pre, err := ParseNetwork(n)
		if err != nil {
			errs = append(errs, fmt.Errorf("direct networks: %w", err))
			continue
		}
		s.addPrefix(pre)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// addPattern adds a pattern policy.CompileHosts has accepted, read the same
// way (internal/netaddr).
func (s *Script) addPattern(pattern string) {
	p := strings.TrimSpace(pattern)
	if strings.Contains(p, "/") {
		if pre, err := netaddr.ParsePrefix(strings.Trim(p, "[]")); err == nil {
			s.addPrefix(pre)
		}
		return
	}
	wild := strings.HasPrefix(p, "*.")
	h, err := netaddr.ParseHost(strings.TrimPrefix(p, "*."))
	switch {
	case err != nil:
	case h.IsAddr():
		s.addPrefix(netip.PrefixFrom(h.Addr, h.Addr.BitLen()))
	case wild:
		s.suffixes = appendNew(s.suffixes, h.Name)
	default:
		s.exact = appendNew(s.exact, h.Name)
	}
}

// addPrefix adds a network netaddr.ParsePrefix has read (masked, IPv4-mapped
// ones as IPv4).
func (s *Script) addPrefix(pre netip.Prefix) {
	if pre.Addr().Is4() {
		s.nets4 = appendNew(s.nets4, pre)
	} else {
		s.nets6 = appendNew(s.nets6, pre)
	}
}

func appendNew[T comparable](list []T, v T) []T {
	for _, x := range list {
		if x == v {
			return list
		}
	}
	return append(list, v)
}

// ParseNetwork parses a network ("10.0.0.0/8", "fc00::/7") or a single
// address, which stands for itself (/32 or /128): netaddr.ParsePrefix.
func ParseNetwork(s string) (netip.Prefix, error) {
	pre, err := netaddr.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w (want e.g. 10.0.0.0/8 or fc00::/7)", err)
	}
	return pre, nil
}

// ParseProxy checks a proxy address ("proxy.example:3128", "192.0.2.1:3128",
// "[2001:db8::1]:3128") and returns it as written in a PAC file: the host as
// every part of Picket reads it (netaddr: the name lower-cased and in
// punycode), an IPv6 address in brackets. An address with a zone is refused:
// a browser cannot use it.
func ParseProxy(s string) (string, error) {
	t := strings.TrimSpace(s)
	h, port, err := netaddr.ParseHostPort(t)
	switch {
	case errors.Is(err, netaddr.ErrInvalidPort):
		return "", fmt.Errorf("invalid proxy address %q: port must be 1-65535", s)
	case err != nil:
		return "", fmt.Errorf("invalid proxy address %q: host must be a name or an IP address", s)
	case port == 0:
		return "", fmt.Errorf("invalid proxy address %q: want host:port", s)
	case strings.Contains(t, "%"):
		return "", fmt.Errorf("invalid proxy address %q: no zones or escapes", s)
	}
	return h.URLHost() + ":" + strconv.Itoa(int(port)), nil
}

// Directive is what FindProxyForURL returns for proxied hosts: "PROXY a:1;
// PROXY b:2", with "; DIRECT" when fallback is set, "DIRECT" alone when
// there are no proxies. The proxies must have passed ParseProxy.
func Directive(proxies []string, fallback bool) string {
	parts := make([]string, 0, len(proxies)+1)
	for _, p := range proxies {
		parts = append(parts, "PROXY "+p)
	}
	if fallback || len(parts) == 0 {
		parts = append(parts, "DIRECT")
	}
	return strings.Join(parts, "; ")
}

// Render writes the PAC file sending proxied hosts to proxies, which must
// have passed ParseProxy, in failover order.
func (s *Script) Render(proxies []string) []byte {
	var b strings.Builder
	w := func(lines ...string) {
		for _, l := range lines {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	nets := len(s.nets4)+len(s.nets6) > 0
	w("// Proxy auto-configuration for Picket, generated from [pac] in config.toml:",
		"// change the configuration, not this file.",
		"function FindProxyForURL(url, host) {",
		"\tvar proxy = "+jsString(Directive(proxies, s.fallback))+";",
		"\thost = String(host).toLowerCase();",
		`	if (host.charAt(0) == "[" && host.indexOf("]") > 0) host = host.substring(1, host.indexOf("]"));`,
		`	if (host.indexOf("%") > 0) host = host.substring(0, host.indexOf("%"));`,
		`	if (host.length > 1 && host.charAt(host.length - 1) == ".") host = host.substring(0, host.length - 1);`,
		`	var v6 = host.indexOf(":") >= 0;`)
	w("\t// IP literals are matched as they are, without DNS.",
		`	if (v6 || /^[0-9]{1,3}(\.[0-9]{1,3}){3}$/.test(host))`)
	if nets {
		w("\t\treturn picketDirectAddr(host) ? \"DIRECT\" : proxy;")
	} else {
		w("\t\treturn proxy;")
	}
	if s.plain {
		w("\t// Plain host names (no dot) are on the local network.",
			"\tif (isPlainHostName(host)) return \"DIRECT\";")
	}
	if len(s.exact)+len(s.suffixes) > 0 {
		conds := make([]string, 0, len(s.exact)+len(s.suffixes))
		for _, n := range s.exact {
			conds = append(conds, "host == "+jsString(n))
		}
		for _, n := range s.suffixes {
			// The leading dot keeps the apex (and "badcorp.example") out.
			conds = append(conds, "dnsDomainIs(host, "+jsString("."+n)+")")
		}
		w("\t// Direct host names and domains.",
			"\tif ("+strings.Join(conds, " ||\n\t    ")+")",
			"\t\treturn \"DIRECT\";")
	}
	if len(s.nets4) > 0 {
		w("\t// Names are resolved only here, to match the direct networks.",
			"\tvar ip = dnsResolve(host);",
			"\tif (ip && picketDirectAddr(String(ip))) return \"DIRECT\";")
	}
	w("\treturn proxy;", "}")
	if nets {
		s.renderAddr(w)
	}
	return []byte(b.String())
}

// renderAddr writes the helpers matching an address against the direct
// networks.
func (s *Script) renderAddr(w func(...string)) {
	in4 := make([]string, 0, len(s.nets4))
	for _, p := range s.nets4 {
		mask := net.IP(net.CIDRMask(p.Bits(), 32)).String()
		in4 = append(in4, "isInNet(ip, "+jsString(p.Addr().String())+", "+jsString(mask)+")")
	}
	if len(in4) == 0 {
		in4 = append(in4, "false")
	}
	in6 := make([]string, 0, len(s.nets6))
	for _, p := range s.nets6 {
		b := p.Addr().As16()
		words := make([]string, 8)
		for i := range words {
			words[i] = strconv.Itoa(int(b[2*i])<<8 | int(b[2*i+1]))
		}
		in6 = append(in6, "picketIn6(w, ["+strings.Join(words, ", ")+"], "+strconv.Itoa(p.Bits())+")")
	}
	if len(in6) == 0 {
		in6 = append(in6, "false")
	}
	w("",
		"// picketDirectAddr reports whether the IP address ip is in a direct network.",
		"function picketDirectAddr(ip) {",
		"\tif (ip.indexOf(\":\") < 0) return picketDirect4(ip);",
		"\tvar w = picketParse6(ip);",
		"\tif (w == null) return false;",
		"\tif (w[0] == 0 && w[1] == 0 && w[2] == 0 && w[3] == 0 && w[4] == 0 && w[5] == 65535)",
		"\t\treturn picketDirect4((w[6] >> 8) + \".\" + (w[6] & 255) + \".\" + (w[7] >> 8) + \".\" + (w[7] & 255));",
		"\treturn "+strings.Join(in6, " ||\n\t    ")+";",
		"}",
		"",
		"// picketDirect4 matches a dotted IPv4 address; anything else is not matched",
		"// (and never handed to isInNet, which would resolve it).",
		"function picketDirect4(ip) {",
		`	var m = /^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$/.exec(ip);`,
		"\tif (m == null || m[1] > 255 || m[2] > 255 || m[3] > 255 || m[4] > 255) return false;",
		"\treturn "+strings.Join(in4, " ||\n\t    ")+";",
		"}",
		"",
		"// picketIn6 reports whether the address w (8 16-bit words) is in the network",
		"// net (8 words, masked) of the given prefix length.",
		"function picketIn6(w, net, bits) {",
		"\tfor (var i = 0; i < 8 && bits > 0; i++, bits -= 16) {",
		"\t\tvar mask = bits >= 16 ? 65535 : (65535 << (16 - bits)) & 65535;",
		"\t\tif ((w[i] & mask) != net[i]) return false;",
		"\t}",
		"\treturn true;",
		"}",
		"",
		"// picketParse6 parses an IPv6 address into 8 16-bit words, or returns null.",
		"function picketParse6(s) {",
		`	var m = /^(.*:)([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$/.exec(s);`,
		"\tif (m != null) {",
		"\t\tif (m[2] > 255 || m[3] > 255 || m[4] > 255 || m[5] > 255) return null;",
		"\t\ts = m[1] + (m[2] * 256 + m[3] * 1).toString(16) + \":\" + (m[4] * 256 + m[5] * 1).toString(16);",
		"\t}",
		"\tvar halves = s.split(\"::\");",
		"\tif (halves.length > 2) return null;",
		"\tvar head = picketWords(halves[0]);",
		"\tif (head == null) return null;",
		"\tif (halves.length == 1) return head.length == 8 ? head : null;",
		"\tvar tail = picketWords(halves[1]);",
		"\tif (tail == null || head.length + tail.length > 7) return null;",
		"\twhile (head.length + tail.length < 8) head.push(0);",
		"\treturn head.concat(tail);",
		"}",
		"",
		"function picketWords(s) {",
		"\tif (s == \"\") return [];",
		"\tvar parts = s.split(\":\");",
		"\tfor (var i = 0; i < parts.length; i++) {",
		"\t\tif (!/^[0-9a-f]{1,4}$/.test(parts[i])) return null;",
		"\t\tparts[i] = parseInt(parts[i], 16);",
		"\t}",
		"\treturn parts;",
		"}")
}

// jsString quotes s as a JavaScript string literal. Go's JSON encoder
// escapes everything JavaScript needs, U+2028 and U+2029 included.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
