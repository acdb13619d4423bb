package proxy

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elazarl/goproxy"
	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/internal/testutil"
)

// testParent is a real forward proxy (goproxy, with its own transport and
// plain CONNECT tunnels) playing Picket's parent on loopback. It records
// what it was asked for and the credentials it got, and can require Basic
// credentials, refuse CONNECTs to some targets, and answer requests for
// names itself (so that no test name is ever looked up in DNS).
type testParent struct {
	addr string
	url  *url.URL // http://addr, with the credentials when it requires them

	user, pass string          // required credentials; "" requires none
	refuse     map[string]int  // CONNECT target → status to answer instead
	names      map[string]bool // hosts answered by the parent itself

	mu   sync.Mutex
	seen []string // "GET http://..." or "CONNECT host:port", in order
	auth []string // the Proxy-Authorization of each request seen
	srv  *httptest.Server
}

func startParent(t *testing.T, user, pass string) *testParent {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startParentOn(t, ln, user, pass)
}

// startParentOn serves a testParent on ln.
func startParentOn(t *testing.T, ln net.Listener, user, pass string) *testParent {
	t.Helper()
	p := &testParent{user: user, pass: pass, refuse: map[string]int{}, names: map[string]bool{}}
	gp := goproxy.NewProxyHttpServer()
	gp.Tr = &http.Transport{Proxy: nil}
	gp.ConnectDial = nil
	gp.Logger = newStdLogger(zerolog.Nop())
	p.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := r.RequestURI
		p.mu.Lock()
		p.seen = append(p.seen, r.Method+" "+target)
		p.auth = append(p.auth, r.Header.Get("Proxy-Authorization"))
		status := p.refuse[target]
		p.mu.Unlock()
		if p.user != "" && r.Header.Get("Proxy-Authorization") != basicAuth(p.user, p.pass) {
			w.Header().Set("Proxy-Authenticate", `Basic realm="parent"`)
			http.Error(w, "parent wants credentials", http.StatusProxyAuthRequired)
			return
		}
		if status != 0 {
			http.Error(w, "refused by the parent", status)
			return
		}
		if r.Method != http.MethodConnect && p.names[r.URL.Hostname()] {
			io.WriteString(w, "answered by the parent for "+r.URL.Host)
			return
		}
		r.Header.Del("Proxy-Authorization")
		gp.ServeHTTP(w, r)
	})}}
	p.srv.Start()
	t.Cleanup(p.srv.Close)
	p.addr = ln.Addr().String()
	p.url = &url.URL{Scheme: "http", Host: p.addr}
	if user != "" {
		p.url.User = url.UserPassword(user, pass)
	}
	return p
}

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// requests returns what the parent was asked for so far.
func (p *testParent) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

func (p *testParent) authSeen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.auth...)
}

// listenOn starts an HTTP origin on a loopback address of our choice
// (127.0.0.2, ...): every 127/8 address is local on Linux.
func listenOn(t *testing.T, ip string, h http.Handler) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: h}}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// noNames is the resolver of tests: no name resolves, and none is ever
// sent to DNS.
func noNames(context.Context, string) ([]netip.Addr, error) {
	return nil, &net.DNSError{Err: "no such host (test resolver)", IsNotFound: true}
}

