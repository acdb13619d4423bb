package netaddr

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/picket-proxy/picket/internal/testutil"
)

// TestParseHostCorpus reads every odd spelling of the shared corpus as the
// corpus says it means.
func TestParseHostCorpus(t *testing.T) {
	for _, sp := range testutil.Hosts(t) {
		t.Run(sp.Text, func(t *testing.T) {
			h, err := ParseHost(sp.Text)
			if sp.Want == "" {
				if err == nil {
					t.Fatalf("ParseHost(%q) = %+v, want ErrInvalidHost", sp.Text, h)
				}
				if !errors.Is(err, ErrInvalidHost) {
					t.Errorf("ParseHost(%q): got %v, want ErrInvalidHost", sp.Text, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseHost(%q): %v, want %s", sp.Text, err, sp.Want)
			}
			if got := h.String(); got != sp.Want {
				t.Errorf("ParseHost(%q) = %s, want %s", sp.Text, got, sp.Want)
			}
			if again, err := ParseHost(h.URLHost()); err != nil || again != h {
				t.Errorf("ParseHost(%q) = %+v, %v; want it unchanged", h.URLHost(), again, err)
			}
		})
	}
}

func TestParseHostKinds(t *testing.T) {
	tests := []struct {
		in      string
		name    string
		addr    string
		urlHost string
	}{
		{"Example.COM.", "example.com", "", "example.com"},
		{"0x7f.1", "", "127.0.0.1", "127.0.0.1"},
		{"[2001:DB8::1]", "", "2001:db8::1", "[2001:db8::1]"},
		{"[::ffff:192.0.2.1]", "", "192.0.2.1", "192.0.2.1"},
	}
	for _, tt := range tests {
		h, err := ParseHost(tt.in)
		if err != nil {
			t.Fatalf("ParseHost(%q): %v", tt.in, err)
		}
		var addr string
		if h.IsAddr() {
			addr = h.Addr.String()
		}
		if h.Name != tt.name || addr != tt.addr || h.URLHost() != tt.urlHost || !h.IsValid() {
			t.Errorf("ParseHost(%q) = name %q, addr %q, URL host %q; want %q, %q, %q",
				tt.in, h.Name, addr, h.URLHost(), tt.name, tt.addr, tt.urlHost)
		}
	}
	if (Host{}).IsValid() || (Host{}).String() != "" {
		t.Error("the zero Host: got valid or a name, want neither")
	}
}

func TestParseHostErrorIsShort(t *testing.T) {
	_, err := ParseHost(strings.Repeat("x", 10000))
	if !errors.Is(err, ErrInvalidHost) || len(err.Error()) > 200 {
		t.Errorf("ParseHost of 10000 bytes: got %v (%d bytes), want a short ErrInvalidHost", err, len(err.Error()))
	}
	long := strings.Repeat("abcdefghi.", 25) + "abcd" // 254 bytes
	if _, err := ParseHost(long); err == nil {
		t.Errorf("ParseHost of a 254-byte name: got nil error, want one")
	}
	if _, err := ParseHost(long[1:]); err != nil {
		t.Errorf("ParseHost of a 253-byte name: %v", err)
	}
}

func TestParseHostPort(t *testing.T) {
	tests := []struct {
		in   string
		host string
		port uint16
		ok   bool
	}{
		{"example.com", "example.com", 0, true},
		{"Example.Com.:8080", "example.com", 8080, true},
		{"example.com:", "example.com", 0, true},
		{"0x7f.1:443", "127.0.0.1", 443, true},
		{"[2001:db8::1]:443", "2001:db8::1", 443, true},
		{"[2001:db8::1]", "2001:db8::1", 0, true},
		{"2001:db8::1", "2001:db8::1", 0, true},
		{"[::ffff:10.1.2.3]:443", "10.1.2.3", 443, true},
		{"example.com:0", "", 0, false},
		{"example.com:65536", "", 0, false},
		{"example.com:https", "", 0, false},
		{"example.com:-1", "", 0, false},
		{":443", "", 0, false},
		{"[::1]x", "", 0, false},
		{"[::1", "", 0, false},
		{"[192.0.2.1]:443", "", 0, false},
		{"", "", 0, false},
	}
	for _, tt := range tests {
		h, port, err := ParseHostPort(tt.in)
		if (err == nil) != tt.ok || h.String() != tt.host || port != tt.port {
			t.Errorf("ParseHostPort(%q) = %q, %d, %v; want %q, %d, ok %v", tt.in, h, port, err, tt.host, tt.port, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidHost) {
			t.Errorf("ParseHostPort(%q): got %v, want ErrInvalidHost", tt.in, err)
		}
	}
}

func TestSplitHostPort(t *testing.T) {
	tests := []struct{ in, host, port string }{
		{"example.com:443", "example.com", "443"},
		{"example.com", "example.com", ""},
		{"example.com:", "example.com", ""},
		{"[::1]:80", "[::1]", "80"},
		{"[::1]", "[::1]", ""},
		{"::1", "::1", ""},
		{"a:b:c", "a:b:c", ""},
		{"host:port", "host", "port"},
	}
	for _, tt := range tests {
		host, port, err := SplitHostPort(tt.in)
		if err != nil || host != tt.host || port != tt.port {
			t.Errorf("SplitHostPort(%q) = %q, %q, %v; want %q, %q", tt.in, host, port, err, tt.host, tt.port)
		}
	}
	for _, in := range []string{"[::1", "[::1]x", "[::1]80"} {
		if h, p, err := SplitHostPort(in); err == nil {
			t.Errorf("SplitHostPort(%q) = %q, %q; want an error", in, h, p)
		}
	}
}

func TestParsePrefix(t *testing.T) {
	tests := []struct{ in, want string }{
		{"10.0.0.0/8", "10.0.0.0/8"},
		{" 10.1.2.3/8 ", "10.0.0.0/8"},
		{"192.0.2.7", "192.0.2.7/32"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"fc00::/7", "fc00::/7"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},
		{"::ffff:198.51.100.0/120", "198.51.100.0/24"},
	}
	for _, tt := range tests {
		p, err := ParsePrefix(tt.in)
		if err != nil || p.String() != tt.want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", tt.in, p, err, tt.want)
		}
	}
	for _, in := range []string{"", "10.0.0.0/33", "10.0.0/8", "10.1", "0x7f.1", "fe80::1%eth0", "fe80::%eth0/64", "::ffff:0:0/80", "example.com", "10.0.0.0/8/8"} {
		if p, err := ParsePrefix(in); err == nil {
			t.Errorf("ParsePrefix(%q) = %v, want an error", in, p)
		}
	}
}

func TestParsePortRange(t *testing.T) {
	tests := []struct {
		in   string
		want PortRange
		ok   bool
	}{
		{"443", PortRange{443, 443}, true},
		{" 1024-65535 ", PortRange{1024, 65535}, true},
		{"1-1", PortRange{1, 1}, true},
		{"0", PortRange{}, false},
		{"0-80", PortRange{}, false},
		{"80-79", PortRange{}, false},
		{"65536", PortRange{}, false},
		{"70000", PortRange{}, false},
		{"9-3", PortRange{}, false},
		{"80-", PortRange{}, false},
		{"-80", PortRange{}, false},
		{"http", PortRange{}, false},
		{"", PortRange{}, false},
	}
	for _, tt := range tests {
		got, err := ParsePortRange(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParsePortRange(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	r := PortRange{80, 90}
	if !r.Contains(80) || !r.Contains(90) || r.Contains(79) || r.Contains(91) {
		t.Errorf("%v.Contains: wrong at a bound", r)
	}
}

func TestUnescape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"%41", "A"},
		{"%2541", "A"},
		{"%252541", "A"},
		{"%%41", "%A"},
		{"%zz", "%zz"},
		{"50%", "50%"},
		{"%4", "%4"},
		{"%c3%BC", "ü"},
	}
	for _, tt := range tests {
		if got := Unescape(tt.in); got != tt.want {
			t.Errorf("Unescape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// A host already in canonical form costs no allocation: the rules match
// every request's host through here.
func TestParseHostCanonicalAllocatesNothing(t *testing.T) {
	for _, in := range []string{"www.example.com", "192.0.2.1", "www.example.com:443", "[2001:db8::1]:443"} {
		if n := testing.AllocsPerRun(100, func() { ParseHostPort(in) }); n != 0 {
			t.Errorf("ParseHostPort(%q): %v allocations, want 0", in, n)
		}
	}
}

// FuzzParseHost checks the reading's own promises on any input: it never
// panics; a valid host is in canonical form (reading its String or URLHost
// again gives it back) and has exactly one of a name and an address; an
// address written in the standard form reads as netip reads it; an invalid
// one is ErrInvalidHost.
func FuzzParseHost(f *testing.F) {
	for _, sp := range testutil.Hosts(f) {
		f.Add(sp.Text)
	}
	f.Fuzz(func(t *testing.T, in string) {
		h, err := ParseHost(in)
		if err != nil {
			if !errors.Is(err, ErrInvalidHost) || h.IsValid() {
				t.Fatalf("ParseHost(%q) = %+v, %v; want the zero Host and ErrInvalidHost", in, h, err)
			}
			return
		}
		if (h.Name != "") == h.IsAddr() {
			t.Fatalf("ParseHost(%q) = %+v: want exactly one of a name and an address", in, h)
		}
		if h.IsAddr() && (h.Addr.Zone() != "" || h.Addr.Is4In6()) {
			t.Fatalf("ParseHost(%q) = %v: want no zone and no mapped IPv4", in, h.Addr)
		}
		if h.Name != "" && checkName(h.Name) != "" {
			t.Fatalf("ParseHost(%q) = name %q: %s", in, h.Name, checkName(h.Name))
		}
		for _, s := range []string{h.String(), h.URLHost()} {
			if again, err := ParseHost(s); err != nil || again != h {
				t.Fatalf("ParseHost(%q) = %+v, then ParseHost(%q) = %+v, %v", in, h, s, again, err)
			}
		}
		if a, err := netip.ParseAddr(in); err == nil && a.Zone() == "" && h.Addr != a.Unmap() {
			t.Fatalf("ParseHost(%q) = %v, netip reads %v", in, h, a)
		}
	})
}

func BenchmarkParseHostPort(b *testing.B) {
	for _, in := range []string{"www.example.com:443", "WWW.Example.COM.", "0x7f.1", "[2001:db8::1]:443", "b%C3%BCcher.example"} {
		b.Run(in, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ParseHostPort(in)
			}
		})
	}
}
