package proxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// randReader is a deterministic stream of n pseudo-random bytes.
func randReader(seed uint64, n int64) io.Reader {
	var s [32]byte
	s[0] = byte(seed)
	return io.LimitReader(rand.NewChaCha8(s), n)
}

func sha(r io.Reader) (string, int64) {
	h := sha256.New()
	n, _ := io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil)), n
}

// echoOrigin answers /echo with the request body (streamed) and its hash in
// a trailer-free header-less way, /big?n= with n deterministic bytes, and
// /headers with the headers it received as text.
func echoOrigin(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Method", r.Method)
		_, _ = io.Copy(w, r.Body)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		var n int64
		fmt.Sscan(r.URL.Query().Get("n"), &n)
		w.Header().Set("Content-Length", fmt.Sprint(n))
		_, _ = io.Copy(w, randReader(7, n))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "origin page")
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Secret-Hop")
		w.Header().Set("X-Secret-Hop", "leak")
		w.Header().Set("Keep-Alive", "timeout=5")
		_ = r.Header.Write(w)
		fmt.Fprintf(w, "Host: %s\n", r.Host)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestStreamedBodies(t *testing.T) {
	origin := echoOrigin(t)
	tp := startProxy(t, Config{})
	c := tp.client(t)
	const size = 64 << 20

	for _, method := range []string{http.MethodPost, http.MethodPut} {
		t.Run(method, func(t *testing.T) {
			want, _ := sha(randReader(1, size))
			req, _ := http.NewRequest(method, origin.URL+"/echo", randReader(1, size))
			req.ContentLength = size
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, n := sha(resp.Body)
			if n != size || got != want {
				t.Fatalf("echoed body: got %d bytes sha %s, want %d bytes sha %s", n, got, size, want)
			}
			if m := resp.Header.Get("X-Method"); m != method {
				t.Errorf("origin saw method %q, want %q", m, method)
			}
			l := tp.waitAccess(t, func(l map[string]any) bool { return l[fMethod] == method })
			if l[fBytesIn] != float64(size) || l[fBytesOut] != float64(size) || l[fComplete] != true {
				t.Errorf("access log: got in=%v out=%v complete=%v, want %d, %d, true", l[fBytesIn], l[fBytesOut], l[fComplete], size, size)
			}
		})
	}
	t.Run("GET", func(t *testing.T) {
		want, _ := sha(randReader(7, size))
		resp, err := c.Get(fmt.Sprintf("%s/big?n=%d", origin.URL, size))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ContentLength != size {
			t.Errorf("Content-Length: got %d, want %d (framing must be kept)", resp.ContentLength, size)
		}
		got, n := sha(resp.Body)
		if n != size || got != want {
			t.Fatalf("body: got %d bytes sha %s, want %d bytes sha %s", n, got, size, want)
		}
	})
}

func TestChunkedResponseStreams(t *testing.T) {
	// The origin sends part 0, then waits until the client has it before
	// sending the rest: a proxy that buffered the response would deadlock.
	clientGotFirst := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "part 0\n")
		w.(http.Flusher).Flush()
		select {
		case <-clientGotFirst:
		case <-time.After(5 * time.Second):
			return
		}
		for i := 1; i < 5; i++ {
			fmt.Fprintf(w, "part %d\n", i)
			w.(http.Flusher).Flush()
		}
	}))
	defer origin.Close()
	tp := startProxy(t, Config{})
	resp, err := tp.client(t).Get(origin.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("transfer encoding: got %v, want chunked", resp.TransferEncoding)
	}
	first := make([]byte, len("part 0\n"))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "part 0\n" {
		t.Fatalf("first chunk: got %q (%v)", first, err)
	}
	close(clientGotFirst)
	rest, _ := io.ReadAll(resp.Body)
	if want := "part 1\npart 2\npart 3\npart 4\n"; string(rest) != want {
		t.Errorf("rest of body: got %q, want %q", rest, want)
	}
}

