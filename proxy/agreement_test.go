package proxy

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/picket-proxy/picket/certs"
	"github.com/picket-proxy/picket/internal/netaddr"
	"github.com/picket-proxy/picket/internal/testutil"
	"github.com/picket-proxy/picket/policy"
	"github.com/picket-proxy/picket/reputation"
)

// The readers of a host, side by side: the destination policy (what is
// dialled and checked), the rules, the reputation canonicalizer and the
// feeds, certificate minting, the transparent gateway's SNI check, the
// CONNECT authority and the warn pages. Each must read a host as
// internal/netaddr does, or refuse what it refuses: two readers that
// disagree about a host are how a block is bypassed.

// TestHostAgreement runs every reader on the shared corpus of odd spellings
// (decimal, octal, hex and short IPv4, IPv4-mapped IPv6, zones, trailing
// dots, mixed case, percent-encoding, full-width characters, IDN) and checks
// that each reads it as the corpus says.
func TestHostAgreement(t *testing.T) {
	r := newReaders(t)
	for _, sp := range testutil.Hosts(t) {
		t.Run(sp.Text, func(t *testing.T) {
			h, err := netaddr.ParseHost(sp.Text)
			if got := h.String(); (err == nil) != (sp.Want != "") || got != sp.Want {
				t.Fatalf("netaddr.ParseHost(%q) = %q, %v; the corpus says %q", sp.Text, got, err, sp.Want)
			}
			r.agree(t, sp.Text)
		})
	}
}

// FuzzHostAgreement checks on any text that every reader agrees with the
// shared parser.
func FuzzHostAgreement(f *testing.F) {
	for _, sp := range testutil.Hosts(f) {
		f.Add(sp.Text)
	}
	r := newReaders(f)
	f.Fuzz(func(t *testing.T, host string) {
		r.agree(t, host)
	})
}

// readers holds what the readers need that is costly to build.
type readers struct {
	ca     *certs.Authority
	engine *policy.Engine // no rules: Decide tells valid from invalid hosts
}

