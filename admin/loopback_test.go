package admin

import "testing"

// TestLoopbackHost: the Host header names the loopback in any spelling the
// rest of Picket reads as a loopback address (internal/netaddr), and in no
// other case.
func TestLoopbackHost(t *testing.T) {
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"127.0.0.1:9090", true},
		{"localhost", true},
		{"LOCALHOST.:9090", true},
		{"[::1]:9090", true},
		{"[::ffff:127.0.0.1]", true},
		{"0x7f.1:9090", true},
		{"127.1", true},
		{"localhost.evil.example", false},
		{"evil.example:9090", false},
		{"10.0.0.1", false},
		{"127.0.0.1:0", false},
		{"", false},
	} {
		if got := loopbackHost(tc.host); got != tc.want {
			t.Errorf("loopbackHost(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
}
