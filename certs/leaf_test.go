package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

var (
	oidAuthorityInfoAccess = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 1}
	oidCRLDistribution     = asn1.ObjectIdentifier{2, 5, 29, 31}
)

func TestLeafNames(t *testing.T) {
	a := newAuthority(t, Config{})
	tests := []struct {
		host    string
		wantDNS string // the DNS SAN, or "" for an IP
		wantIP  string // the IP SAN, or "" for a name
	}{
		{"example.com", "example.com", ""},
		{"Example.COM:443", "example.com", ""},
		{"www.example.com.", "www.example.com", ""},
		{"under_score.example.com", "under_score.example.com", ""},
		{"xn--bcher-kva.example", "xn--bcher-kva.example", ""},
		{"localhost", "localhost", ""},
		{"1password.com", "1password.com", ""},
		{"192.0.2.7", "", "192.0.2.7"},
		{"192.0.2.7:8443", "", "192.0.2.7"},
		{"::1", "", "::1"},
		{"[2001:db8::1]:443", "", "2001:db8::1"},
		{"[2001:DB8::1]", "", "2001:db8::1"},
		{"::ffff:10.0.0.1", "", "10.0.0.1"},
		{"fe80::1%eth0", "", "fe80::1"},
		// Read as every part of Picket reads hosts (internal/netaddr), so
		// that a certificate is minted for the host the rules and the dialer
		// act on: these three were refused before.
		{"bücher.example", "xn--bcher-kva.example", ""},
		{"127.1", "", "127.0.0.1"},
		{"example.com:", "example.com", ""},
		{"0x7f.1:443", "", "127.0.0.1"},
		{"%65xample.com", "example.com", ""},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			cert, err := a.Leaf(tc.host)
			if err != nil {
				t.Fatalf("Leaf: %v", err)
			}
			leaf := cert.Leaf
			if leaf == nil {
				t.Fatal("tls.Certificate.Leaf: got nil, want the parsed leaf")
			}
			name := tc.wantDNS
			if tc.wantDNS != "" {
				if got := leaf.DNSNames; len(got) != 1 || got[0] != tc.wantDNS || len(leaf.IPAddresses) != 0 {
					t.Errorf("SANs: got DNS %q IP %v, want DNS [%s] only", got, leaf.IPAddresses, tc.wantDNS)
				}
			} else {
				name = tc.wantIP
				want := net.ParseIP(tc.wantIP)
				if got := leaf.IPAddresses; len(got) != 1 || !got[0].Equal(want) || len(leaf.DNSNames) != 0 {
					t.Errorf("SANs: got IP %v DNS %q, want IP [%s] only", got, leaf.DNSNames, tc.wantIP)
				}
			}
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: rootPool(a)}); err != nil {
				t.Errorf("Verify(%s): got %v, want nil", name, err)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "other.invalid", Roots: rootPool(a)}); err == nil {
				t.Errorf("Verify(other.invalid): got nil, want a name mismatch")
			}
		})
	}
}