func TestKeepAliveReuse(t *testing.T) {
	var originConns atomic.Int32
	origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	origin.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			originConns.Add(1)
		}
	}
	origin.Start()
	defer origin.Close()
	tp := startProxy(t, Config{})
	c := tp.client(t)
	var reused int
	for i := range 10 {
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			if info.Reused {
				reused++
			}
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", origin.URL, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if reused != 9 {
		t.Errorf("client connections reused: got %d, want 9", reused)
	}
	if n := originConns.Load(); n != 1 {
		t.Errorf("upstream connections opened: got %d, want 1 (pooled)", n)
	}
}

func TestHopByHopViaAndForwardedFor(t *testing.T) {
	origin := echoOrigin(t)
	for _, tc := range []struct {
		name    string
		xff     bool
		wantXFF bool
	}{
		{"default no X-Forwarded-For", false, false},
		{"X-Forwarded-For on", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := startProxy(t, Config{Via: "picket", ForwardedFor: tc.xff})
			req, _ := http.NewRequest("GET", origin.URL+"/headers", nil)
			req.Header.Set("Connection", "X-Drop-Me")
			req.Header.Set("X-Drop-Me", "secret")
			req.Header.Set("Proxy-Authorization", "Basic Zm9vOmJhcg==")
			req.Header.Set("X-Keep", "yes")
			resp, err := tp.client(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			seen := string(b)
			for _, bad := range []string{"X-Drop-Me", "Proxy-Authorization"} {
				if strings.Contains(seen, bad) {
					t.Errorf("origin received hop-by-hop header %s:\n%s", bad, seen)
				}
			}
			if !strings.Contains(seen, "X-Keep: yes") {
				t.Errorf("origin did not receive end-to-end header X-Keep:\n%s", seen)
			}
			if !strings.Contains(seen, "Via: 1.1 picket") {
				t.Errorf("origin did not receive Via:\n%s", seen)
			}
			if got := strings.Contains(seen, "X-Forwarded-For: 127.0.0.1"); got != tc.wantXFF {
				t.Errorf("X-Forwarded-For present: got %v, want %v:\n%s", got, tc.wantXFF, seen)
			}
			if resp.Header.Get("X-Secret-Hop") != "" || resp.Header.Get("Keep-Alive") != "" {
				t.Errorf("client received upstream hop-by-hop headers: %v", resp.Header)
			}
			if v := resp.Header.Get("Via"); v != "1.1 picket" {
				t.Errorf("response Via: got %q, want %q", v, "1.1 picket")
			}
		})
	}
}

// A response without a Content-Type gets none on the way, on every path:
// the client sniffs the body as it would without Picket. Sniffed by
// net/http's server (or its HTTP/2 server), the type would come with
// "charset=utf-8", which overrides the page's own <meta charset>.
func TestNoContentTypeAdded(t *testing.T) {
	const body = "<html><head><meta charset=\"shift_jis\"></head><body>\x82\xb1\x82\xf1</body></html>"
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = nil // sent without one
		io.WriteString(w, body)
	})
	plain := httptest.NewServer(handler)
	defer plain.Close()
	tlsOrigin, _ := h2Origin(t, handler)
	ca := testCA(t)
	tp := startInterceptingWith(t, ca, Config{}, tlsOrigin.Certificate())
	for _, tc := range []struct {
		name   string
		client *http.Client
		method string
		url    string
	}{
		{"fast path", tp.client(t), http.MethodGet, plain.URL},
		{"net/http path", tp.client(t), http.MethodPost, plain.URL},
		{"intercepted HTTP/2", h2Client(t, tp, ca), http.MethodGet, tlsOrigin.URL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, tc.url, strings.NewReader("x"))
			if tc.method == http.MethodGet {
				req.Body = http.NoBody
			}
			resp, err := tc.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != body {
				t.Errorf("body: got %q, want %q", b, body)
			}
			if ct, ok := resp.Header["Content-Type"]; ok {
				t.Errorf("Content-Type: got %q, want none", ct)
			}
		})
	}
}

func TestAbsoluteURLWinsOverHost(t *testing.T) {
	origin := echoOrigin(t)
	tp := startProxy(t, Config{})
	u, _ := url.Parse(origin.URL)
	status, rest := tp.rawRequest(t, "GET "+origin.URL+"/headers HTTP/1.1\r\nHost: evil.example:81\r\nConnection: close\r\n\r\n")
	if !strings.Contains(status, "200") {
		t.Fatalf("status: got %q, want 200", status)
	}
	if !strings.Contains(rest, "Host: "+u.Host) {
		t.Errorf("origin saw a Host other than the URL's %s:\n%s", u.Host, rest)
	}
}

