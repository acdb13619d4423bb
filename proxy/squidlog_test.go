package proxy

import (
	"net/netip"
	"net/url"
	"regexp"
	"testing"
	"time"
)

// squidRe is the field layout of Squid's "squid" logformat:
// %ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt
var squidRe = regexp.MustCompile(`^(\d+)\.(\d{3}) +(\d+) (\S+) ([A-Z_]+)/(\d{3}) (\d+) (\S+) (\S+) (\S+) ([A-Z_]+)/(\S+) (\S+)\n$`)

func TestSquidLine(t *testing.T) {
	start := time.Unix(1286536308, 599e6)
	now := start.Add(180 * time.Millisecond)
	u, _ := url.Parse("http://www.example.com/path?q=secret")
	for _, tc := range []struct {
		name string
		x    *exchange
		want []string // result, status, method, url, hierarchy, type
	}{
		{"allowed", &exchange{start: start, status: 200, ctype: "text/html",
			req: Request{Client: netip.MustParseAddr("192.168.0.224"), Method: "GET", URL: u}},
			[]string{"TCP_MISS", "200", "GET", "http://www.example.com/path", "HIER_DIRECT", "www.example.com", "text/html"}},
		{"blocked", &exchange{start: start, status: 403, decision: Decision{Action: Block},
			req: Request{Client: netip.MustParseAddr("10.0.0.1"), Method: "GET", URL: u}},
			[]string{"TCP_DENIED", "403", "GET", "http://www.example.com/path", "HIER_NONE", "-", "-"}},
		{"tunnel", &exchange{start: start, status: 200,
			req: Request{Client: netip.MustParseAddr("10.0.0.1"), Method: "CONNECT", Connect: true, URL: &url.URL{Scheme: "https", Host: "bank.example:443"}}},
			[]string{"TCP_TUNNEL", "200", "CONNECT", "bank.example:443", "HIER_DIRECT", "bank.example", "-"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.x.bytesOut.Store(411)
			line := string(squidLine(nil, tc.x, now, false))
			m := squidRe.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("line %q does not parse as Squid's format", line)
			}
			if m[1] != "1286536308" || m[2] != "779" || m[3] != "180" || m[7] != "411" {
				t.Errorf("time/elapsed/bytes: got %s.%s %s %s in %q", m[1], m[2], m[3], m[7], line)
			}
			got := []string{m[5], m[6], m[8], m[9], m[11], m[12], m[13]}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("field %d: got %q, want %q (line %q)", i, got[i], tc.want[i], line)
				}
			}
		})
	}
}

// A real line from Squid's documentation parses with the same layout.
func TestSquidSampleLine(t *testing.T) {
	sample := "1286536308.779    180 192.168.0.224 TCP_MISS/200 411 GET http://www.google.com/ - HIER_DIRECT/74.125.45.147 text/html\n"
	if !squidRe.MatchString(sample) {
		t.Fatalf("the layout regexp does not match Squid's own sample")
	}
}