// TestParentEveryPath: with a parent, plain HTTP on the fast path and on
// net/http goes to it in absolute form, a tunnel and an intercepted
// connection go through a CONNECT on it, each with Picket's credentials;
// Picket still decides (a block is answered by Picket and never reaches
// the parent) and logs the full URLs, and the credentials appear in no log.
func TestParentEveryPath(t *testing.T) {
	const secret = "pw-N0t-In-Logs"
	parent := startParent(t, "picket", secret)
	var originAuth atomic.Int32
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Authorization") != "" {
			originAuth.Add(1)
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s body=%q", r.Method, r.URL.Path, b)
	})
	origin := httptest.NewServer(handler)
	defer origin.Close()
	tunnelled := httptest.NewTLSServer(handler)
	defer tunnelled.Close()
	inspected := httptest.NewTLSServer(handler)
	defer inspected.Close()
	inspectedHost := strings.TrimPrefix(inspected.URL, "https://")

	ca := testCA(t)
	tp := startProxy(t, Config{
		Parents: []*url.URL{parent.url},
		Decider: DeciderFunc(func(_ context.Context, r *Request) (Decision, error) {
			switch {
			case strings.Contains(r.URL.Path, "blocked"):
				return Decision{Action: Block, Reason: "test"}, nil
			case r.Connect && r.URL.Host == inspectedHost:
				return Decision{Action: Allow, Intercept: true}, nil
			}
			return Decision{Action: Allow}, nil
		}),
		Intercept: func(host string) (*tls.Config, error) { return ca.TLSConfig(host), nil },
		RootCAs:   poolOf(tunnelled.Certificate(), inspected.Certificate()),
	})
	tp.up.lookup = noNames
	tr := &http.Transport{Proxy: http.ProxyURL(tp.url), TLSClientConfig: &tls.Config{RootCAs: poolOf(ca.Certificate(), tunnelled.Certificate())},
		ProxyConnectHeader: http.Header{"Proxy-Authorization": {basicAuth("client", "client-secret")}}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}

	for _, tc := range []struct {
		name, method, url, body string
		want                    string // the body the client gets
		parent                  string // what the parent must have been asked for
	}{
		{"GET, fast path", "GET", origin.URL + "/fast", "", `GET /fast body=""`, "GET " + origin.URL + "/fast"},
		{"POST, net/http path", "POST", origin.URL + "/post", "form=1", `POST /post body="form=1"`, "POST " + origin.URL + "/post"},
		{"tunnel", "GET", tunnelled.URL + "/tunnel", "", `GET /tunnel body=""`, "CONNECT " + strings.TrimPrefix(tunnelled.URL, "https://")},
		{"intercepted", "GET", inspected.URL + "/inside", "", `GET /inside body=""`, "CONNECT " + inspectedHost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(parent.requests())
			req, _ := http.NewRequest(tc.method, tc.url, strings.NewReader(tc.body))
			if tc.body == "" {
				req.Body = nil
			}
			if strings.HasPrefix(tc.url, "http:") { // inside a tunnel it is the client's own business
				req.Header.Set("Proxy-Authorization", basicAuth("client", "client-secret"))
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != tc.want {
				t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, b, tc.want)
			}
			got := parent.requests()[before:]
			if len(got) != 1 || got[0] != tc.parent {
				t.Errorf("the parent was asked %q, want [%q]", got, tc.parent)
			}
		})
	}
	// Inside the intercepted tunnel Picket decides every request: a block
	// is Picket's page, and the parent gets no new CONNECT for it (the
	// tunnel's connection is pooled).
	before := len(parent.requests())
	resp, err := c.Get(inspected.URL + "/blocked")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Picket-Reason") != "test" {
		t.Errorf("blocked inside the tunnel: got %d %q, want Picket's 403", resp.StatusCode, resp.Header.Get("X-Picket-Reason"))
	}
	if got := parent.requests()[before:]; len(got) != 0 {
		t.Errorf("a blocked request reached the parent: %q", got)
	}
	tp.waitAccess(t, func(l map[string]any) bool { return l["url"] == inspected.URL+"/inside" })

	for i, a := range parent.authSeen() {
		if a != basicAuth("picket", secret) {
			t.Errorf("request %d to the parent carried Proxy-Authorization %q, want Picket's own", i, a)
		}
	}
	if n := originAuth.Load(); n != 0 {
		t.Errorf("%d requests reached an origin with a Proxy-Authorization header", n)
	}
	st := tp.Parents()
	if len(st) != 1 || !st[0].Up || st[0].Proxy != parent.addr || st[0].Requests < 4 || st[0].Failures != 0 {
		t.Errorf("status: got %+v, want %s up with 4 or more requests", st, parent.addr)
	}
	for name, buf := range map[string]*testutil.SyncBuffer{"access": tp.access, "application": tp.app} {
		if text := buf.String(); strings.Contains(text, secret) || strings.Contains(text, base64.StdEncoding.EncodeToString([]byte("picket:"+secret))) {
			t.Errorf("the %s log holds the parent's credentials", name)
		}
	}
}

