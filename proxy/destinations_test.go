package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestNormalizeHost(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"2130706433", "127.0.0.1"},
		{"0x7f.1", "127.0.0.1"},
		{"0177.0.0.1", "127.0.0.1"},
		{"127.1", "127.0.0.1"},
		{"0x7f000001", "127.0.0.1"},
		{"169.254.43518", "169.254.169.254"},
		{"example.com", "example.com"},
		{"1.2.3.4", "1.2.3.4"},
		{"256.1.1.1", "256.1.1.1"},
		{"::1", "::1"},
		{"1.2.3.4.5", "1.2.3.4.5"},
		{"08.1.1.1", "08.1.1.1"},
		// Every part of Picket reads hosts the same way (netaddr): names in
		// lower-case punycode, IPv4-mapped IPv6 as IPv4, escapes decoded.
		{"Example.COM.", "example.com"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"::ffff:127.0.0.1", "127.0.0.1"},
		{"%31%32%37.0.0.1", "127.0.0.1"},
	} {
		if got := normalizeHost(tc.in); got != tc.want {
			t.Errorf("normalizeHost(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestDestinationPolicy(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "reached")
	}))
	defer origin.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(origin.URL, "http://"))
	// Secure defaults: no loopback destination, CONNECT to web ports only.
	tp := startProxy(t, Config{AllowDestinations: []netip.Prefix{}, ConnectPorts: []PortRange{}})
	for _, tc := range []struct {
		name, raw string
	}{
		{"loopback", "GET http://127.0.0.1:" + port + "/ HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"IPv6 loopback", "GET http://[::1]:" + port + "/ HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"decimal spelling", "GET http://2130706433:" + port + "/ HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"hex spelling", "GET http://0x7f.1:" + port + "/ HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"short spelling", "GET http://127.1:" + port + "/ HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"IPv4-mapped spelling", "GET http://[::ffff:127.0.0.1]:" + port + "/ HTTP/1.1\r\nHost: x\r\n\r\n"},
		// Security fix: a zone hid the address from the deny list
		// (netip.Prefix.Contains is false for an address with a zone).
		{"link-local with a zone", "GET http://[fe80::1%25lo]:" + port + "/ HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"CONNECT to link-local with a zone", "CONNECT [fe80::1%25lo]:443 HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"name resolving to loopback", "GET http://localhost:" + port + "/ HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"cloud metadata", "GET http://169.254.169.254/ HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"the proxy itself via CONNECT", "CONNECT " + tp.addr + " HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"CONNECT to port 25", "CONNECT mail.example:25 HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"CONNECT to loopback", "CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: x\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := tp.rawRequest(t, tc.raw)
			if !strings.Contains(status, "403") || strings.Contains(body, "reached") {
				t.Errorf("got %q, want 403 and nothing forwarded", status)
			}
		})
	}
	// Allowing loopback explicitly lets the test origin through.
	tp2 := startProxy(t, Config{AllowDestinations: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, ConnectPorts: []PortRange{}})
	status, body := tp2.rawRequest(t, fmt.Sprintf("GET http://127.0.0.1:%s/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", port))
	if !strings.Contains(status, "200") || !strings.Contains(body, "reached") {
		t.Errorf("allowed loopback: got %q", status)
	}
	// ... but never the proxy's own port.
	status, _ = tp2.rawRequest(t, "CONNECT "+tp2.addr+" HTTP/1.1\r\nHost: x\r\n\r\n")
	if !strings.Contains(status, "403") {
		t.Errorf("CONNECT to the proxy itself: got %q, want 403", status)
	}
}

// TestDestinationEmbeddedIPv4: an IPv6 address that a NAT64 translator
// (64:ff9b::/96) or a 6to4 relay (2002::/16) turns into an IPv4 address
// is checked as that address too — the deny lists, the allow list and the
// threat feeds' address lists alike. Checked on the dialer's hook itself:
// nothing is dialled.
func TestDestinationEmbeddedIPv4(t *testing.T) {
	feed := &listedNets{nets: []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32")}}
	feed.set(true)
	defaults := newDestinations(&Config{BlockAddresses: feed})
	noIntranet := newDestinations(&Config{DenyPrivateDestinations: true})
	loopbackAllowed := newDestinations(&Config{AllowDestinations: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	for _, tc := range []struct {
		name string
		d    *destinations
		addr string
		want string // "" allowed, "denied" or "listed"
	}{
		{"NAT64 loopback", defaults, "[64:ff9b::7f00:1]:80", "denied"},
		{"NAT64 cloud metadata", defaults, "[64:ff9b::a9fe:a9fe]:80", "denied"},
		{"NAT64 dotted spelling", defaults, "[64:ff9b::127.0.0.1]:443", "denied"},
		{"6to4 loopback", defaults, "[2002:7f00:1::1]:80", "denied"},
		{"6to4 cloud metadata", defaults, "[2002:a9fe:a9fe::]:80", "denied"},
		{"NAT64 listed address", defaults, "[64:ff9b::c633:6407]:443", "listed"},
		{"6to4 listed address", defaults, "[2002:c633:6407::1]:443", "listed"},
		{"NAT64 public", defaults, "[64:ff9b::808:808]:443", ""},
		{"6to4 public", defaults, "[2002:808:808::1]:443", ""},
		{"plain IPv6", defaults, "[2001:db8::7f00:1]:443", ""},
		{"NAT64 intranet, intranet denied", noIntranet, "[64:ff9b::a00:1]:80", "denied"},
		{"6to4 intranet, intranet denied", noIntranet, "[2002:c0a8:101::1]:80", "denied"},
		{"NAT64 intranet, intranet allowed", defaults, "[64:ff9b::a00:1]:80", ""},
		{"NAT64 loopback, loopback allowed", loopbackAllowed, "[64:ff9b::7f00:1]:80", ""},
		{"IPv4-mapped is IPv4", noIntranet, "[::ffff:10.0.0.1]:80", "denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.d.control("tcp", netip.MustParseAddrPort(tc.addr).String(), nil)
			_, denied := isDenied(err)
			_, isListed := listed(err)
			got := ""
			switch {
			case denied:
				got = "denied"
			case isListed:
				got = "listed"
			case err != nil:
				got = "other: " + err.Error()
			}
			if got != tc.want {
				t.Errorf("%s: got %q (%v), want %q", tc.addr, got, err, tc.want)
			}
		})
	}
}
