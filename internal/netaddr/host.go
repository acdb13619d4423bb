// Package netaddr reads hosts, ports and networks one way for all of
// Picket. The destination policy, the rules, the reputation canonicalizer,
// certificate minting, the PAC file, the transparent gateway and the feeds
// all ask it what a host means, so that no two of them read the same text as
// two different hosts: in a filtering proxy, that is how a block is bypassed.
//
// A host is read the way a browser reads the host of a URL (the WHATWG URL
// standard's host parser), which is also what inet_aton and the Safe
// Browsing canonicalization agree on:
//
//   - "[...]" and anything with a colon is an IPv6 address; an IPv4-mapped
//     one is the IPv4 address, and a zone (an interface name or number) is
//     dropped;
//   - percent-escapes are decoded (until none is left), after the brackets
//     and colons of an IPv6 address were seen as written;
//   - an international name becomes its punycode form (UTS #46 mapping,
//     non-transitional, with the Bidi rule);
//   - one trailing dot is dropped and names are lower case;
//   - a name whose last label is a number is an IPv4 address in any
//     spelling inet_aton accepts (decimal "2130706433", hex "0x7f.1", octal
//     "0177.0.0.1", short "127.1") or nothing at all;
//   - any other name must be a DNS name: labels of 1 to 63 letters, digits,
//     '-' or '_' (the underscore is not valid in host names but occurs in
//     real ones), 253 bytes in all. Empty labels ("a..b", ".a", "a..") make
//     it invalid.
//
// What the package refuses, every part of Picket refuses: the rules answer
// it with an error, the dialer does not resolve it, no certificate is minted
// for it.
package netaddr

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Errors, returned wrapped with the text and the reason.
var (
	// ErrInvalidHost is a host that is neither a DNS name nor an IP
	// address, or a host:port whose port is not one.
	ErrInvalidHost = errors.New("invalid host")
	// ErrInvalidPort is a port that is not a number from 1 to 65535.
	ErrInvalidPort = errors.New("invalid port")
)

// MaxHostLength bounds the text ParseHost looks at, in bytes: a DNS name is
// at most 253 bytes, written with percent-escapes or as Unicode at most a
// dozen times that.
const MaxHostLength = 253 * 12

// Host is a host as Picket reads it: a DNS name or an IP address. Exactly
// one of Name and Addr is set in a valid Host; the zero Host is invalid.
type Host struct {
	// Name is a DNS name in canonical form: lower-case ASCII (punycode for
	// an international name), no trailing dot. "" for an address.
	Name string
	// Addr is the address, IPv4-mapped IPv6 addresses unmapped, without a
	// zone. Invalid for a name.
	Addr netip.Addr
}

// IsValid reports whether h is a name or an address.
func (h Host) IsValid() bool { return h.Name != "" || h.Addr.IsValid() }

// IsAddr reports whether h is an IP address.
func (h Host) IsAddr() bool { return h.Addr.IsValid() }

// String returns the name, or the address ("192.0.2.1", "2001:db8::1");
// "" for the zero Host.
func (h Host) String() string {
	if h.Addr.IsValid() {
		return h.Addr.String()
	}
	return h.Name
}

// URLHost returns the host as written in a URL or a Host header: as String,
// with an IPv6 address in brackets.
func (h Host) URLHost() string {
	if h.Addr.Is6() {
		return "[" + h.Addr.String() + "]"
	}
	return h.String()
}

// idnaProfile maps international names for lookup as browsers do (UTS #46,
// non-transitional, the Bidi rule), but lets the underscore through: it
// occurs in real host names and the rest of the name check allows it.
var idnaProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.StrictDomainName(false), idna.Transitional(false))

// ParseHost reads a host without a port: a name, an IPv4 address in any
// spelling, or an IPv6 address with or without brackets (see the package
// comment for the rules). It does not allocate for a name or an address
// already in canonical form.
func ParseHost(s string) (Host, error) {
	switch {
	case s == "":
		return Host{}, invalid(s, "empty")
	case len(s) > MaxHostLength:
		return Host{}, invalid(s, fmt.Sprintf("longer than %d bytes", MaxHostLength))
	}
	in := s
	// Brackets and colons are syntax: only as written do they make an IPv6
	// address ("%5B::1%5D" is no host, as for a browser).
	if s[0] == '[' {
		if s[len(s)-1] != ']' {
			return Host{}, invalid(in, "an IPv6 address in brackets without its ]")
		}
		return parseIPv6(in, s[1:len(s)-1])
	}
	if strings.IndexByte(s, ':') >= 0 {
		return parseIPv6(in, s)
	}
	if strings.IndexByte(s, '%') >= 0 {
		s = Unescape(s)
	}
	if !isASCII(s) {
		if !utf8.ValidString(s) { // idna would pass the bytes through
			return Host{}, invalid(in, "not UTF-8")
		}
		a, err := idnaProfile.ToASCII(s)
		if err != nil {
			return Host{}, invalid(in, "not a valid international name")
		}
		s = a
	}
	if s != "" && s[len(s)-1] == '.' { // IDN mapping may leave nothing ("\ufe0c")
		s = s[:len(s)-1]
	}
	if s == "" {
		return Host{}, invalid(in, "empty")
	}
	s = LowerASCII(s)
	if endsInNumber(s) {
		a, ok := parseIPv4(s)
		if !ok {
			return Host{}, invalid(in, "ends in a number but is not an IPv4 address")
		}
		return Host{Addr: a}, nil
	}
	if reason := checkName(s); reason != "" {
		return Host{}, invalid(in, reason)
	}
	return Host{Name: s}, nil
}

