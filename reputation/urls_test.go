package reputation

import (
	"slices"
	"testing"
)

// The examples of the Safe Browsing v4 "URLs and hashing" specification.
func TestCanonicalize(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"escaped percent", "http://host/%25%32%35", "http://host/%25"},
		{"two escaped percents", "http://host/%25%32%35%25%32%35", "http://host/%25%25"},
		{"repeated escapes", "http://host/%2525252525252525", "http://host/%25"},
		{"escape inside", "http://host/asdf%25%32%35asd", "http://host/asdf%25asd"},
		{"invalid escapes", "http://host/%%%25%32%35asd%%", "http://host/%25%25%25asd%25%25"},
		{"plain", "http://www.google.com/", "http://www.google.com/"},
		{"escaped host and path", "http://%31%36%38%2e%31%38%38%2e%39%39%2e%32%36/%2E%73%65%63%75%72%65/%77%77%77%2E%65%62%61%79%2E%63%6F%6D/", "http://168.188.99.26/.secure/www.ebay.com/"},
		{"spaces in path", "http://195.127.0.11/uploads/%20%20%20%20/.verify/.eBaysecure=updateuserdataxplimnbqmn-xplmvalidateinfoswqpcmlx=hgplmcx/", "http://195.127.0.11/uploads/%20%20%20%20/.verify/.eBaysecure=updateuserdataxplimnbqmn-xplmvalidateinfoswqpcmlx=hgplmcx/"},
		{"escaped specials", "http://host%23.com/%257Ea%2521b%2540c%2523d%2524e%25f%255E00%252611%252A22%252833%252944_55%252B", "http://host%23.com/~a!b@c%23d$e%25f^00&11*22(33)44_55+"},
		{"decimal IP", "http://3279880203/blah", "http://195.127.0.11/blah"},
		{"dot dot", "http://www.google.com/blah/..", "http://www.google.com/"},
		{"no scheme", "www.google.com/", "http://www.google.com/"},
		{"no scheme no path", "www.google.com", "http://www.google.com/"},
		{"fragment", "http://www.evil.com/blah#frag", "http://www.evil.com/blah"},
		{"upper case host", "http://www.GOOgle.com/", "http://www.google.com/"},
		{"trailing dots", "http://www.google.com.../", "http://www.google.com/"},
		{"tab CR LF", "http://www.google.com/foo\tbar\rbaz\n2", "http://www.google.com/foobarbaz2"},
		{"empty query", "http://www.google.com/q?", "http://www.google.com/q?"},
		{"question mark in query", "http://www.google.com/q?r?", "http://www.google.com/q?r?"},
		{"question marks in query", "http://www.google.com/q?r?s", "http://www.google.com/q?r?s"},
		{"two fragments", "http://evil.com/foo#bar#baz", "http://evil.com/foo"},
		{"semicolon", "http://evil.com/foo;", "http://evil.com/foo;"},
		{"semicolon in query", "http://evil.com/foo?bar;", "http://evil.com/foo?bar;"},
		{"control and high bytes in host", "http://\x01\x80.com/", "http://%01%80.com/"},
		{"no trailing slash", "http://notrailingslash.com", "http://notrailingslash.com/"},
		{"port", "http://www.gotaport.com:1234/", "http://www.gotaport.com/"},
		{"surrounding spaces", "  http://www.google.com/  ", "http://www.google.com/"},
		{"leading space in host", "http:// leadingspace.com/", "http://%20leadingspace.com/"},
		{"escaped leading space", "http://%20leadingspace.com/", "http://%20leadingspace.com/"},
		{"escaped leading space no scheme", "%20leadingspace.com/", "http://%20leadingspace.com/"},
		{"https", "https://www.securesite.com/", "https://www.securesite.com/"},
		{"escaped hash in path", "http://host.com/ab%23cd", "http://host.com/ab%23cd"},
		{"double slashes", "http://host.com//twoslashes?more//slashes", "http://host.com/twoslashes?more//slashes"},
		// Beyond the specification's list: the other rules it states.
		{"octal and hex IP", "http://0x12.0300.0x44.01/", "http://18.192.68.1/"},
		{"three part IP", "http://195.127.11/", "http://195.127.0.11/"},
		{"IP part too large is a name", "http://1.2.3.256/", "http://1.2.3.256/"},
		{"dot segment", "http://a.com/a/./b/../c", "http://a.com/a/c"},
		{"user info dropped", "http://user:pw@a.com:8080/x", "http://a.com/x"},
		// Security fix: user information was dropped only after unescaping,
		// so an escaped '/' or '?' in it ended the authority there and the
		// user information was looked up as the host, not the host dialled.
		{"escaped slash in user info", "http://good.example%2F@evil.example/x", "http://evil.example/x"},
		{"escaped question mark in user info", "http://good.example%3F@evil.example/x", "http://evil.example/x"},
		{"double-escaped slash in user info", "http://good.example%252F@evil.example/", "http://evil.example/"},
		{"escaped slash in password", "http://u:good.example%2F@evil.example/", "http://evil.example/"},
		{"escaped slash in user info, no scheme", "good.example%2F@evil.example/x", "http://evil.example/x"},
		{"at sign in path", "http://a.com/x@b.com/", "http://a.com/x@b.com/"},
		{"IDN to punycode", "http://Bücher.example/", "http://xn--bcher-kva.example/"},
		{"escaped IDN", "http://b%C3%BCcher.example/", "http://xn--bcher-kva.example/"},
		{"IPv6", "http://[2001:DB8::1]:80/", "http://[2001:db8::1]/"},
		{"upper scheme", "HTTP://a.com/", "http://a.com/"},
		// Hosts as every part of Picket reads them (internal/netaddr). Security
		// fix: an IPv4-mapped IPv6 host was a key of its own, so a listed
		// address written as ::ffff:a.b.c.d was not found, while the proxy
		// dialled the listed address.
		{"IPv4-mapped IPv6", "http://[::ffff:195.127.0.11]/x", "http://195.127.0.11/x"},
		{"IPv4-mapped IPv6 in hex", "http://[::ffff:c37f:b]:8080/x", "http://195.127.0.11/x"},
		{"hex part without digits", "http://0x.0x.0x.0x/", "http://0.0.0.0/"},
		{"IPv6 zone dropped", "http://[fe80::1%25eth0]/", "http://[fe80::1]/"},
		{"IDN with an underscore", "http://a_ü.example/", "http://xn--a_-yka.example/"},
		{"bare IPv6", "http://::1/", "http://[::1]/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonicalize(tt.in)
			if err != nil {
				t.Fatalf("Canonicalize(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("Canonicalize(%q) = %q, want %q", tt.in, got, tt.want)
			}
			again, err := Canonicalize(got)
			if err != nil || again != got {
				t.Errorf("Canonicalize(%q) = %q, %v; want it unchanged", got, again, err)
			}
		})
	}
}

