package proxy

import (
	"errors"
	"net/netip"
	"sync"
	"syscall"

	"github.com/picket-proxy/picket/internal/netaddr"
)

// PortRange is an inclusive range of TCP ports (netaddr.ParsePortRange
// reads "443" or "1024-65535").
type PortRange = netaddr.PortRange

// defaultConnectPorts are the ports CONNECT may reach unless configured.
var defaultConnectPorts = []PortRange{{Lo: 80, Hi: 80}, {Lo: 443, Hi: 443}, {Lo: 8080, Hi: 8080}, {Lo: 8443, Hi: 8443}}

// builtinDeny are the destinations never dialled unless explicitly allowed:
// loopback, link-local (cloud metadata 169.254.169.254), unspecified,
// multicast and broadcast.
var builtinDeny = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("ff00::/8"),
	netip.MustParsePrefix("255.255.255.255/32"),
}

// privateRanges are the intranet ranges, allowed unless
// DenyPrivateDestinations.
var privateRanges = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("fc00::/7"),
}

// destinations decides where the proxy may connect. It is checked on the
// address actually dialled (a net.Dialer Control hook), so that names that
// resolve to forbidden addresses (DNS rebinding) and odd IP spellings
// cannot get around it.
type destinations struct {
	deny, allow []netip.Prefix
	ports       []PortRange
	block       AddressBlocker // Config.BlockAddresses

	mu   sync.RWMutex
	self map[uint16]bool // ports of our own listeners (proxy, admin)
}

func newDestinations(cfg *Config) *destinations {
	d := &destinations{allow: cfg.AllowDestinations, ports: cfg.ConnectPorts, block: cfg.BlockAddresses, self: make(map[uint16]bool)}
	d.deny = append(append([]netip.Prefix{}, builtinDeny...), cfg.DenyDestinations...)
	if cfg.DenyPrivateDestinations {
		d.deny = append(d.deny, privateRanges...)
	}
	if len(d.ports) == 0 {
		d.ports = defaultConnectPorts
	}
	return d
}

// errDenied is the error of a refused destination.
type errDenied struct {
	addr   string
	reason string
}

func (e *errDenied) Error() string { return "destination " + e.addr + " not allowed: " + e.reason }

// AddressBlocker refuses destination addresses. Blocked is asked about
// every address about to be dialled, in the dialer: it must be fast and
// must not block. Version changes whenever Blocked's answers may have
// changed: upstream connections kept open for reuse are then checked again
// before they carry another request (tunnels already open run on, like a
// firewall's established connections).
type AddressBlocker interface {
	Blocked(ip netip.Addr) (Decision, bool)
	Version() uint64
}

// errListed is the error of a destination a threat feed lists: the
// request is blocked with the decision, not failed.
type errListed struct {
	addr     string
	decision Decision
}

func (e *errListed) Error() string {
	return "destination " + e.addr + " blocked: " + blockReason(e.decision)
}

// listed returns the decision of a dial refused by BlockAddress.
func listed(err error) (Decision, bool) {
	if err == nil {
		return Decision{}, false // every request and tunnel asks: no allocation for errors.As's target then
	}
	var l *errListed
	if errors.As(err, &l) {
		return l.decision, true
	}
	return Decision{}, false
}

// protect adds one of our own listening ports: no request may be sent to it
// on a local address, whatever the allow lists say (no loops, no admin API
// through the proxy).
func (d *destinations) protect(port uint16) {
	d.mu.Lock()
	d.self[port] = true
	d.mu.Unlock()
}

// check decides on an address about to be dialled. The zone of an IPv6
// address is dropped: netip.Prefix.Contains is false for an address with a
// zone, which let fe80::1%eth0 past the link-local deny.
func (d *destinations) check(ap netip.AddrPort) error {
	ip := ap.Addr().Unmap().WithZone("")
	d.mu.RLock()
	self := d.self[ap.Port()]
	d.mu.RUnlock()
	if self && (ip.IsLoopback() || ip.IsUnspecified() || isLocalIP(ip)) {
		return &errDenied{ap.String(), "that is this proxy itself"}
	}
	if err := d.checkIP(ap, ip); err != nil {
		return err
	}
	// An IPv6 address a translator or relay turns into an IPv4 one
	// reaches that IPv4 address: it must pass as that address too, or
	// 64:ff9b::a00:1 would open 10.0.0.1 to a proxy that denies the
	// intranet, and 2002:7f00:1:: a loopback.
	if v4, ok := embeddedIPv4(ip); ok {
		return d.checkIP(ap, v4)
	}
	return nil
}

// checkIP is check's verdict on ip, an address dialling ap reaches.
func (d *destinations) checkIP(ap netip.AddrPort, ip netip.Addr) error {
	// Threat feeds' address lists apply whatever the allow list says: it
	// opens internal ranges, not listed ones.
	if d.block != nil {
		if dec, ok := d.block.Blocked(ip); ok {
			return &errListed{ap.String(), dec}
		}
	}
	for _, p := range d.allow {
		if p.Contains(ip) {
			return nil
		}
	}
	for _, p := range d.deny {
		if p.Contains(ip) {
			return &errDenied{ap.String(), "internal or special-purpose address"}
		}
	}
	return nil
}

// embeddedIPv4 returns the IPv4 address an IPv6 address stands for where
// the network in between translates or tunnels it without asking: the
// NAT64 well-known prefix 64:ff9b::/96 (RFC 6052: the last 32 bits) and
// 6to4's 2002::/16 (RFC 3056: the 32 bits after the prefix). Operators'
// own NAT64 prefixes (64:ff9b:1::/48 and others) place the address where
// their configuration says; list them in deny_destinations.
func embeddedIPv4(ip netip.Addr) (netip.Addr, bool) {
	if !ip.Is6() { // IPv4, or IPv4-mapped IPv6: check has unmapped those
		return netip.Addr{}, false
	}
	b := ip.As16()
	switch {
	case nat64WellKnown.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case b[0] == 0x20 && b[1] == 0x02:
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

// nat64WellKnown is NAT64's well-known prefix (RFC 6052).
var nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96")

// connectPortAllowed reports whether CONNECT may reach port.
func (d *destinations) connectPortAllowed(port string) bool {
	p, err := netaddr.ParsePort(port)
	if err != nil {
		return false
	}
	for _, r := range d.ports {
		if r.Contains(p) {
			return true
		}
	}
	return false
}

// control is the net.Dialer Control hook.
func (d *destinations) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &errDenied{address, "unparsable address"}
	}
	return d.check(ap)
}

// normalizeHost returns host (without a port) as every part of Picket
// reads it (netaddr.ParseHost), so that it is dialled and checked as that:
// an IPv4 address in any spelling ("2130706433", "0x7f.1", "0177.0.0.1",
// "127.1") as its dotted quad instead of a name sent to DNS, an IPv6
// address without brackets (an IPv4-mapped one as IPv4), a name in lower
// case and punycode, percent-escapes decoded. A host that is neither is
// returned unchanged: the rules refuse it before any dial, and the resolver
// would.
func normalizeHost(host string) string {
	h, err := netaddr.ParseHost(host)
	if err != nil {
		return host
	}
	return h.String()
}

// isDenied reports whether err is a refused destination.
func isDenied(err error) (*errDenied, bool) {
	var d *errDenied
	ok := errors.As(err, &d)
	return d, ok
}