// ParseHostPort reads "host", "host:port", "[v6]", "[v6]:port" or a bare
// IPv6 address. The port is 0 when there is none or it is empty ("host:",
// as RFC 3986 allows); a port given must be a decimal number from 1 to
// 65535.
func ParseHostPort(s string) (Host, uint16, error) {
	host, port, err := SplitHostPort(s)
	if err != nil {
		return Host{}, 0, err
	}
	var p uint16
	if port != "" {
		if p, err = ParsePort(port); err != nil {
			return Host{}, 0, fmt.Errorf("%w: %w", ErrInvalidHost, err)
		}
	}
	h, err := ParseHost(host)
	if err != nil {
		return Host{}, 0, err
	}
	return h, p, nil
}

// SplitHostPort splits s into its host and port text without reading
// either: "name:port" and "v4:port" at the colon, "[v6]:port" after the
// bracket (the host keeps its brackets, so that ParseHost knows it must be
// IPv6), and a bare IPv6 address (two colons or more) is all host. The port
// is "" when s has none. It fails only on a '[' without its ']' or text
// after the ']' that is not ":port".
func SplitHostPort(s string) (host, port string, err error) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", invalid(s, "an IPv6 address in brackets without its ]")
		}
		switch rest := s[end+1:]; {
		case rest == "":
			return s, "", nil
		case rest[0] == ':':
			return s[:end+1], rest[1:], nil
		}
		return "", "", invalid(s, "text after the ]")
	}
	i := strings.IndexByte(s, ':')
	if i < 0 || strings.IndexByte(s[i+1:], ':') >= 0 {
		return s, "", nil // no port, or a bare IPv6 address
	}
	return s[:i], s[i+1:], nil
}

// parseIPv6 reads the IPv6 address s (in of the error messages), its
// escapes decoded first: "%25" is how a URL writes the '%' of a zone, and
// the reputation canonicalizer decodes "%31" too.
func parseIPv6(in, s string) (Host, error) {
	if strings.IndexByte(s, '%') >= 0 {
		s = Unescape(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() {
		return Host{}, invalid(in, "not an IPv6 address")
	}
	if !validZone(a.Zone()) {
		return Host{}, invalid(in, "not an interface name or number after the %")
	}
	return Host{Addr: a.WithZone("").Unmap()}, nil
}

// validZone accepts what an IPv6 zone names, an interface or its number:
// letters, digits, '-', '_' and '.' ("" is no zone).
func validZone(z string) bool {
	for i := 0; i < len(z); i++ {
		c := z[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// checkName returns why the lower-case name is not a DNS name, or "".
func checkName(name string) string {
	if len(name) > 253 {
		return "longer than 253 bytes"
	}
	label := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '.':
			if label == 0 {
				return "empty label"
			}
			label = 0
			continue
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return fmt.Sprintf("character %q not allowed", c)
		}
		label++
		if label > 63 {
			return "label longer than 63 bytes"
		}
	}
	if label == 0 {
		return "empty label"
	}
	return ""
}

// invalid is the error for host s: ErrInvalidHost with s (cut to 80 bytes)
// and the reason.
func invalid(s, reason string) error {
	const max = 80
	if len(s) > max {
		s = s[:max] + "…"
	}
	return fmt.Errorf("%w %q: %s", ErrInvalidHost, s, reason)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// LowerASCII lowers A-Z only, as names compare, without allocating when
// there is none; strings.ToLower would also turn invalid UTF-8 into U+FFFD.
func LowerASCII(s string) string {
	i := 0
	for i < len(s) && !('A' <= s[i] && s[i] <= 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if 'A' <= b[i] && b[i] <= 'Z' {
			b[i] += 'a' - 'A'
		}
	}
	return string(b)
}