// TestParentDestinationPolicy: the destination policy applies to what the
// client asked for before anything goes to the parent — an address, and
// the addresses a name resolves to here — and to the parent's own address.
func TestParentDestinationPolicy(t *testing.T) {
	parent := startParent(t, "", "")
	parent.names["unresolved.test"] = true
	denied := listenOn(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("a denied destination was reached: %s", r.URL)
	}))
	tp := startProxy(t, Config{
		Parents:           []*url.URL{parent.url},
		AllowDestinations: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, // the parent, not 127.0.0.2
	})
	tp.up.lookup = func(_ context.Context, host string) ([]netip.Addr, error) {
		if host == "metadata.test" {
			return []netip.Addr{netip.MustParseAddr("169.254.169.254")}, nil
		}
		return noNames(nil, host)
	}
	deniedHost := strings.TrimPrefix(denied.URL, "http://")
	_, port, _ := net.SplitHostPort(deniedHost)
	for _, tc := range []struct {
		name, raw  string
		wantStatus string
		wantParent bool
	}{
		{"address", "GET " + denied.URL + "/ HTTP/1.1\r\nHost: " + deniedHost + "\r\n\r\n", "403", false},
		{"odd spelling", "GET http://0x7f.2:" + port + "/ HTTP/1.1\r\nHost: x\r\n\r\n", "403", false},
		{"tunnel", "CONNECT " + deniedHost + " HTTP/1.1\r\nHost: " + deniedHost + "\r\n\r\n", "403", false},
		{"name resolving to a denied address", "GET http://metadata.test/ HTTP/1.1\r\nHost: metadata.test\r\n\r\n", "403", false},
		{"name that does not resolve here", "GET http://unresolved.test/ HTTP/1.1\r\nHost: unresolved.test\r\n\r\n", "200", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(parent.requests())
			status, _ := tp.rawRequest(t, tc.raw)
			if !strings.Contains(status, " "+tc.wantStatus+" ") {
				t.Errorf("got %q, want %s", status, tc.wantStatus)
			}
			if got := len(parent.requests()) - before; (got > 0) != tc.wantParent {
				t.Errorf("the parent was asked %d times, want it asked: %v", got, tc.wantParent)
			}
		})
	}

	// The parent's own address: refused at start when it is an address.
	_, err := New(Config{Parents: []*url.URL{parent.url}, AllowDestinations: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
	if err == nil || !strings.Contains(err.Error(), parent.addr) || !strings.Contains(err.Error(), "allow_destinations") {
		t.Errorf("a parent on a denied address: got %v, want an error naming it and allow_destinations", err)
	}
	// ... and when dialled, when it is a name (localhost resolves from
	// /etc/hosts, never DNS).
	_, pport, _ := net.SplitHostPort(parent.addr)
	byName := &url.URL{Scheme: "http", Host: "localhost:" + pport}
	origin := listenOn(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	tp2 := startProxy(t, Config{Parents: []*url.URL{byName}, AllowDestinations: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
	before := len(parent.requests())
	resp, err := tp2.client(t).Get(origin.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), "does not connect to the parent proxy localhost:"+pport) {
		t.Errorf("a parent whose name resolves to a denied address: got %d %q", resp.StatusCode, b)
	}
	if len(parent.requests()) != before {
		t.Errorf("the denied parent was reached")
	}
	if st := tp2.Parents(); len(st) != 1 || st[0].Up || !strings.Contains(st[0].LastError, "not allowed") {
		t.Errorf("status of the denied parent: got %+v, want down with the reason", st)
	}
}

// TestParentDirect: direct_hosts and direct_networks are reached without
// the parent; everything else goes to it.
func TestParentDirect(t *testing.T) {
	parent := startParent(t, "", "")
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "direct") })
	byNetwork := listenOn(t, "127.0.0.2", hello)
	byHost := listenOn(t, "127.0.0.3", hello)
	viaParent := listenOn(t, "127.0.0.4", hello)
	tp := startProxy(t, Config{
		Parents:        []*url.URL{parent.url},
		DirectHosts:    func(h string) bool { return h == "127.0.0.3" },
		DirectNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")},
	})
	tp.up.lookup = noNames
	c := tp.client(t)
	for _, tc := range []struct {
		url        string
		wantParent bool
	}{{byNetwork.URL, false}, {byHost.URL, false}, {viaParent.URL, true}} {
		before := len(parent.requests())
		resp, err := c.Get(tc.url + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: got %d", tc.url, resp.StatusCode)
		}
		if got := len(parent.requests()) - before; (got == 1) != tc.wantParent {
			t.Errorf("%s: the parent was asked %d times, want through the parent: %v", tc.url, got, tc.wantParent)
		}
	}
}

