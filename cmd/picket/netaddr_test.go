package main

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/picket-proxy/picket/config"
)

// TestProxyConfigMappedNetworks: security fix — a network written in its
// IPv4-mapped IPv6 form (allow_clients, allow_destinations,
// deny_destinations) used to stay an IPv6 prefix, which the proxy's checks
// (on unmapped addresses) never matched: a deny entry denied nothing. It is
// now the IPv4 network it maps, as everywhere else (netaddr.ParsePrefix).
func TestProxyConfigMappedNetworks(t *testing.T) {
	f := config.Default()
	f.Proxy.AllowClients = []string{"::ffff:192.0.2.0/120"}
	f.Proxy.AllowDestinations = []string{"::ffff:127.0.0.1"}
	f.Proxy.DenyDestinations = []string{"::ffff:10.0.0.0/104", "10.1.2.3/8"}
	c, err := proxyConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key       string
		got, want []netip.Prefix
	}{
		{"allow_clients", c.Clients, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}},
		{"allow_destinations", c.AllowDestinations, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}},
		{"deny_destinations", c.DenyDestinations, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")}},
	} {
		if !slices.Equal(tc.got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.key, tc.got, tc.want)
		}
	}
}
