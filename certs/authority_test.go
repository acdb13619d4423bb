package certs

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"regexp"
	"sync"
	"testing"
	"time"
)

func TestCacheHit(t *testing.T) {
	a := newAuthority(t, Config{})
	first, err := a.Leaf("example.com")
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"example.com", "EXAMPLE.com:443", "example.com."} {
		got, err := a.Leaf(host)
		if err != nil {
			t.Fatal(err)
		}
		if got != first {
			t.Errorf("Leaf(%q): got a new certificate, want the cached pointer", host)
		}
	}
	if got, want := a.Stats(), (Stats{Mints: 1, Hits: 3, Misses: 1, Size: 1}); got != want {
		t.Errorf("Stats: got %+v, want %+v", got, want)
	}
}

func TestCacheRenewal(t *testing.T) {
	tests := []struct {
		name        string
		validity    time.Duration
		renewBefore time.Duration
		stillFresh  time.Duration // clock advance at which the cached leaf is served
		renewed     time.Duration // clock advance at which a new leaf is minted
	}{
		{"default margin is a third", 3 * time.Hour, 0, 2*time.Hour - time.Second, 2 * time.Hour},
		{"configured margin", 10 * time.Hour, time.Hour, 9*time.Hour - time.Second, 9 * time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			a := newAuthority(t, Config{Now: clk.Now, LeafValidity: tc.validity, RenewBefore: tc.renewBefore})
			first, err := a.Leaf("example.com")
			if err != nil {
				t.Fatal(err)
			}
			clk.Add(tc.stillFresh)
			if got, _ := a.Leaf("example.com"); got != first {
				t.Errorf("after %v: got a new leaf, want the cached one", tc.stillFresh)
			}
			clk.Add(tc.renewed - tc.stillFresh)
			second, err := a.Leaf("example.com")
			if err != nil {
				t.Fatal(err)
			}
			if second == first {
				t.Fatalf("after %v: got the cached leaf, want a new one", tc.renewed)
			}
			if got, want := second.Leaf.NotAfter, clk.Now().Add(tc.validity); !got.Equal(want) {
				t.Errorf("renewed NotAfter: got %v, want %v", got, want)
			}
			if got, want := a.Stats(), (Stats{Mints: 2, Hits: 1, Misses: 2, Size: 1}); got != want {
				t.Errorf("Stats: got %+v, want %+v", got, want)
			}
		})
	}
	t.Run("clock set back before NotBefore", func(t *testing.T) {
		clk := newClock()
		a := newAuthority(t, Config{Now: clk.Now})
		first, err := a.Leaf("example.com")
		if err != nil {
			t.Fatal(err)
		}
		clk.Add(-2 * time.Hour)
		second, err := a.Leaf("example.com")
		if err != nil {
			t.Fatal(err)
		}
		if second == first {
			t.Errorf("got the cached leaf, not yet valid at the clock's time; want a new one")
		}
	})
}