// TestGoesDirect: the routing decision and the destination check on what
// the client asked for, with a resolver of our own.
func TestGoesDirect(t *testing.T) {
	u, err := NewUpstream(Config{
		Parents:        []*url.URL{{Scheme: "http", Host: "192.0.2.1:3128"}},
		DirectHosts:    func(h string) bool { return h == "intranet.example" || h == "192.0.2.77" },
		DirectNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	})
	if err != nil {
		t.Fatal(err)
	}
	lookups := 0
	u.lookup = func(_ context.Context, host string) ([]netip.Addr, error) {
		lookups++
		switch host {
		case "wiki.corp.example":
			return []netip.Addr{netip.MustParseAddr("10.1.2.3")}, nil
		case "rebind.example":
			return []netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("127.0.0.1")}, nil
		case "www.example":
			return []netip.Addr{netip.MustParseAddr("198.51.100.2")}, nil
		}
		return noNames(nil, host)
	}
	for _, tc := range []struct {
		host, pin  string
		wantDirect bool
		wantDenied bool
	}{
		{"www.example:80", "", false, false},
		{"unknown.example:443", "", false, false}, // the parent resolves it
		{"intranet.example:80", "", true, false},
		{"wiki.corp.example:443", "", true, false},
		{"10.9.9.9:80", "", true, false},
		{"192.0.2.77:80", "", true, false},
		{"198.51.100.9:443", "", false, false},
		{"127.0.0.1:80", "", false, true},
		{"2130706433:80", "", false, true},
		{"[::1]:443", "", false, true},
		{"169.254.169.254:80", "", false, true},
		{"rebind.example:80", "", false, true},
		{"www.example:443", "10.0.0.5:443", true, false},          // transparent: the original destination decides
		{"www.example:443", "127.0.0.1:443", false, true},         // ... and is checked
		{"intranet.example:443", "198.51.100.3:443", true, false}, // a direct host stays direct
	} {
		direct, err := u.goesDirect(context.Background(), tc.host, tc.pin)
		if direct != tc.wantDirect || isDeniedErr(err) != tc.wantDenied || (err != nil && !tc.wantDenied) {
			t.Errorf("goesDirect(%q, pin %q): got direct=%v err=%v, want direct=%v denied=%v", tc.host, tc.pin, direct, err, tc.wantDirect, tc.wantDenied)
		}
	}
	// Names are remembered: asking again sends no new lookup.
	n := lookups
	u.goesDirect(context.Background(), "www.example:80", "")
	u.goesDirect(context.Background(), "unknown.example:80", "")
	if lookups != n {
		t.Errorf("repeated names were looked up again (%d lookups, want %d)", lookups, n)
	}
}

// deadParent returns a loopback address where nothing listens (connections
// are refused) and a function that starts a parent there.
func deadParent(t *testing.T) (addr string, revive func() *testParent) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = ln.Addr().String()
	ln.Close()
	return addr, func() *testParent {
		t.Helper()
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("revive %s: %v", addr, err)
		}
		return startParentOn(t, ln, "", "")
	}
}

