package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/picket-proxy/picket/certs"
)

// testCA returns a fresh interception CA in a temporary directory.
func testCA(t testing.TB) *certs.Authority {
	t.Helper()
	dir := t.TempDir()
	ca, _, err := certs.Load(certs.Config{CertFile: filepath.Join(dir, "ca.pem"), KeyFile: filepath.Join(dir, "ca.key")})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// interceptAll decides every CONNECT intercepted and blocks URLs whose path
// contains "blocked".
var interceptAll = DeciderFunc(func(_ context.Context, r *Request) (Decision, error) {
	if !r.Connect && strings.Contains(r.URL.Path, "blocked") {
		return Decision{Action: Block, Verdict: "phishing", Rule: "test"}, nil
	}
	return Decision{Action: Allow, Intercept: true}, nil
})

// startIntercepting starts a proxy that intercepts with ca and trusts the
// given upstream certificates.
func startIntercepting(t *testing.T, ca *certs.Authority, upstream ...*x509.Certificate) (*testProxy, *http.Client) {
	t.Helper()
	tp := startProxy(t, Config{
		Decider:   interceptAll,
		Intercept: func(host string) (*tls.Config, error) { return ca.TLSConfig(host), nil },
		RootCAs:   poolOf(upstream...),
	})
	tr := &http.Transport{Proxy: http.ProxyURL(tp.url), TLSClientConfig: &tls.Config{RootCAs: poolOf(ca.Certificate())}}
	t.Cleanup(tr.CloseIdleConnections)
	return tp, &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

func TestInterceptedHTTPS(t *testing.T) {
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "path=%s query=%s", r.URL.Path, r.URL.RawQuery)
	}))
	defer origin.Close()
	ca := testCA(t)
	tp, c := startIntercepting(t, ca, origin.Certificate())

	for i := range 3 { // keep-alive inside the tunnel
		resp, err := c.Get(origin.URL + "/inside?q=1")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "path=/inside query=q=1" {
			t.Fatalf("body: got %q", b)
		}
		leaf := resp.TLS.PeerCertificates[0]
		if err := leaf.CheckSignatureFrom(ca.Certificate()); err != nil {
			t.Fatalf("leaf not signed by the Picket CA: %v", err)
		}
		if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
			t.Errorf("leaf SANs: got IPs %v DNS %v, want 127.0.0.1", leaf.IPAddresses, leaf.DNSNames)
		}
	}
	// The request inside the tunnel is logged with its full URL.
	l := tp.waitAccess(t, func(l map[string]any) bool { return l[fMethod] == "GET" })
	if l[fURL] != origin.URL+"/inside" || l[fTunnel] == nil {
		t.Errorf("inner access line: got %v", l)
	}
	// A blocked path inside the tunnel gets the block page over TLS.
	resp, err := c.Get(origin.URL + "/blocked")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(b), "phishing") {
		t.Errorf("blocked inside tunnel: got %d %q", resp.StatusCode, b)
	}
}

func TestInterceptedInvalidUpstreamCertificate(t *testing.T) {
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "must not be shown")
	}))
	defer origin.Close()
	_, c := startIntercepting(t, testCA(t)) // origin's certificate not trusted
	resp, err := c.Get(origin.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || strings.Contains(string(b), "must not be shown") ||
		!strings.Contains(string(b), "could not be verified") {
		t.Errorf("got %d %q, want the 502 certificate page", resp.StatusCode, b)
	}
}

func TestInterceptedWebSocket(t *testing.T) {
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			c.Write(r.Context(), typ, append([]byte("echo:"), msg...))
		}
	}))
	defer origin.Close()
	_, c := startIntercepting(t, testCA(t), origin.Certificate())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, strings.Replace(origin.URL, "https://", "wss://", 1), &websocket.DialOptions{HTTPClient: c})
	if err != nil {
		t.Fatalf("wss through interception: %v", err)
	}
	defer ws.CloseNow()
	for _, m := range []string{"one", "two"} {
		ws.Write(ctx, websocket.MessageText, []byte(m))
		_, got, err := ws.Read(ctx)
		if err != nil || string(got) != "echo:"+m {
			t.Fatalf("got %q (%v), want %q", got, err, "echo:"+m)
		}
	}
}