func TestConcurrentLeafMintsOnce(t *testing.T) {
	a := newAuthority(t, Config{})
	const n = 100
	var (
		start = make(chan struct{})
		wg    sync.WaitGroup
		certs [n]*tls.Certificate
		errs  [n]error
	)
	for i := range n {
		wg.Go(func() {
			<-start
			certs[i], errs[i] = a.Leaf("concurrent.example.com")
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if certs[i] != certs[0] {
			t.Fatalf("call %d: got a different certificate than call 0, want one shared leaf", i)
		}
	}
	st := a.Stats()
	if st.Mints != 1 {
		t.Errorf("Mints: got %d, want 1", st.Mints)
	}
	if got := st.Hits + st.Misses; got != n {
		t.Errorf("Hits+Misses: got %d, want %d", got, n)
	}
}

func TestCacheBound(t *testing.T) {
	a := newAuthority(t, Config{CacheSize: 3})
	for i := range 5 {
		if _, err := a.Leaf(fmt.Sprintf("host%d.example", i)); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := a.Stats(), (Stats{Mints: 5, Misses: 5, Evictions: 2, Size: 3}); got != want {
		t.Errorf("Stats after 5 hosts: got %+v, want %+v", got, want)
	}
	// host0 was evicted: asking again mints and evicts host2, the oldest left.
	if _, err := a.Leaf("host0.example"); err != nil {
		t.Fatal(err)
	}
	if got, want := a.Stats(), (Stats{Mints: 6, Misses: 6, Evictions: 3, Size: 3}); got != want {
		t.Errorf("Stats after re-asking an evicted host: got %+v, want %+v", got, want)
	}
}

func TestFetchIgnoresGen(t *testing.T) {
	a := newAuthority(t, Config{})
	called := false
	gen := func() (*tls.Certificate, error) {
		called = true
		return nil, errors.New("gen must not be called")
	}
	cert, err := a.Fetch("example.com", gen)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if called {
		t.Errorf("gen: got called, want ignored")
	}
	if err := cert.Leaf.CheckSignatureFrom(a.Certificate()); err != nil {
		t.Errorf("leaf signature by our CA: got %v, want nil", err)
	}
	if again, _ := a.Leaf("example.com"); again != cert {
		t.Errorf("Leaf after Fetch: got a new certificate, want the cached one")
	}
}

func TestAccessors(t *testing.T) {
	a := newAuthority(t, Config{})
	block, rest := pem.Decode(a.CertPEM())
	if block == nil || block.Type != "CERTIFICATE" || len(rest) != 0 {
		t.Fatalf("CertPEM: got %q, want one CERTIFICATE block", a.CertPEM())
	}
	if got, want := string(block.Bytes), string(a.Certificate().Raw); got != want {
		t.Errorf("CertPEM: got DER other than Certificate().Raw")
	}
	if got, want := string(a.CertDER()), string(a.Certificate().Raw); got != want {
		t.Errorf("CertDER: got DER other than Certificate().Raw")
	}
	a.CertDER()[0] ^= 0xff // callers get a copy
	if a.CertDER()[0] != a.Certificate().Raw[0] {
		t.Errorf("CertDER: got the internal slice, want a copy")
	}

	fp := a.Fingerprint()
	if !regexp.MustCompile(`^([0-9A-F]{2}:){31}[0-9A-F]{2}$`).MatchString(fp) {
		t.Errorf("Fingerprint: got %q, want 32 upper-case hex bytes joined by colons", fp)
	}
	sum := sha256.Sum256(a.Certificate().Raw)
	if got, want := fp[:8], fmt.Sprintf("%02X:%02X:%02X", sum[0], sum[1], sum[2]); got != want {
		t.Errorf("Fingerprint prefix: got %s, want %s", got, want)
	}
}

// handshake runs a TLS handshake over a pipe between a.TLSConfig(fallback)
// and a client trusting only a's CA, and returns the client's state.
func handshake(t *testing.T, a *Authority, fallback, serverName string) (tls.ConnectionState, error) {
	t.Helper()
	c1, c2 := net.Pipe()
	deadline := time.Now().Add(10 * time.Second)
	_ = c1.SetDeadline(deadline)
	_ = c2.SetDeadline(deadline)
	srv := tls.Server(c1, a.TLSConfig(fallback))
	cli := tls.Client(c2, &tls.Config{
		RootCAs:    rootPool(a),
		ServerName: serverName,
		NextProtos: []string{"http/1.1"},
	})
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Handshake() }()
	err := cli.Handshake()
	// Close the pipe, not the TLS conns: a close_notify on an unread
	// synchronous pipe would block until the deadline.
	_ = c2.Close()
	_ = c1.Close()
	<-srvErr
	return cli.ConnectionState(), err
}

func TestTLSHandshake(t *testing.T) {
	a := newAuthority(t, Config{})
	tests := []struct {
		name       string
		fallback   string // the CONNECT host
		serverName string // what the client verifies (and sends as SNI unless an IP)
		wantDNS    string
		wantIP     string
	}{
		{"SNI equals CONNECT host", "example.com:443", "example.com", "example.com", ""},
		{"SNI differs from CONNECT host", "203.0.113.9:443", "api.example.org", "api.example.org", ""},
		{"IP host, no SNI", "127.0.0.1:8443", "127.0.0.1", "", "127.0.0.1"},
		{"IPv6 host, no SNI", "[::1]:443", "::1", "", "::1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := handshake(t, a, tc.fallback, tc.serverName)
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if st.Version < tls.VersionTLS12 {
				t.Errorf("version: got %x, want TLS 1.2 or later", st.Version)
			}
			if got, want := st.NegotiatedProtocol, "http/1.1"; got != want {
				t.Errorf("ALPN: got %q, want %q", got, want)
			}
			leaf := st.PeerCertificates[0]
			if tc.wantDNS != "" {
				if got := leaf.DNSNames; len(got) != 1 || got[0] != tc.wantDNS {
					t.Errorf("DNS SAN: got %q, want [%s]", got, tc.wantDNS)
				}
			} else if got := leaf.IPAddresses; len(got) != 1 || !got[0].Equal(net.ParseIP(tc.wantIP)) {
				t.Errorf("IP SAN: got %v, want [%s]", got, tc.wantIP)
			}
			if got, want := len(st.PeerCertificates), 2; got != want {
				t.Errorf("chain sent: got %d certificates, want %d", got, want)
			}
		})
	}

	t.Run("client verifying another name fails", func(t *testing.T) {
		// The client sends SNI example.com, so it gets example.com's leaf,
		// which does not name the IP the client verifies here.
		st, err := handshake(t, a, "example.com", "192.0.2.1")
		var verr *tls.CertificateVerificationError
		if !errors.As(err, &verr) {
			t.Fatalf("got %v (state %v), want a certificate verification error", err, st.HandshakeComplete)
		}
	})
	t.Run("client trusting another CA fails", func(t *testing.T) {
		other := newAuthority(t, Config{})
		c1, c2 := net.Pipe()
		_ = c1.SetDeadline(time.Now().Add(10 * time.Second))
		_ = c2.SetDeadline(time.Now().Add(10 * time.Second))
		srv := tls.Server(c1, a.TLSConfig("example.com"))
		go func() { _ = srv.Handshake() }()
		defer c1.Close()
		defer c2.Close()
		cli := tls.Client(c2, &tls.Config{RootCAs: rootPool(other), ServerName: "example.com"})
		var uerr x509.UnknownAuthorityError
		if err := cli.Handshake(); !errors.As(err, &uerr) {
			t.Errorf("got %v, want x509.UnknownAuthorityError", err)
		}
	})
}

func TestTLSConfig(t *testing.T) {
	a := newAuthority(t, Config{})
	cfg := a.TLSConfig("example.com")
	if got, want := cfg.MinVersion, uint16(tls.VersionTLS12); got != want {
		t.Errorf("MinVersion: got %x, want %x", got, want)
	}
	if got := cfg.NextProtos; len(got) != 1 || got[0] != "http/1.1" {
		t.Errorf("NextProtos: got %q, want [http/1.1]", got)
	}
	if _, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "bad name"}); !errors.Is(err, ErrInvalidHost) {
		t.Errorf("GetCertificate with an invalid SNI: got %v, want ErrInvalidHost", err)
	}
	if _, err := a.TLSConfig("").GetCertificate(&tls.ClientHelloInfo{}); !errors.Is(err, ErrInvalidHost) {
		t.Errorf("GetCertificate with no SNI and no fallback: got %v, want ErrInvalidHost", err)
	}
}