// TestParentFailover: a parent that cannot be reached is skipped for its
// back-off, which doubles while it stays down; requests (with bodies),
// tunnels and intercepted connections go to the next parent meanwhile;
// status and the log show it; once back it is used again.
func TestParentFailover(t *testing.T) {
	deadAddr, revive := deadParent(t)
	live := startParent(t, "", "")
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %q", r.Method, b)
	}))
	defer origin.Close()
	tlsOrigin := httptest.NewTLSServer(origin.Config.Handler)
	defer tlsOrigin.Close()
	ca := testCA(t)
	tp := startProxy(t, Config{
		Parents:          []*url.URL{{Scheme: "http", Host: deadAddr}, live.url},
		ParentBackoff:    10 * time.Second,
		ParentMaxBackoff: 25 * time.Second,
		Decider:          interceptAll,
		Intercept:        func(host string) (*tls.Config, error) { return ca.TLSConfig(host), nil },
		RootCAs:          poolOf(tlsOrigin.Certificate()),
	})
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	var clock sync.Mutex
	tp.up.now = func() time.Time { clock.Lock(); defer clock.Unlock(); return now }
	advance := func(d time.Duration) { clock.Lock(); now = now.Add(d); clock.Unlock() }
	newClient := func() *http.Client {
		tr := &http.Transport{Proxy: http.ProxyURL(tp.url), TLSClientConfig: &tls.Config{RootCAs: poolOf(ca.Certificate())}, DisableKeepAlives: true}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 20 * time.Second}
	}
	post := func(body string) {
		t.Helper()
		resp, err := newClient().Post(origin.URL+"/p", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("POST %q", body); resp.StatusCode != 200 || string(b) != want {
			t.Fatalf("POST through the failover: got %d %q, want 200 %q", resp.StatusCode, b, want)
		}
	}
	state := func() ParentStatus { return tp.Parents()[0] }

	// 1. The first request finds the first parent down and goes to the
	// second, its body intact.
	post("first body")
	if st := state(); st.Up || st.Failures != 1 || st.FailuresInARow != 1 || !st.RetryAt.Equal(now.Add(10*time.Second)) || !strings.Contains(st.LastError, "refused") {
		t.Fatalf("after the first failure: %+v, want down, retry in 10s", st)
	}
	tp.waitApp(t, "parent proxy down")

	// 2. Within the back-off it is not tried: a tunnel and an intercepted
	// request go straight to the live parent.
	for _, u := range []string{tlsOrigin.URL + "/inside"} {
		resp, err := newClient().Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: got %d", u, resp.StatusCode)
		}
	}
	if st := state(); st.Failures != 1 {
		t.Errorf("the parent was tried during its back-off: %d failures", st.Failures)
	}

	// 3. After the back-off one request probes it; it fails again and the
	// back-off doubles (10s, 20s, then the 25s maximum).
	for i, want := range []time.Duration{20 * time.Second, 25 * time.Second} {
		advance(time.Duration(10<<i)*time.Second + time.Second)
		post(fmt.Sprintf("probe %d", i))
		if st := state(); st.Failures != uint64(2+i) || !st.RetryAt.Equal(now.Add(want)) {
			t.Fatalf("after probe %d: %+v, want retry in %s", i, st, want)
		}
	}

	// 4. Every parent down: the one whose back-off ends first is still
	// tried, and the client gets a clear 502.
	live.srv.Close()
	resp, err := newClient().Get(origin.URL + "/all-down")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), "could not be reached") {
		t.Errorf("every parent down: got %d %q, want 502 naming the parent", resp.StatusCode, b)
	}

	// 5. The first parent comes back: the request after its back-off finds
	// it, and it is up again.
	back := revive()
	advance(26 * time.Second)
	post("back")
	if st := state(); !st.Up || st.FailuresInARow != 0 || st.Requests != 1 {
		t.Errorf("after it came back: %+v, want up with one request", st)
	}
	if got := back.requests(); len(got) != 1 || got[0] != "POST "+origin.URL+"/p" {
		t.Errorf("the revived parent was asked %q", got)
	}
	tp.waitApp(t, "parent proxy up again")
}