func TestConnectTunnel(t *testing.T) {
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secret over tls")
	}))
	defer origin.Close()
	tp := startProxy(t, Config{})
	tr := &http.Transport{Proxy: http.ProxyURL(tp.url), TLSClientConfig: &tls.Config{RootCAs: poolOf(origin.Certificate())}}
	defer tr.CloseIdleConnections()
	for i := range 3 {
		resp, err := (&http.Client{Transport: tr}).Get(origin.URL)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "secret over tls" {
			t.Fatalf("body: got %q", b)
		}
		// The client saw the origin's own certificate: nothing intercepted.
		if !resp.TLS.PeerCertificates[0].Equal(origin.Certificate()) {
			t.Errorf("tunnel presented a certificate other than the origin's")
		}
	}
	tr.CloseIdleConnections()
	l := tp.waitAccess(t, func(l map[string]any) bool { return l[fMethod] == "CONNECT" })
	if l[fAction] != "tunnel" || l[fStatus] != float64(200) || l[fBytesIn].(float64) == 0 || l[fBytesOut].(float64) == 0 {
		t.Errorf("tunnel access line: got %v", l)
	}
}

func TestConnectPlainProtocol(t *testing.T) {
	ln := echoListener(t)
	tp := startProxy(t, Config{})
	c, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	// The first bytes of the tunnel travel in the same write as the CONNECT.
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\nhello early\n", ln.Addr(), ln.Addr())
	want := "HTTP/1.1 200 Connection established\r\n\r\nhello early\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("got %q (%v), want %q", got, err, want)
	}
	fmt.Fprintf(c, "second line\n")
	got = make([]byte, len("second line\n"))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "second line\n" {
		t.Fatalf("got %q (%v)", got, err)
	}
}

func TestWebSocketEcho(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	}))
	defer origin.Close()
	tp := startProxy(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, strings.Replace(origin.URL, "http://", "ws://", 1), &websocket.DialOptions{HTTPClient: tp.client(t)})
	if err != nil {
		t.Fatalf("dial through proxy: %v", err)
	}
	ws.SetReadLimit(1 << 20)
	for _, m := range []string{"hello", strings.Repeat("x", 100000), "bye"} {
		if err := ws.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			t.Fatal(err)
		}
		_, got, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != m {
			t.Fatalf("echo: got %d bytes, want %d", len(got), len(m))
		}
	}
	ws.Close(websocket.StatusNormalClosure, "")
	l := tp.waitAccess(t, func(l map[string]any) bool { return l[fStatus] == float64(101) })
	if l[fBytesOut].(float64) < 100000 {
		t.Errorf("websocket bytes out: got %v, want >= 100000", l[fBytesOut])
	}
}

// A 101 is passed on only as the answer to the upgrade the client asked
// for (as httputil.ReverseProxy checks). An origin that switches a request
// that asked for none, or to another protocol, gets the client a 502:
// passed on, it would turn the client's proxy connection into a raw pipe
// to that origin, which would then read the next requests the client sends
// on it, for any host, undecided.
func TestUnaskedSwitchRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var reqs atomic.Int32 // requests the origin read
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					reqs.Add(1)
					_, _ = io.Copy(io.Discard, req.Body)
					_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
				}
			}()
		}
	}()
	origin := ln.Addr().String()
	tp := startProxy(t, Config{})
	for _, tc := range []struct{ name, head string }{
		{"no upgrade asked (net/http path)", "POST http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\nContent-Length: 1\r\n\r\na"},
		{"no upgrade asked (fast path)", "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\n\r\n"},
		{"another protocol asked", "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reqs.Store(0)
			c, err := net.Dial("tcp", tp.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			_, _ = io.WriteString(c, strings.ReplaceAll(tc.head, "ORIGIN", origin))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != http.StatusBadGateway {
				t.Fatalf("status: got %d, want 502", resp.StatusCode)
			}
			if resp.Close {
				return // the connection ends: nothing more can go on it
			}
			// The connection is still Picket's: the next request on it is
			// decided and answered by Picket, not read by the origin.
			_, _ = io.WriteString(c, "GET http://127.0.0.1:0/next HTTP/1.1\r\nHost: 127.0.0.1:0\r\n\r\n")
			if resp, err = http.ReadResponse(br, nil); err != nil {
				t.Fatalf("next request: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("next request: got %d, want 400 from Picket", resp.StatusCode)
			}
			if n := reqs.Load(); n != 1 {
				t.Errorf("origin read %d requests, want 1", n)
			}
		})
	}
}