func TestCanonicalizeErrors(t *testing.T) {
	for _, in := range []string{"", "http://", "http:///path", "http://.../", "http://[::1/"} {
		if got, err := Canonicalize(in); err == nil {
			t.Errorf("Canonicalize(%q) = %q, want an error", in, got)
		}
	}
}

func TestExpressions(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"spec example with query", "http://a.b.c/1/2.html?param=1", []string{
			"a.b.c/1/2.html?param=1", "a.b.c/1/2.html", "a.b.c/", "a.b.c/1/",
			"b.c/1/2.html?param=1", "b.c/1/2.html", "b.c/", "b.c/1/",
		}},
		{"spec example with many hosts", "http://a.b.c.d.e.f.g/1.html", []string{
			"a.b.c.d.e.f.g/1.html", "a.b.c.d.e.f.g/",
			"c.d.e.f.g/1.html", "c.d.e.f.g/",
			"d.e.f.g/1.html", "d.e.f.g/",
			"e.f.g/1.html", "e.f.g/",
			"f.g/1.html", "f.g/",
		}},
		{"spec example IP", "http://1.2.3.4/1/", []string{"1.2.3.4/1/", "1.2.3.4/"}},
		{"deep path", "http://x.y/1/2/3/4/5.html", []string{
			"x.y/1/2/3/4/5.html", "x.y/", "x.y/1/", "x.y/1/2/", "x.y/1/2/3/",
		}},
		{"root", "http://x.y/", []string{"x.y/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseURL(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := u.Expressions(); !slices.Equal(got, tt.want) {
				t.Errorf("Expressions(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestExpression(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Phishing.Picket.Test", "phishing.picket.test/"},
		{"http://malware.picket.test/", "malware.picket.test/"},
		{"https://x.test/a/b.exe?x=1#f", "x.test/a/b.exe?x=1"},
	}
	for _, tt := range tests {
		if got, err := Expression(tt.in); err != nil || got != tt.want {
			t.Errorf("Expression(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestHashExpression(t *testing.T) {
	// The specification's example: SHA-256 of "abc".
	h := HashExpression("abc")
	if got, want := h.String(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("HashExpression(abc) = %s, want %s", got, want)
	}
	if got, want := h.Prefix().String(), "ba7816bf"; got != want {
		t.Errorf("prefix = %s, want %s", got, want)
	}
}

func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{
		"http://host/%25%32%35", "http://3279880203/blah", "www.google.com", "http://\x01\x80.com/",
		"http://host%23.com/%257Ea%2521b", "http://a.b.c/1/2.html?param=1#x", "http://[::1]:80/",
		"http://Bücher.example/../a//b/./c/", "%20leadingspace.com/", "http://0x12.0300.0x44.01/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		u, err := ParseURL(in)
		if err != nil {
			return
		}
		_ = u.Expressions()
		out := u.String()
		again, err := Canonicalize(out)
		if err != nil {
			t.Fatalf("Canonicalize(%q) = %q, then Canonicalize(%q): %v", in, out, out, err)
		}
		if again != out {
			t.Fatalf("not idempotent: %q → %q → %q", in, out, again)
		}
	})
}