func TestInterceptedPlainProtocolPassesThrough(t *testing.T) {
	ln := echoListener(t)
	tp, _ := startIntercepting(t, testCA(t))
	c, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", ln.Addr(), ln.Addr())
	want := "HTTP/1.1 200 Connection established\r\n\r\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("got %q (%v)", got, err)
	}
	fmt.Fprintf(c, "EHLO not tls\n")
	got = make([]byte, len("EHLO not tls\n"))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "EHLO not tls\n" {
		t.Fatalf("echo: got %q (%v)", got, err)
	}
}

// Inside an intercepted tunnel a request for another authority is answered
// 421, oversized headers 431, and the ambiguous heads the framing guard
// refuses 400; none of them reaches the origin.
func TestInterceptedRefusals(t *testing.T) {
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "reached")
	}))
	defer origin.Close()
	ca := testCA(t)
	tp, _ := startIntercepting(t, ca, origin.Certificate())
	host := strings.TrimPrefix(origin.URL, "https://")
	for _, tc := range []struct {
		name, req string
		want      int
	}{
		{"other Host inside the tunnel", "GET / HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n", 421},
		{"oversized headers inside the tunnel", "GET / HTTP/1.1\r\nHost: " + host + "\r\nX-Big: " + strings.Repeat("b", 200<<10) + "\r\n\r\n", 431},
		{"CL and TE", "POST / HTTP/1.1\r\nHost: " + host + "\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: " + host + "\r\nX: a\r\n b\r\n\r\n", 400},
		{"matching Host", "GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := interceptedRequest(t, tp.addr, ca.Certificate(), host, tc.req)
			if resp.StatusCode != tc.want || (tc.want != 200 && strings.Contains(body, "reached")) {
				t.Errorf("got %d %q, want %d", resp.StatusCode, body, tc.want)
			}
		})
	}
}

func TestHandshakeFailureReported(t *testing.T) {
	ca := testCA(t)
	var mu sync.Mutex
	var failed []string
	tp := startProxy(t, Config{
		Decider:   interceptAll,
		Intercept: func(host string) (*tls.Config, error) { return ca.TLSConfig(host), nil },
		HandshakeFailed: func(host string) {
			mu.Lock()
			failed = append(failed, host)
			mu.Unlock()
		},
	})
	// A client that does not trust the Picket CA (as a pinned app).
	tr := &http.Transport{Proxy: http.ProxyURL(tp.url)}
	defer tr.CloseIdleConnections()
	if _, err := (&http.Client{Transport: tr}).Get("https://pinned.example:443/"); err == nil {
		t.Fatal("want a certificate error at the client")
	}
	tp.waitAccess(t, func(l map[string]any) bool { return l[fMethod] == "CONNECT" && l[fError] == "handshake" })
	mu.Lock()
	defer mu.Unlock()
	if len(failed) != 1 || failed[0] != "pinned.example" {
		t.Errorf("handshake failures reported: got %v, want [pinned.example]", failed)
	}
}

// Sessions resume on both sides of an interception: a client's next
// connection through a new tunnel resumes its session with Picket (whose
// per-connection TLS configurations share their ticket keys), and Picket's
// next connection to the origin resumes its session there.
func TestInterceptedSessionsResume(t *testing.T) {
	var originResumed []bool
	var mu sync.Mutex
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		originResumed = append(originResumed, r.TLS.DidResume)
		mu.Unlock()
		w.Header().Set("Connection", "close") // a new upstream connection each time
		io.WriteString(w, "ok")
	}))
	defer origin.Close()
	ca := testCA(t)
	_, c := startIntercepting(t, ca, origin.Certificate())
	tr := c.Transport.(*http.Transport)
	tr.DisableKeepAlives = true // a new tunnel and handshake each time
	tr.TLSClientConfig.ClientSessionCache = tls.NewLRUClientSessionCache(8)

	var clientResumed []bool
	for i := range 3 {
		resp, err := c.Get(origin.URL + "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		clientResumed = append(clientResumed, resp.TLS.DidResume)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []bool{false, true, true}
	if !slices.Equal(clientResumed, want) {
		t.Errorf("client to Picket resumed: %v, want %v", clientResumed, want)
	}
	if !slices.Equal(originResumed, want) {
		t.Errorf("Picket to the origin resumed: %v, want %v", originResumed, want)
	}
}
