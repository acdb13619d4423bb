package proxy

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
)

// A Host name that resolves to the original destination is looked up once
// and then remembered; IP literals need no lookup; a name that does not
// resolve to the destination is refused and looked up again each time.
func TestHostIsDestinationRemembersMatches(t *testing.T) {
	tp := startProxy(t, Config{})
	var lookups atomic.Int32
	real := tp.Server.lookupIP
	tp.Server.lookupIP = func(ctx context.Context, host string) ([]netip.Addr, error) {
		lookups.Add(1)
		return real(ctx, host) // the system resolver: localhost comes from /etc/hosts
	}
	ctx := context.Background()
	loop := netip.MustParseAddr("127.0.0.1")
	other := netip.MustParseAddr("192.0.2.1")
	for i, tc := range []struct {
		host        string
		dst         netip.Addr
		want        bool
		wantLookups int32
	}{
		{"localhost", loop, true, 1},
		{"LOCALHOST:80", loop, true, 1}, // remembered (case and port do not matter)
		{"localhost.", loop, true, 1},
		{"127.0.0.1", loop, true, 1}, // a literal: no lookup
		{"localhost", other, false, 2},
		{"localhost", other, false, 3}, // a mismatch is not remembered
		{"127.0.0.1", other, false, 3},
	} {
		if got := tp.Server.hostIsDestination(ctx, tc.host, tc.dst); got != tc.want {
			t.Errorf("case %d: hostIsDestination(%q, %v) = %v, want %v", i, tc.host, tc.dst, got, tc.want)
		}
		if n := lookups.Load(); n != tc.wantLookups {
			t.Errorf("case %d: %d lookups, want %d", i, n, tc.wantLookups)
		}
	}
}