// waitApp waits for an application-log line with msg.
func (tp *testProxy) waitApp(t *testing.T, msg string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range tp.app.Lines() {
			if l["message"] == msg {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no %q in the application log:\n%s", msg, tp.app.String())
}

// TestParentRefusals: a parent that refuses a CONNECT target is answered
// with the status it gave, and stays up; a parent that refuses Picket's
// credentials is failed over (its 407 never reaches the client, who would
// take it for Picket's), and without another parent the client gets 502.
func TestParentRefusals(t *testing.T) {
	strict := startParent(t, "picket", "right")
	strict.url.User = url.UserPassword("picket", "wrong")
	open := startParent(t, "", "")
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer origin.Close()
	tlsOrigin := httptest.NewTLSServer(origin.Config.Handler)
	defer tlsOrigin.Close()
	tlsHost := strings.TrimPrefix(tlsOrigin.URL, "https://")
	open.refuse[tlsHost] = http.StatusForbidden

	only := startProxy(t, Config{Parents: []*url.URL{strict.url}})
	for _, raw := range []string{
		"GET " + origin.URL + "/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT " + tlsHost + " HTTP/1.1\r\nHost: " + tlsHost + "\r\n\r\n",
	} {
		status, rest := only.rawRequest(t, raw)
		if !strings.Contains(status, " 502 ") || strings.Contains(rest, "Proxy-Authenticate") || !strings.Contains(rest, "refused Picket") {
			t.Errorf("wrong credentials, no other parent: got %q\n%s", status, rest)
		}
	}
	if st := only.Parents()[0]; st.Up || !strings.Contains(st.LastError, "credentials") {
		t.Errorf("status after 407: %+v, want down for its credentials", st)
	}

	both := startProxy(t, Config{Parents: []*url.URL{strict.url, open.url}})
	if status, _ := both.rawRequest(t, "GET "+origin.URL+"/ HTTP/1.1\r\nHost: x\r\n\r\n"); !strings.Contains(status, " 200 ") {
		t.Errorf("wrong credentials on the first parent, failover: got %q", status)
	}
	status, _ := both.rawRequest(t, "CONNECT "+tlsHost+" HTTP/1.1\r\nHost: "+tlsHost+"\r\n\r\n")
	if !strings.Contains(status, " 403 ") {
		t.Errorf("a CONNECT the parent refused: got %q, want 403", status)
	}
	if st := both.Parents()[1]; !st.Up {
		t.Errorf("a parent that refused one target was put down: %+v", st)
	}
}

// TestParentConnectAnswerBounded: a parent that accepts but never answers
// the CONNECT is given up after the dial timeout, counted as down, and the
// next parent serves the tunnel.
func TestParentConnectAnswerBounded(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	live := startParent(t, "", "")
	tlsOrigin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer tlsOrigin.Close()
	tp := startProxy(t, Config{Parents: []*url.URL{{Scheme: "http", Host: silent.Addr().String()}, live.url}, DialTimeout: 300 * time.Millisecond})
	tr := &http.Transport{Proxy: http.ProxyURL(tp.url), TLSClientConfig: &tls.Config{RootCAs: poolOf(tlsOrigin.Certificate())}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Get(tlsOrigin.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	st := tp.Parents()
	if resp.StatusCode != 200 || st[0].Up || !strings.Contains(st[0].LastError, "no answer to CONNECT") || st[1].Requests != 1 {
		t.Errorf("got %d, parents %+v: want 200 through the second parent, the first down", resp.StatusCode, st)
	}
}

// TestNoEnvironmentProxy: HTTP(S)_PROXY never decides where Picket
// connects: goproxy's ConnectDial (installed from the environment) is off
// and no transport reads the environment, so no dial can bypass the
// dialer's destination check.
func TestNoEnvironmentProxy(t *testing.T) {
	t.Setenv("HTTP_PROXY", "http://192.0.2.1:3128")
	t.Setenv("HTTPS_PROXY", "http://192.0.2.1:3128")
	parent := startParent(t, "", "")
	tp := startProxy(t, Config{Parents: []*url.URL{parent.url}})
	if tp.gp.ConnectDial != nil {
		t.Errorf("goproxy's ConnectDial is set: CONNECTs would bypass the dialer")
	}
	req := httptest.NewRequest("GET", "http://www.example/", nil)
	for name, tr := range map[string]*http.Transport{"direct": tp.up.direct, "https via parents": tp.up.viaTLS, "goproxy": tp.gp.Tr} {
		if tr.Proxy != nil {
			t.Errorf("the %s transport has a Proxy function", name)
		}
	}
	for _, p := range tp.up.parents {
		if got, err := p.http.Proxy(req); err != nil || got.Host != parent.addr {
			t.Errorf("the parent's transport proxies to %v (%v), want %s", got, err, parent.addr)
		}
	}
}

// TestParentHealthFromAnswers: a parent's health follows its answers, not
// its TCP handshakes. A parent that refused Picket's credentials once and
// then answers again over the connection Picket kept is up again, and
// traffic returns to it; a parent that accepts connections but keeps
// refusing the CONNECT (407) or never answering it is backed off longer
// with each failure in a row, as a parent that refuses connections is.
func TestParentHealthFromAnswers(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer origin.Close()
	tlsOrigin := httptest.NewTLSServer(origin.Config.Handler)
	defer tlsOrigin.Close()
	tlsHost := strings.TrimPrefix(tlsOrigin.URL, "https://")
	clockFor := func(tp *testProxy) (now func() time.Time, advance func(time.Duration)) {
		t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
		var mu sync.Mutex
		tp.up.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return t0 }
		return tp.up.now, func(d time.Duration) { mu.Lock(); t0 = t0.Add(d); mu.Unlock() }
	}

	t.Run("up again over a kept connection", func(t *testing.T) {
		first, second := startParent(t, "", ""), startParent(t, "", "")
		target := origin.URL + "/x"
		first.mu.Lock()
		first.refuse[target] = http.StatusProxyAuthRequired
		first.mu.Unlock()
		tp := startProxy(t, Config{Parents: []*url.URL{first.url, second.url}, ParentBackoff: 10 * time.Second})
		_, advance := clockFor(tp)
		get := func() {
			t.Helper()
			if status, _ := tp.rawRequest(t, "GET "+target+" HTTP/1.1\r\nHost: x\r\n\r\n"); !strings.Contains(status, " 200 ") {
				t.Fatalf("GET through the parents: got %q, want 200", status)
			}
		}
		get() // the first parent refuses: down, the second answers
		if st := tp.Parents()[0]; st.Up {
			t.Fatalf("after a 407: %+v, want down", st)
		}
		first.mu.Lock()
		delete(first.refuse, target)
		first.mu.Unlock()
		advance(11 * time.Second)
		get() // the probe: the first parent answers
		if st := tp.Parents()[0]; !st.Up || st.FailuresInARow != 0 {
			t.Errorf("after the first parent answered the probe: %+v, want up", st)
		}
		n := len(first.requests())
		for range 3 {
			get()
		}
		if got := len(first.requests()) - n; got != 3 {
			t.Errorf("after it answered again the first parent got %d of 3 requests, want all (second parent: %q)", got, second.requests())
		}
	})

	for _, tc := range []struct {
		name  string
		start func(t *testing.T) *url.URL
	}{
		{"CONNECT refused with 407", func(t *testing.T) *url.URL {
			p := startParent(t, "picket", "right")
			p.url.User = url.UserPassword("picket", "wrong")
			return p.url
		}},
		{"CONNECT never answered", func(t *testing.T) *url.URL {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				var held []net.Conn
				defer func() {
					for _, c := range held {
						c.Close()
					}
				}()
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					held = append(held, c) // held open, never answered
				}
			}()
			return &url.URL{Scheme: "http", Host: ln.Addr().String()}
		}},
	} {
		t.Run("backs off: "+tc.name, func(t *testing.T) {
			live := startParent(t, "", "")
			tp := startProxy(t, Config{Parents: []*url.URL{tc.start(t), live.url}, ParentBackoff: 10 * time.Second,
				ParentMaxBackoff: time.Hour, DialTimeout: 300 * time.Millisecond})
			now, advance := clockFor(tp)
			for i, want := range []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second} {
				if status, _ := tp.rawRequest(t, "CONNECT "+tlsHost+" HTTP/1.1\r\nHost: "+tlsHost+"\r\n\r\n"); !strings.Contains(status, " 200 ") {
					t.Fatalf("CONNECT %d: got %q, want 200 through the second parent", i, status)
				}
				if st := tp.Parents()[0]; st.Up || st.FailuresInARow != i+1 || !st.RetryAt.Equal(now().Add(want)) {
					t.Fatalf("after failure %d: %+v, want %d in a row, retry in %s", i+1, st, i+1, want)
				}
				advance(want + time.Second)
			}
		})
	}
}