func TestLeafProperties(t *testing.T) {
	clk := newClock()
	a := newAuthority(t, Config{Now: clk.Now})
	cert, err := a.Leaf("example.com")
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	now := clk.Now()

	if got, want := leaf.NotBefore, now.Add(-time.Hour); !got.Equal(want) {
		t.Errorf("NotBefore: got %v, want %v", got, want)
	}
	if got, want := leaf.NotAfter, now.Add(DefaultLeafValidity); !got.Equal(want) {
		t.Errorf("NotAfter: got %v, want %v", got, want)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: rootPool(a), CurrentTime: now}); err != nil {
		t.Errorf("Verify at the clock's time: got %v, want nil", err)
	}
	if got, want := leaf.KeyUsage, x509.KeyUsageDigitalSignature; got != want {
		t.Errorf("KeyUsage: got %b, want %b", got, want)
	}
	if got := leaf.ExtKeyUsage; len(got) != 1 || got[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("ExtKeyUsage: got %v, want [ServerAuth]", got)
	}
	if leaf.IsCA {
		t.Errorf("IsCA: got true, want false")
	}
	if len(leaf.OCSPServer)+len(leaf.IssuingCertificateURL)+len(leaf.CRLDistributionPoints) != 0 {
		t.Errorf("AIA/CRL: got OCSP %v, issuer %v, CRL %v, want none",
			leaf.OCSPServer, leaf.IssuingCertificateURL, leaf.CRLDistributionPoints)
	}
	for _, ext := range leaf.Extensions {
		if ext.Id.Equal(oidAuthorityInfoAccess) || ext.Id.Equal(oidCRLDistribution) {
			t.Errorf("extension %v: got present, want absent", ext.Id)
		}
	}
	if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 128 || leaf.SerialNumber.BitLen() < 64 {
		t.Errorf("serial: got %x (%d bits), want positive, random, at most 128 bits", leaf.SerialNumber, leaf.SerialNumber.BitLen())
	}
	key, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		t.Fatalf("leaf key: got %T, want ECDSA P-256", cert.PrivateKey)
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		t.Errorf("leaf key: got a key that does not match the certificate")
	}
	if got, want := len(cert.Certificate), 2; got != want {
		t.Fatalf("chain length: got %d, want %d", got, want)
	}
	if got, want := string(cert.Certificate[1]), string(a.CertDER()); got != want {
		t.Errorf("chain[1]: got a certificate other than the CA")
	}

	other, err := a.Leaf("example.net")
	if err != nil {
		t.Fatal(err)
	}
	if other.Leaf.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Errorf("serials of two leaves: got both %x, want different", leaf.SerialNumber)
	}
}

func TestLeafValidityConfigurable(t *testing.T) {
	clk := newClock()
	a := newAuthority(t, Config{Now: clk.Now, LeafValidity: 24 * time.Hour})
	cert, err := a.Leaf("example.com")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cert.Leaf.NotAfter.Sub(cert.Leaf.NotBefore), 25*time.Hour; got != want {
		t.Errorf("NotAfter-NotBefore: got %v, want %v", got, want)
	}
}

func TestLeafLongNameHasNoCommonName(t *testing.T) {
	a := newAuthority(t, Config{})
	host := strings.Repeat("a", 63) + "." + strings.Repeat("b", 20) + ".example"
	cert, err := a.Leaf(host)
	if err != nil {
		t.Fatal(err)
	}
	if got := cert.Leaf.Subject.CommonName; got != "" {
		t.Errorf("CN: got %q, want empty for a %d-byte name", got, len(host))
	}
	if got := cert.Leaf.DNSNames; len(got) != 1 || got[0] != host {
		t.Errorf("DNS SAN: got %q, want [%s]", got, host)
	}
}

func TestLeafInvalidHosts(t *testing.T) {
	a := newAuthority(t, Config{})
	tests := []struct{ name, host string }{
		{"empty", ""},
		{"only a dot", "."},
		{"only a port", ":443"},
		{"empty label", "a..example.com"},
		{"leading dot", ".example.com"},
		{"two trailing dots", "example.com.."},
		{"space", "exa mple.com"},
		{"wildcard", "*.example.com"},
		{"slash", "example.com/path"},
		{"NUL", "example\x00.com"},
		{"label of 64 bytes", strings.Repeat("a", 64) + ".example"},
		{"name of 254 bytes", strings.Repeat("abcdefghi.", 25) + "abcd"},
		{"numeric TLD", "example.123"},
		{"hex TLD", "example.0x1"},
		{"IPv4 with five parts", "1.2.3.4.5"},
		{"IPv4 out of range", "256.1.1.1"},
		{"port zero", "example.com:0"},
		{"port too large", "example.com:65536"},
		{"named port", "example.com:https"},
		{"unclosed bracket", "[::1"},
		{"junk after bracket", "[::1]x"},
		{"IPv4 in brackets", "[192.0.2.1]:443"},
		{"bad IPv6", "2001:db8::g"},
		{"huge", strings.Repeat("x", 10000)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cert, err := a.Leaf(tc.host)
			if !errors.Is(err, ErrInvalidHost) {
				t.Fatalf("Leaf(%q): got %v, %v, want ErrInvalidHost", tc.host, cert, err)
			}
			if len(err.Error()) > 200 {
				t.Errorf("error length: got %d bytes, want the host truncated", len(err.Error()))
			}
		})
	}
	if got := a.Stats(); got.Mints != 0 || got.Size != 0 {
		t.Errorf("Stats after invalid hosts: got %+v, want no mints", got)
	}
}
