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
	"time"

	"github.com/picket-proxy/picket/internal/netaddr"
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
// under: host (which may carry a port) as every part of Picket reads it
// (internal/netaddr) — a lower-case punycode name without the trailing
// dot, or an IP address in canonical form (zone dropped, IPv4-mapped IPv6
// unmapped, any IPv4 spelling as its dotted quad), with ip set for it.
func normalizeHost(host string) (name string, ip netip.Addr, err error) {
	h, _, err := netaddr.ParseHostPort(host)
	if err != nil {
		return "", netip.Addr{}, fmt.Errorf("%w: %w", ErrInvalidHost, err)
	}
	return h.String(), h.Addr, nil
}
