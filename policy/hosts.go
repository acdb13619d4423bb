package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"
)

// HostSet is a compiled list of host patterns. It is immutable and safe for
// concurrent use. The zero HostSet and a nil *HostSet match nothing.
//
// A pattern is one of:
//
//	example.com        the host itself, nothing else
//	*.example.com      any subdomain of example.com, at any depth; not example.com itself
//	192.0.2.7, ::1     an IP address
//	10.0.0.0/8, fc00::/7  an IP network (CIDR)
//
// Names are case-insensitive, a trailing dot is ignored and international
// names are compared in their punycode (A-label) form. Patterns carry no
// port; the host given to Match may.
type HostSet struct {
	exact    map[string]struct{}     // "example.com"
	suffixes map[string]struct{}     // "example.com" for "*.example.com"
	addrs    map[netip.Addr]struct{} // single addresses
	prefixes []netip.Prefix          // networks, masked
	n        int
}

// idnaProfile maps international names for lookup like a browser does, but
// lets underscores through: they occur in real host names.
var idnaProfile = idna.New(idna.MapForLookup(), idna.StrictDomainName(false), idna.Transitional(false))

// CompileHosts compiles patterns into a HostSet. The error names every bad
// pattern. Duplicates are allowed.
func CompileHosts(patterns []string) (*HostSet, error) {
	s := &HostSet{}
	var errs []error
	for _, p := range patterns {
		if err := s.add(p); err != nil {
			errs = append(errs, fmt.Errorf("host pattern %q: %w", p, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// MustCompileHosts is CompileHosts that panics on error, for tests and
// package-level variables.
func MustCompileHosts(patterns ...string) *HostSet {
	s, err := CompileHosts(patterns)
	if err != nil {
		panic(err)
	}
	return s
}

func (s *HostSet) add(pattern string) error {
	p := strings.TrimSpace(pattern)
	if p == "" {
		return errors.New("empty pattern")
	}
	if strings.Contains(p, "/") {
		pre, err := netip.ParsePrefix(strings.Trim(p, "[]"))
		if err != nil {
			return fmt.Errorf("invalid network (want e.g. 10.0.0.0/8 or fc00::/7)")
		}
		if pre.Addr().Zone() != "" {
			return errors.New("network with a zone")
		}
		pre = unmapPrefix(pre).Masked()
		s.prefixes = append(s.prefixes, pre)
		s.n++
		return nil
	}
	if a, ok := parseAddr(p); ok {
		if s.addrs == nil {
			s.addrs = make(map[netip.Addr]struct{})
		}
		s.addrs[a] = struct{}{}
		s.n++
		return nil
	}
	if strings.ContainsAny(p, ":[]") {
		return errors.New("patterns carry no port; write the host only (IPv6 addresses without brackets)")
	}
	wild := false
	if strings.HasPrefix(p, "*.") {
		wild = true
		p = p[2:]
	}
	if strings.Contains(p, "*") {
		return errors.New(`a wildcard is only allowed as a whole first label ("*.example.com")`)
	}
	name, ok := normalizeName(p)
	if !ok {
		return errors.New("invalid host name")
	}
	if wild {
		if _, isIP := parseAddr(name); isIP {
			return errors.New("a wildcard cannot precede an IP address")
		}
		if s.suffixes == nil {
			s.suffixes = make(map[string]struct{})
		}
		s.suffixes[name] = struct{}{}
	} else {
		if s.exact == nil {
			s.exact = make(map[string]struct{})
		}
		s.exact[name] = struct{}{}
	}
	s.n++
	return nil
}

// Len returns the number of patterns compiled, duplicates included.
func (s *HostSet) Len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// Match reports whether host matches one of the patterns. Host is written as
// in a URL or a CONNECT target: a name or an IP address, optionally with a
// port ("example.com:443", "[2001:db8::1]:443"). A host that is not a valid
// name or address matches nothing.
//
// Match compares names and literal addresses as written; it does not resolve
// names. Network policy on resolved addresses belongs in the dialer.
func (s *HostSet) Match(host string) bool {
	if s == nil || s.n == 0 {
		return false
	}
	h := stripPort(host)
	if a, ok := parseAddr(h); ok {
		return s.matchAddr(a)
	}
	if len(s.exact) == 0 && len(s.suffixes) == 0 {
		return false
	}
	name, ok := normalizeName(h)
	if !ok {
		return false
	}
	return s.matchName(name)
}

// target is a host already normalized by parseTarget, so that many sets can
// be matched against it without normalizing it again.
type target struct {
	name  string     // normalized name; "" for an address or an invalid host
	addr  netip.Addr // valid for an address
	valid bool
}

func parseTarget(host string) target {
	h := stripPort(host)
	if a, ok := parseAddr(h); ok {
		return target{addr: a, valid: true}
	}
	name, ok := normalizeName(h)
	return target{name: name, valid: ok}
}

// key is the target's canonical text: the name or the address.
func (t target) key() string {
	if t.addr.IsValid() {
		return t.addr.String()
	}
	return t.name
}

func (s *HostSet) matchTarget(t target) bool {
	switch {
	case s == nil || !t.valid:
		return false
	case t.addr.IsValid():
		return s.matchAddr(t.addr)
	}
	return s.matchName(t.name)
}

// MatchAddr reports whether the address matches an address or network
// pattern.
func (s *HostSet) MatchAddr(a netip.Addr) bool {
	if s == nil {
		return false
	}
	return s.matchAddr(a.Unmap().WithZone(""))
}

func (s *HostSet) matchAddr(a netip.Addr) bool {
	if _, ok := s.addrs[a]; ok {
		return true
	}
	for _, p := range s.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// matchName matches a normalized name: the exact map first, then each proper
// suffix after a dot against the wildcard map.
func (s *HostSet) matchName(name string) bool {
	if _, ok := s.exact[name]; ok {
		return true
	}
	if len(s.suffixes) == 0 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			if _, ok := s.suffixes[name[i+1:]]; ok {
				return true
			}
		}
	}
	return false
}

// stripPort removes a ":port" and IPv6 brackets. A bare IPv6 address (more
// than one colon, no brackets) is returned as is.
func stripPort(h string) string {
	if len(h) > 0 && h[0] == '[' {
		if i := strings.IndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
		return h
	}
	i := strings.IndexByte(h, ':')
	if i < 0 {
		return h
	}
	if strings.IndexByte(h[i+1:], ':') >= 0 {
		return h // bare IPv6
	}
	return h[:i]
}

// parseAddr parses an IP address, with or without brackets; IPv4-mapped
// IPv6 addresses become IPv4, zones are dropped.
func parseAddr(h string) (netip.Addr, bool) {
	if h == "" {
		return netip.Addr{}, false
	}
	// Only try to parse what can be an address: parse errors allocate.
	if last := h[len(h)-1]; strings.IndexByte(h, ':') < 0 && !(last >= '0' && last <= '9') {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(strings.Trim(h, "[]"))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

// normalizeName lower-cases name, drops one trailing dot, converts an
// international name to punycode and checks the result is a plausible DNS
// name (letters, digits, '-', '_', non-empty labels up to 63 bytes, at most
// 253 bytes). It does not allocate for a name already in normal form.
func normalizeName(name string) (string, bool) {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253*4 {
		return "", false
	}
	ascii, lower := true, true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 0x80 {
			ascii = false
			break
		}
		if c >= 'A' && c <= 'Z' {
			lower = false
		}
	}
	switch {
	case !ascii:
		n, err := idnaProfile.ToASCII(name)
		if err != nil {
			return "", false
		}
		name = strings.TrimSuffix(n, ".")
	case !lower:
		name = strings.ToLower(name)
	}
	if !validName(name) {
		return "", false
	}
	return name, true
}

func validName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
			continue
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
		label++
		if label > 63 {
			return false
		}
	}
	return label > 0
}
