package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// listedNets is an AddressBlocker that, once switched on, lists its
// networks as malware; by default every loopback address (whichever of
// 127.0.0.1 and ::1 "localhost" resolves to).
type listedNets struct {
	nets    []netip.Prefix
	on      atomic.Bool
	version atomic.Uint64
	asked   atomic.Int32
}

func (l *listedNets) set(on bool) {
	l.on.Store(on)
	l.version.Add(1)
}

func (l *listedNets) Version() uint64 { return l.version.Load() }

func (l *listedNets) Blocked(ip netip.Addr) (Decision, bool) {
	l.asked.Add(1)
	in := l.nets == nil && ip.IsLoopback()
	for _, p := range l.nets {
		in = in || p.Contains(ip)
	}
	if !l.on.Load() || !in {
		return Decision{}, false
	}
	return Decision{Action: Block, Verdict: "malware", Category: "hijacked-network", Threat: "SBL1",
		Rule: "feed drop", Stage: "protection", VerdictSource: "database"}, true
}

// TestBlockAddress: an address list checked on the address dialled blocks
// a plain GET, a CONNECT and a request inside an intercepted tunnel to a
// host name that resolves into it; before it is listed the same requests
// go through. The proxy's pooled upstream connections, opened before the
// listing, are not reused for the listed address.
func TestBlockAddress(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "origin") }))
	defer origin.Close()
	// The TLS origin's certificate names localhost (httptest's does not).
	originCA := testCA(t)
	tlsOrigin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls origin over %s", r.Proto)
	}))
	tlsOrigin.TLS = originCA.TLSConfig("localhost").Clone()
	tlsOrigin.TLS.NextProtos = []string{"h2", "http/1.1"}
	tlsOrigin.EnableHTTP2 = true // the pooled connection is an HTTP/2 one
	tlsOrigin.StartTLS()
	defer tlsOrigin.Close()
	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())
	_, tlsPort, _ := net.SplitHostPort(tlsOrigin.Listener.Addr().String())
	byName := "http://localhost:" + port + "/x"
	tlsByName := "https://localhost:" + tlsPort + "/y"

	var list listedNets
	ca := testCA(t)
	tp := startProxy(t, Config{
		BlockAddresses: &list,
		// Intercept the TLS origin's port, tunnel anything else.
		Decider: DeciderFunc(func(_ context.Context, r *Request) (Decision, error) {
			return Decision{Action: Allow, Intercept: r.URL.Port() == tlsPort}, nil
		}),
		Intercept: func(host string) (*tls.Config, error) { return ca.TLSConfig(host), nil },
		RootCAs:   poolOf(originCA.Certificate()),
	})
	plain := tp.client(t)
	trusting := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(tp.url),
		TLSClientConfig: &tls.Config{RootCAs: poolOf(ca.Certificate())}}}
	t.Cleanup(trusting.CloseIdleConnections)
	get := func(c *http.Client, u string) (int, string, http.Header) {
		t.Helper()
		resp, err := c.Get(u)
		if err != nil {
			return 0, err.Error(), nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	connect := func() string {
		t.Helper()
		status, _ := tp.rawRequest(t, "CONNECT localhost:"+port+" HTTP/1.1\r\nHost: localhost:"+port+"\r\n\r\n")
		return status
	}

	// Not listed: everything goes through.
	if code, body, _ := get(plain, byName); code != 200 || body != "origin" {
		t.Fatalf("plain GET before listing: %d %q", code, body)
	}
	if code, body, _ := get(trusting, tlsByName); code != 200 || body != "tls origin over HTTP/2.0" {
		t.Fatalf("intercepted GET before listing: %d %q", code, body)
	}
	if s := connect(); !strings.Contains(s, " 200 ") {
		t.Fatalf("CONNECT before listing: %q", s)
	}
	if list.asked.Load() == 0 {
		t.Fatal("BlockAddress was never asked")
	}

	list.set(true)
	code, body, h := get(plain, byName)
	if code != http.StatusForbidden || !strings.Contains(body, "SBL1") || h.Get("X-Picket-Reason") != "verdict malware" {
		t.Errorf("plain GET to a listed address: got %d %q %v, want 403 naming SBL1", code, body, h)
	}
	l := tp.waitAccess(t, func(l map[string]any) bool { return l[fURL] == byName && l[fAction] == "block" })
	if l[fVerdict] != "malware" || l[fRule] != "feed drop" || l[fStatus] != float64(403) {
		t.Errorf("access line of the listed GET: %v", l)
	}
	if code, body, _ := get(trusting, tlsByName); code != http.StatusForbidden || !strings.Contains(body, "SBL1") {
		t.Errorf("intercepted GET to a listed address: got %d %q, want 403 naming SBL1\n%s", code, body, tp.app.String())
	}
	if s := connect(); !strings.Contains(s, " 403 ") {
		t.Errorf("CONNECT to a listed address: got %q, want 403", s)
	}
	tp.waitAccess(t, func(l map[string]any) bool {
		return l[fMethod] == "CONNECT" && l[fAction] == "block" && l[fVerdict] == "malware"
	})
}

// TestUpstreamClient: the client for Picket's own downloads follows the
// proxy's destination policy and address lists.
func TestUpstreamClient(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "feed") }))
	defer origin.Close()
	get := func(c *http.Client) error {
		resp, err := c.Get(origin.URL)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	// Default policy: loopback is never dialled.
	err := get(upstreamClient(t, Config{}))
	if _, denied := isDenied(err); !denied {
		t.Errorf("default policy: got %v, want the destination refused", err)
	}
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	if err := get(upstreamClient(t, Config{AllowDestinations: loopback})); err != nil {
		t.Errorf("loopback allowed: %v", err)
	}
	var list listedNets
	list.set(true)
	err = get(upstreamClient(t, Config{AllowDestinations: loopback, BlockAddresses: &list}))
	if d, ok := listed(err); !ok || d.Threat != "SBL1" {
		t.Errorf("listed address: got %v, want it blocked", err)
	}
	var ue interface{ Timeout() bool }
	if errors.As(err, &ue) && ue.Timeout() {
		t.Errorf("a refusal looks like a timeout: %v", err)
	}
	// Every request and tunnel asks listed about its dial: without an
	// error that costs nothing.
	if _, ok := listed(nil); ok {
		t.Error("no error is listed")
	}
	if n := testing.AllocsPerRun(100, func() { listed(nil) }); n != 0 {
		t.Errorf("listed(nil) allocates %v times, want 0", n)
	}
}