func TestUpstreamFailures(t *testing.T) {
	// A port that refuses: listen, take the address, close.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := ln.Addr().String()
	ln.Close()

	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	defer slow.Close()

	selfSigned := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "should never be seen")
	}))
	defer selfSigned.Close()

	unanswered := unansweredAddr(t)

	// The configured timeouts (300ms) are what end the slow and unanswered
	// cases: the slow origin waits 10s and the unanswered handshake for
	// ever, past rawRequest's 5s deadline, so without them the status read
	// fails. (No wall-clock budget per request: that would time the
	// machine.)
	tp := startProxy(t, Config{ResponseHeaderTimeout: 300 * time.Millisecond, DialTimeout: 300 * time.Millisecond})
	type failureCase struct {
		name       string
		request    string // method and target
		wantStatus int
		wantKind   string
	}
	cases := []failureCase{
		{"upstream down", "GET http://" + refused + "/", 502, "refused"},
		{"upstream slow", "GET " + slow.URL + "/", 504, "timeout"}, // 300ms configured, origin waits 10s
		{"invalid upstream certificate", "GET " + selfSigned.URL + "/", 502, "tls"},
	}
	if unanswered != "" {
		// dial_timeout (300ms) bounds a handshake that is never answered,
		// for forwarded requests and CONNECT tunnels alike.
		cases = append(cases,
			failureCase{"upstream never answers the handshake", "GET http://" + unanswered + "/", 504, "timeout"},
			failureCase{"CONNECT target never answers the handshake", "CONNECT " + unanswered, 504, "timeout"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Absolute-form request for both schemes: the proxy itself
			// makes the upstream connection.
			status, rest := tp.rawRequest(t, tc.request+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			if !strings.Contains(status, fmt.Sprint(tc.wantStatus)) {
				t.Fatalf("status: got %q, want %d", status, tc.wantStatus)
			}
			if strings.Contains(rest, "should never be seen") {
				t.Errorf("the body of an unverified origin reached the client")
			}
			if !strings.Contains(rest, "<html") {
				t.Errorf("want a human-readable page, got %q", rest)
			}
			tp.waitAccess(t, func(l map[string]any) bool { return l[fError] == tc.wantKind })
		})
	}
}

func TestExtraRootsTrusted(t *testing.T) {
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "trusted")
	}))
	defer origin.Close()
	tp := startProxy(t, Config{RootCAs: poolOf(origin.Certificate())})
	status, rest := tp.rawRequest(t, "GET "+origin.URL+"/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.Contains(status, "200") || !strings.Contains(rest, "trusted") {
		t.Fatalf("got %q %q, want 200 trusted", status, rest)
	}
}

func TestMalformedRequests(t *testing.T) {
	tp := startProxy(t, Config{MaxHeaderBytes: 4096})
	for _, tc := range []struct {
		name, raw, want string
	}{
		{"malformed request line", "GARBAGE\r\n\r\n", "400"},
		{"oversized headers", "GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 16<<10) + "\r\n\r\n", "431"},
		{"CONNECT without port", "CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", "400"},
		{"CONNECT port 0", "CONNECT example.com:0 HTTP/1.1\r\nHost: example.com:0\r\n\r\n", "400"},
		{"CONNECT port too large", "CONNECT example.com:70000 HTTP/1.1\r\nHost: example.com:70000\r\n\r\n", "400"},
		{"unsupported scheme", "GET ftp://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", "400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _ := tp.rawRequest(t, tc.raw)
			if !strings.Contains(status, tc.want) {
				t.Errorf("status: got %q, want %s", status, tc.want)
			}
		})
	}
}

