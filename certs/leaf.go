package certs

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// ErrInvalidHost means a host name is neither a valid IP address nor a valid
// DNS name, so no certificate can be minted for it.
var ErrInvalidHost = errors.New("certs: invalid host name")

// maxCommonName is the upper bound of a subject common name (RFC 5280,
// ub-common-name). Longer DNS names are carried by the SAN alone.
const maxCommonName = 64

// mint signs a new leaf for name (an IP address when ip is valid) at time
// now and returns it as a cache entry.
func (a *Authority) mint(name string, ip netip.Addr, now time.Time) (*entry, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{a.cfg.Organization}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(a.cfg.LeafValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if len(name) <= maxCommonName {
		tmpl.Subject.CommonName = name
	}
	if ip.IsValid() {
		tmpl.IPAddresses = []net.IP{ip.AsSlice()}
	} else {
		tmpl.DNSNames = []string{name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.ca, &a.leafKey.PublicKey, a.caKey)
	if err != nil {
		return nil, fmt.Errorf("certs: signing leaf for %s: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: parsing leaf for %s: %w", name, err)
	}
	a.mints.Add(1)
	chain := make([][]byte, 0, 1+len(a.chain))
	chain = append(chain, der)
	chain = append(chain, a.chain...)
	return &entry{
		cert:      &tls.Certificate{Certificate: chain, PrivateKey: a.leafKey, Leaf: leaf},
		notBefore: leaf.NotBefore,
		renewAt:   leaf.NotAfter.Add(-a.cfg.RenewBefore),
	}, nil
}

// normalizeHost returns the name a certificate for host is minted and cached
// under: any port removed, a trailing dot dropped, lower-cased, and IP
// addresses in canonical form (zone dropped, IPv4-mapped IPv6 unmapped),
// with ip set for them.
func normalizeHost(host string) (name string, ip netip.Addr, err error) {
	invalid := func(reason string) (string, netip.Addr, error) {
		const max = 80
		h := host
		if len(h) > max {
			h = h[:max] + "…"
		}
		return "", netip.Addr{}, fmt.Errorf("%w %q: %s", ErrInvalidHost, h, reason)
	}
	h := host
	switch {
	case strings.HasPrefix(h, "["): // "[v6]" or "[v6]:port"
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return invalid("missing ]")
		}
		if rest := h[end+1:]; rest != "" && (rest[0] != ':' || !validPort(rest[1:])) {
			return invalid("bad port")
		}
		addr, err := netip.ParseAddr(h[1:end])
		if err != nil || !addr.Is6() {
			return invalid("not an IPv6 address in brackets")
		}
		return canonicalIP(addr)
	case strings.Count(h, ":") == 1: // "name:port" or "v4:port"
		i := strings.IndexByte(h, ':')
		if !validPort(h[i+1:]) {
			return invalid("bad port")
		}
		h = h[:i]
	case strings.Contains(h, ":"): // a bare IPv6 address
		addr, err := netip.ParseAddr(h)
		if err != nil {
			return invalid("not an IPv6 address")
		}
		return canonicalIP(addr)
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		return invalid("empty")
	}
	if endsInNumber(h) {
		// WHATWG URL parsing treats such a host as IPv4 ("127.1" is
		// 127.0.0.1), so it is an IPv4 address or nothing.
		addr, err := netip.ParseAddr(h)
		if err != nil || !addr.Is4() {
			return invalid("ends in a number but is not an IPv4 address")
		}
		return canonicalIP(addr)
	}
	h = strings.ToLower(h)
	if reason := checkDNSName(h); reason != "" {
		return invalid(reason)
	}
	return h, netip.Addr{}, nil
}

// canonicalIP returns the cache name of addr and addr itself, without zone
// and with IPv4-mapped IPv6 addresses turned into IPv4.
func canonicalIP(addr netip.Addr) (string, netip.Addr, error) {
	addr = addr.WithZone("").Unmap()
	return addr.String(), addr, nil
}

// validPort reports whether s is a decimal port number from 1 to 65535.
func validPort(s string) bool {
	if s == "" || len(s) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n >= 1 && n <= 65535
}

// endsInNumber reports whether the last label of name is all decimal digits.
func endsInNumber(name string) bool {
	last := name[strings.LastIndexByte(name, '.')+1:]
	if last == "" {
		return false
	}
	for i := 0; i < len(last); i++ {
		if last[i] < '0' || last[i] > '9' {
			return false
		}
	}
	return true
}

// checkDNSName returns why the lower-case name is not a valid DNS name, or
// "" when it is. Labels are 1 to 63 bytes of a-z, 0-9, '-' and '_' (the
// underscore is not valid in host names but is common in practice, and Go's
// verifier accepts it); the whole name is at most 253 bytes. Internationalized
// names must arrive in their ASCII (punycode) form, as clients send them.
func checkDNSName(name string) string {
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
