package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/picket-proxy/picket/internal/netaddr"
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
// Patterns and hosts are read as every part of Picket reads hosts
// (internal/netaddr): names are case-insensitive, a trailing dot is ignored,
// international names are compared in their punycode (A-label) form, and an
// IPv4 address may be spelled any way a browser accepts ("0x7f.1").
// Patterns carry no port; the host given to Match may.
type HostSet struct {
	exact    map[string]struct{}     // "example.com"
	suffixes map[string]struct{}     // "example.com" for "*.example.com"
	addrs    map[netip.Addr]struct{} // single addresses
	prefixes []netip.Prefix          // networks, masked
	n        int
}

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
		pre, err := netaddr.ParsePrefix(strings.Trim(p, "[]"))
		if err != nil {
			return fmt.Errorf("invalid network (want e.g. 10.0.0.0/8 or fc00::/7): %w", err)
		}
		s.prefixes = append(s.prefixes, pre)
		s.n++
		return nil
	}
	wild := strings.HasPrefix(p, "*.")
	if wild {
		p = p[2:]
	}
	if strings.Contains(p, "*") {
		return errors.New(`a wildcard is only allowed as a whole first label ("*.example.com")`)
	}
	h, err := netaddr.ParseHost(p)
	switch {
	case err != nil && strings.ContainsAny(p, ":[]"):
		return errors.New("patterns carry no port; write the host only (IPv6 addresses without brackets)")
	case err != nil:
		return errors.New("invalid host name")
	case h.IsAddr() && wild:
		return errors.New("a wildcard cannot precede an IP address")
	case h.IsAddr():
		if s.addrs == nil {
			s.addrs = make(map[netip.Addr]struct{})
		}
		s.addrs[h.Addr] = struct{}{}
	case wild:
		if s.suffixes == nil {
			s.suffixes = make(map[string]struct{})
		}
		s.suffixes[h.Name] = struct{}{}
	default:
		if s.exact == nil {
			s.exact = make(map[string]struct{})
		}
		s.exact[h.Name] = struct{}{}
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
// port ("example.com:443", "[2001:db8::1]:443"), read as every part of
// Picket reads it (netaddr: "0x7f.1" is 127.0.0.1). A host that is not a
// valid name or address matches nothing.
//
// Match compares names and literal addresses as written; it does not resolve
// names. Network policy on resolved addresses belongs in the dialer.
func (s *HostSet) Match(host string) bool {
	if s == nil || s.n == 0 {
		return false
	}
	return s.matchTarget(parseTarget(host))
}

// target is a host already read by parseTarget, so that many sets can be
// matched against it without reading it again; the zero target is invalid.
type target struct{ netaddr.Host }

func parseTarget(host string) target {
	h, _, err := netaddr.ParseHostPort(host)
	if err != nil {
		return target{}
	}
	return target{h}
}

// valid reports whether the target is a name or an address.
func (t target) valid() bool { return t.IsValid() }

// key is the target's canonical text: the name or the address.
func (t target) key() string { return t.String() }

func (s *HostSet) matchTarget(t target) bool {
	switch {
	case s == nil || !t.valid():
		return false
	case t.IsAddr():
		return s.matchAddr(t.Addr)
	}
	return s.matchName(t.Name)
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
