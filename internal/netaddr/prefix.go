package netaddr

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ParsePrefix reads a network ("10.0.0.0/8", "fc00::/7") or a single
// address, which stands for itself (/32 or /128), as written in
// configuration and feeds: addresses in their standard form only (no
// "10.1/16"). The host bits are cleared; an IPv4-mapped IPv6 network of /96
// or longer is the IPv4 network it maps (so that it matches IPv4
// addresses); a shorter one, and a zone, are errors.
func ParsePrefix(s string) (netip.Prefix, error) {
	t := strings.TrimSpace(s)
	if !strings.Contains(t, "/") {
		a, err := netip.ParseAddr(t)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid address %q", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("invalid address %q: a zone", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(t)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid network %q", s)
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("invalid network %q: %w", s, errMappedShort)
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

var errMappedShort = errors.New("an IPv4-mapped network shorter than /96 is not an IPv4 network")