func TestRequestsToTheProxyItself(t *testing.T) {
	tp := startProxy(t, Config{})
	for _, tc := range []struct {
		name, raw, want string
	}{
		{"origin form root", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "200"},
		{"origin form unknown", "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "404"},
		{"absolute form to self", "GET http://" + tp.addr + "/ HTTP/1.1\r\nHost: " + tp.addr + "\r\nConnection: close\r\n\r\n", "200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := tp.rawRequest(t, tc.raw)
			if !strings.Contains(status, tc.want) || !strings.Contains(body, "Picket") {
				t.Errorf("got %q, want %s and a Picket page", status, tc.want)
			}
		})
	}
	if n := len(tp.access.Lines()); n != 0 {
		t.Errorf("local pages must not be proxied: got %d access lines", n)
	}
}

func TestClientNotAllowed(t *testing.T) {
	origin := echoOrigin(t)
	tp := startProxy(t, Config{Clients: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	resp, err := tp.client(t).Get(origin.URL + "/headers")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("status: got %d, want 403", resp.StatusCode)
	}
}

func TestQueryRedactedInAccessLog(t *testing.T) {
	origin := echoOrigin(t)
	for _, tc := range []struct {
		name     string
		logQuery bool
		want     string
	}{
		{"redacted by default", false, "/headers"},
		{"kept when asked", true, "/headers?token=s3cret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := startProxy(t, Config{LogQuery: tc.logQuery})
			resp, err := tp.client(t).Get(origin.URL + "/headers?token=s3cret")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			l := tp.waitAccess(t, func(l map[string]any) bool { return l[fMethod] == "GET" })
			if u := l[fURL].(string); u != origin.URL+tc.want {
				t.Errorf("logged URL: got %q, want %q", u, origin.URL+tc.want)
			}
		})
	}
}

func TestDeciderBlocks(t *testing.T) {
	origin := echoOrigin(t)
	var asked atomic.Int32
	tp := startProxy(t, Config{Decider: DeciderFunc(func(_ context.Context, r *Request) (Decision, error) {
		asked.Add(1)
		if strings.Contains(r.URL.Path, "bad") || (r.Connect && strings.HasPrefix(r.URL.Host, "blocked.")) {
			return Decision{Action: Block, Verdict: "malware", Rule: "test-rule"}, nil
		}
		return Decision{Action: Allow}, nil
	})})
	resp, err := tp.client(t).Get(origin.URL + "/bad")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(b), "malware") || resp.Header.Get("X-Picket-Reason") == "" {
		t.Errorf("block: got %d %q", resp.StatusCode, resp.Header.Get("X-Picket-Reason"))
	}
	status, _ := tp.rawRequest(t, "CONNECT blocked.example:443 HTTP/1.1\r\nHost: blocked.example:443\r\n\r\n")
	if !strings.Contains(status, "403") {
		t.Errorf("blocked CONNECT: got %q, want 403", status)
	}
	l := tp.waitAccess(t, func(l map[string]any) bool { return l[fAction] == "block" && l[fMethod] == "GET" })
	if l[fRule] != "test-rule" || l[fVerdict] != "malware" {
		t.Errorf("access line: got %v", l)
	}
}

func TestGracefulShutdown(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		io.WriteString(w, "finished")
	}))
	defer origin.Close()
	tp := startProxy(t, Config{})
	c := tp.client(t)
	got := make(chan string, 1)
	go func() {
		resp, err := c.Get(origin.URL)
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	// The request is in flight: the origin has it.
	select {
	case <-arrived:
	case err := <-got:
		t.Fatalf("the request ended before reaching the origin: %s", err)
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shut <- tp.Shutdown(ctx)
	}()
	// New connections are refused (once Shutdown closed the listener)
	// while the in-flight one continues. Polled, not slept: the deadline
	// only tells "never" from "not yet".
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		c2, err := net.DialTimeout("tcp", tp.addr, time.Second)
		if err != nil {
			break
		}
		c2.Close()
		if time.Now().After(deadline) {
			t.Fatal("proxy still accepts connections 10s into shutdown")
		}
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned with a request in flight: %v", err)
	default:
	}
	close(release)
	if b := <-got; b != "finished" {
		t.Errorf("in-flight request: got %q, want %q", b, "finished")
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