func newReaders(tb testing.TB) *readers {
	tb.Helper()
	dir := tb.TempDir()
	ca, _, err := certs.Load(certs.Config{CertFile: filepath.Join(dir, "ca.pem"), KeyFile: filepath.Join(dir, "ca.key")})
	if err != nil {
		tb.Fatal(err)
	}
	e, err := policy.New(policy.Config{}, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &readers{ca: ca, engine: e}
}

// agree checks every reader of host (written without a port, as in a URL's
// authority or a CONNECT target) against netaddr.ParseHost.
func (r *readers) agree(t *testing.T, host string) {
	if len(host) > netaddr.MaxHostLength+8 {
		return
	}
	want, werr := netaddr.ParseHost(host)
	valid := werr == nil
	// The host as it stands before a port: a bare IPv6 address in brackets.
	authority := host
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		authority = "[" + host + "]"
	}
	hostport := authority + ":443"

	// 1. The destination policy: the address dialled and checked.
	if got := normalizeHost(host); valid && got != want.String() || !valid && got != host {
		t.Errorf("dialler: normalizeHost(%q) = %q, want %q", host, got, want.String())
	}
	if _, _, err := net.SplitHostPort(hostport); err == nil && valid {
		if got, wantAddr := address(hostport), net.JoinHostPort(want.String(), "443"); got != wantAddr {
			t.Errorf("dialler: address(%q) = %q, want %q", hostport, got, wantAddr)
		}
	}
	if valid && want.IsAddr() {
		d := newDestinations(&Config{})
		mapped := netip.AddrFrom16(want.Addr.As16()) // itself for IPv6
		if e1, e2 := d.check(netip.AddrPortFrom(want.Addr, 443)), d.check(netip.AddrPortFrom(mapped, 443)); (e1 == nil) != (e2 == nil) {
			t.Errorf("dialler: %v and %v are checked differently: %v, %v", want.Addr, mapped, e1, e2)
		}
	}

	// 2. The proxy's own readings: the host of a CONNECT, IP or name, SNI.
	if got := stripPort(hostport); valid && got != want.String() {
		t.Errorf("stripPort(%q) = %q, want %q", hostport, got, want.String())
	}
	if got := isIPLiteral(host); got != (valid && want.IsAddr()) {
		t.Errorf("isIPLiteral(%q) = %v, want %v", host, got, valid && want.IsAddr())
	}
	if got := validHostName(host); got != valid {
		t.Errorf("validHostName(%q) = %v, want %v", host, got, valid)
	}

	// 3. The rules: a CONNECT is decided on this host or refused, and a
	// host pattern for its canonical form matches it; so does a request URL
	// as Go's parser hands it over.
	if _, err := r.engine.Decide(context.Background(), &policy.Input{Method: "CONNECT", Connect: true, URL: &url.URL{Host: hostport}}); valid != (err == nil) {
		t.Errorf("rules: CONNECT %s: got %v, want valid %v", hostport, err, valid)
	}
	// Can a URL hold it as its authority? Not with URL syntax or what a URL
	// canonicalizer strips inside it.
	inURL := !strings.ContainsAny(authority, "/?#@\\ \t\r\n")
	if h, port, err := netaddr.SplitHostPort(authority); err != nil || port != "" || h != authority {
		inURL = false // a port (even an empty one) is no part of the host
	}
	u, err := url.Parse("http://" + authority + "/x")
	if err != nil || !inURL {
		u = nil // Go's parser refuses it (only a CONNECT carries it), or it is no authority
	} else if _, err := r.engine.Decide(context.Background(), &policy.Input{Method: "GET", URL: u}); valid != (err == nil) {
		t.Errorf("rules: GET %s (host %q as Go parsed it): got %v, want valid %v", u, u.Host, err, valid)
	}
	if valid {
		set, err := policy.CompileHosts([]string{want.String()})
		if err != nil {
			t.Fatalf("rules: the pattern %q: %v", want.String(), err)
		}
		if !set.Match(hostport) {
			t.Errorf("rules: pattern %q does not match %q", want.String(), hostport)
		}
		if u != nil && !set.Match(u.Host) {
			t.Errorf("rules: pattern %q does not match the URL host %q", want.String(), u.Host)
		}
	}

	// 4. The reputation canonicalizer and the feeds: the lookup key of the
	// URL the rules look up, and a feed line naming the host.
	if valid && inURL {
		for _, raw := range []string{"http://" + authority + "/x", urlString(u)} {
			if raw == "" {
				continue
			}
			if got, err := reputation.ParseURL(raw); err != nil || got.Host != want.URLHost() {
				t.Errorf("reputation: ParseURL(%q).Host = %q, %v; want %q", raw, got.Host, err, want.URLHost())
			}
		}
		if got, err := reputation.Expression(authority); err != nil || got != want.URLHost()+"/" {
			t.Errorf("feeds: Expression(%q) = %q, %v; want %q", authority, got, err, want.URLHost()+"/")
		}
	}

	// 5. Certificates: minted for the host as read, or not at all.
	cert, err := r.ca.Leaf(hostport)
	switch {
	case !valid && err == nil:
		t.Errorf("certs: Leaf(%q) minted a certificate for an invalid host", hostport)
	case !valid && !errors.Is(err, certs.ErrInvalidHost):
		t.Errorf("certs: Leaf(%q): got %v, want ErrInvalidHost", hostport, err)
	case valid && err != nil:
		t.Errorf("certs: Leaf(%q): %v", hostport, err)
	case valid:
		if got := sanOf(cert.Leaf); got != want.String() {
			t.Errorf("certs: Leaf(%q) is for %q, want %q", hostport, got, want.String())
		}
	}
}

// sanOf is the one name or address a minted leaf is for.
func sanOf(c *x509.Certificate) string {
	if len(c.IPAddresses) == 1 {
		a, _ := netip.AddrFromSlice(c.IPAddresses[0])
		return a.Unmap().String()
	}
	if len(c.DNSNames) == 1 {
		return c.DNSNames[0]
	}
	return ""
}

func urlString(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.String()
}