// Tickets from one of the Authority's TLS configurations resume on another
// (each intercepted connection has its own), for the name they were issued
// for only.
func TestSessionTickets(t *testing.T) {
	a := newAuthority(t, Config{})
	// A client cache that offers its one session whatever the name, and a
	// client that skips verification, so that only the server decides.
	cache := &anyNameCache{}
	handshake := func(sni string) bool {
		t.Helper()
		cli, srv := net.Pipe()
		defer cli.Close()
		defer srv.Close()
		done := make(chan error, 1)
		go func() {
			s := tls.Server(srv, a.TLSConfig("fallback.example"))
			if err := s.Handshake(); err != nil {
				done <- err
				return
			}
			_, err := s.Write([]byte("x")) // the client reads the ticket before it
			done <- err
		}()
		c := tls.Client(cli, &tls.Config{ServerName: sni, InsecureSkipVerify: true, ClientSessionCache: cache})
		if err := c.Handshake(); err != nil {
			t.Fatalf("client handshake for %s: %v", sni, err)
		}
		if _, err := c.Read(make([]byte, 1)); err != nil {
			t.Fatalf("client read: %v", err)
		}
		if err := <-done; err != nil {
			t.Fatalf("server: %v", err)
		}
		return c.ConnectionState().DidResume
	}
	for i, tc := range []struct {
		sni         string
		wantResumed bool
	}{
		{"a.example", false}, // first contact
		{"a.example", true},  // a new configuration accepts the ticket
		{"b.example", false}, // the same ticket for another name: a full handshake
		{"b.example", true},
	} {
		if got := handshake(tc.sni); got != tc.wantResumed {
			t.Errorf("handshake %d (%s): resumed %v, want %v", i, tc.sni, got, tc.wantResumed)
		}
	}
}

// anyNameCache holds the latest session and offers it for every name.
type anyNameCache struct {
	mu sync.Mutex
	cs *tls.ClientSessionState
}

func (c *anyNameCache) Get(string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cs, c.cs != nil
}

func (c *anyNameCache) Put(_ string, cs *tls.ClientSessionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cs != nil {
		c.cs = cs
	}
}
