package netaddr

import (
	"fmt"
	"strconv"
	"strings"
)

// ParsePort reads a TCP port: a decimal number from 1 to 65535.
func ParsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%w %q: want 1-65535", ErrInvalidPort, s)
	}
	return uint16(n), nil
}

// PortRange is an inclusive range of TCP ports.
type PortRange struct{ Lo, Hi uint16 }

// Contains reports whether port is in r.
func (r PortRange) Contains(port uint16) bool { return r.Lo <= port && port <= r.Hi }

// ParsePortRange reads "443" or "1024-65535" (spaces around it allowed).
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, found := strings.Cut(strings.TrimSpace(s), "-")
	if !found {
		hi = lo
	}
	l, err1 := ParsePort(lo)
	h, err2 := ParsePort(hi)
	if err1 != nil || err2 != nil || l > h {
		return PortRange{}, fmt.Errorf("invalid port or port range %q", s)
	}
	return PortRange{l, h}, nil
}