// upstreamClient is an HTTP client over NewUpstream(cfg), the seam of
// Picket's own downloads.
func upstreamClient(t *testing.T, cfg Config) *http.Client {
	t.Helper()
	u, err := NewUpstream(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.CloseIdleConnections)
	return &http.Client{Transport: u}
}

// TestBlockAddressBusyConnection: a pooled HTTP/1.1 connection that was
// carrying a request when its address was listed finishes that request,
// and is never used again: the next request on it fails before a byte is
// written and is dialled anew, which the dialer refuses.
func TestBlockAddressBusyConnection(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	seen := map[string]int{}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path]++
		mu.Unlock()
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "origin "+r.URL.Path)
	}))
	defer origin.Close()
	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())
	base := "http://localhost:" + port
	var list listedNets
	tp := startProxy(t, Config{BlockAddresses: &list})
	c := tp.client(t)
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := c.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	slow := make(chan string, 1)
	go func() {
		code, body := get("/slow")
		slow <- fmt.Sprint(code, " ", body)
	}()
	<-entered
	list.set(true)
	// While the first connection is busy, a new request dials: refused.
	if code, _ := get("/b"); code != http.StatusForbidden {
		t.Errorf("request while the pooled connection is busy: %d, want 403", code)
	}
	close(release)
	if got := <-slow; got != "200 origin /slow" {
		t.Errorf("the request in flight when the address was listed: %q, want it finished", got)
	}
	// The connection is idle in the pool again, its address now listed.
	if code, body := get("/c"); code != http.StatusForbidden || !strings.Contains(body, "malware") {
		t.Errorf("request after the busy connection went idle: %d %q, want a block", code, body)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["/b"] != 0 || seen["/c"] != 0 || seen["/slow"] != 1 {
		t.Errorf("the origin saw %v, want /slow only", seen)
	}
}
