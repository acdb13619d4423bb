package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// sendRaw opens a raw connection to the proxy (with a deadline), writes raw
// and returns a reader of the answers.
func (tp *testProxy) sendRaw(t *testing.T, raw string) *bufio.Reader {
	t.Helper()
	c, err := net.DialTimeout("tcp", tp.addr, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	return bufio.NewReader(c)
}

// proxyHead is a proxy request head for origin (http://host:port) + path,
// with extra header lines (each ending in CRLF).
func proxyHead(method, origin, path, extra string) string {
	return method + " " + origin + path + " HTTP/1.1\r\nHost: " + strings.TrimPrefix(origin, "http://") + "\r\n" + extra + "\r\n"
}

func readResp(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, string(b)
}

// A connection that starts on the fast path and then sends what it does not
// serve (a POST with a body) is handed to net/http with every pipelined byte,
// and the answers come back in order on the same connection.
func TestFastPathHandsOffMidConnection(t *testing.T) {
	origin := echoOrigin(t)
	tp := startProxy(t, Config{})
	br := tp.sendRaw(t, proxyHead("GET", origin.URL, "/", "")+
		proxyHead("POST", origin.URL, "/echo", "Content-Length: 5\r\n")+"hello"+
		proxyHead("GET", origin.URL, "/", ""))
	for i, want := range []string{"origin page", "hello", "origin page"} {
		resp, body := readResp(t, br, "GET")
		if resp.StatusCode != 200 || body != want {
			t.Fatalf("response %d: %d %q, want 200 %q", i, resp.StatusCode, body, want)
		}
	}
}

// A CONNECT with early bytes behind a first request on the same connection
// gets its tunnel, and the early bytes reach the target: after a fast-path
// GET the fast path decides the CONNECT too; after a hand-off (a POST with a
// body) net/http serves it from the bytes the fast path had read.
func TestFastPathConnectAfterRequest(t *testing.T) {
	origin := echoOrigin(t)
	for _, tc := range []struct {
		name, first, method, want string
	}{
		{"after a fast-path GET", proxyHead("GET", origin.URL, "/", ""), "GET", "origin page"},
		{"after a hand-off", proxyHead("POST", origin.URL, "/echo", "Content-Length: 5\r\n") + "hello", "POST", "hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			echo := echoListener(t)
			tp := startProxy(t, Config{})
			target := echo.Addr().String()
			br := tp.sendRaw(t, tc.first+"CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\nearly bytes")
			if resp, body := readResp(t, br, tc.method); resp.StatusCode != 200 || body != tc.want {
				t.Fatalf("%s: %d %q", tc.method, resp.StatusCode, body)
			}
			resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("CONNECT: %v %v", resp, err)
			}
			got := make([]byte, len("early bytes"))
			if _, err := io.ReadFull(br, got); err != nil || string(got) != "early bytes" {
				t.Fatalf("echo through the tunnel: %q %v", got, err)
			}
		})
	}
}

// HEAD keeps the origin's Content-Length and sends no body; the connection
// then serves the next request.
func TestFastPathHead(t *testing.T) {
	origin := echoOrigin(t)
	tp := startProxy(t, Config{})
	br := tp.sendRaw(t, proxyHead("HEAD", origin.URL, "/big?n=12345", "")+proxyHead("GET", origin.URL, "/", ""))
	resp, body := readResp(t, br, "HEAD")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Length") != "12345" || body != "" {
		t.Fatalf("HEAD: %d, Content-Length %q, body %q", resp.StatusCode, resp.Header.Get("Content-Length"), body)
	}
	if resp, body := readResp(t, br, "GET"); resp.StatusCode != 200 || body != "origin page" {
		t.Fatalf("GET after HEAD: %d %q", resp.StatusCode, body)
	}
}

// Connection: close from the client: the answer says so and the proxy
// closes the connection.
func TestFastPathConnectionClose(t *testing.T) {
	origin := echoOrigin(t)
	tp := startProxy(t, Config{})
	br := tp.sendRaw(t, proxyHead("GET", origin.URL, "/", "Connection: close\r\n"))
	resp, body := readResp(t, br, "GET")
	if body != "origin page" || !resp.Close {
		t.Fatalf("got %q, Close %v; want the page and Connection: close", body, resp.Close)
	}
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after Connection: close: read %d, %v; want EOF", n, err)
	}
}

// Shutdown closes keep-alive connections waiting on the fast path at once
// instead of waiting out their idle timeout.
func TestFastPathShutdownClosesIdle(t *testing.T) {
	origin := echoOrigin(t)
	tp := startProxy(t, Config{IdleTimeout: time.Minute})
	br := tp.sendRaw(t, proxyHead("GET", origin.URL, "/", ""))
	if _, body := readResp(t, br, "GET"); body != "origin page" {
		t.Fatalf("got %q", body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v after %v", err, time.Since(start))
	}
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle connection after shutdown: read %d, %v; want EOF", n, err)
	}
}

// With proxy authentication on, a GET or HEAD without valid credentials is
// answered 407 (a HEAD without the page) and the connection stays open; the
// retry with credentials on the same connection reaches the origin without
// them, and the access log names the user. A client that keeps failing gets
// 429 with Retry-After.
func TestFastPathAuthentication(t *testing.T) {
	var leaked atomic.Int32
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Authorization") != "" {
			leaked.Add(1)
		}
		io.WriteString(w, "origin page")
	}))
	t.Cleanup(origin.Close)
	var failures atomic.Int32
	tp := startProxy(t, Config{
		AuthChallenge: `Basic realm="picket"`,
		Authenticate: func(_ netip.Addr, header string) (string, []string, error) {
			if header == "Basic YWxpY2U6czNjcmV0" { // alice:s3cret
				return "alice", nil, nil
			}
			if failures.Add(1) > 3 {
				return "", nil, &RateLimited{RetryAfter: 30 * time.Second}
			}
			return "", nil, errors.New("bad credentials")
		},
	})
	creds := "Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n"
	br := tp.sendRaw(t, proxyHead("GET", origin.URL, "/a", "")+
		proxyHead("HEAD", origin.URL, "/b", "")+
		proxyHead("GET", origin.URL, "/c", creds))

	resp, body := readResp(t, br, "GET")
	if resp.StatusCode != http.StatusProxyAuthRequired || resp.Header.Get("Proxy-Authenticate") != `Basic realm="picket"` ||
		resp.Close || !strings.Contains(body, "password") {
		t.Fatalf("GET without credentials: %d %q close=%v %q", resp.StatusCode, resp.Header.Get("Proxy-Authenticate"), resp.Close, body)
	}
	resp, body = readResp(t, br, "HEAD")
	if resp.StatusCode != http.StatusProxyAuthRequired || resp.Close || body != "" || resp.ContentLength <= 0 {
		t.Fatalf("HEAD without credentials: %d close=%v length %d %q", resp.StatusCode, resp.Close, resp.ContentLength, body)
	}
	if resp, body = readResp(t, br, "GET"); resp.StatusCode != 200 || body != "origin page" {
		t.Fatalf("GET with credentials on the same connection: %d %q", resp.StatusCode, body)
	}
	if leaked.Load() != 0 {
		t.Errorf("the origin received Proxy-Authorization")
	}
	tp.waitAccess(t, func(l map[string]any) bool {
		u, _ := l["url"].(string)
		return strings.HasSuffix(u, "/c") && l["user"] == "alice" && l["status"] == float64(200)
	})

	// Two more failures reach the limit: 429 with Retry-After, still on an
	// open connection.
	br = tp.sendRaw(t, proxyHead("GET", origin.URL, "/d", "Proxy-Authorization: Basic d3Jvbmc=\r\n")+
		proxyHead("GET", origin.URL, "/e", "Proxy-Authorization: Basic d3Jvbmc=\r\n")+
		proxyHead("GET", origin.URL, "/f", creds))
	for i, want := range []int{http.StatusProxyAuthRequired, http.StatusTooManyRequests, http.StatusOK} {
		resp, _ := readResp(t, br, "GET")
		if resp.StatusCode != want {
			t.Fatalf("request %d: %d, want %d", i, resp.StatusCode, want)
		}
		if want == http.StatusTooManyRequests && resp.Header.Get("Retry-After") != "30" {
			t.Errorf("429 Retry-After %q, want 30", resp.Header.Get("Retry-After"))
		}
	}
}

// slowOrigin is an origin (TLS when tlsOn): /slow answers after delay (or
// counts its cancellation), /stall sends 64 KiB of a longer body and stalls
// for delay (or counts its cancellation), /echo echoes the body, anything
// else "page " + path.
func slowOrigin(t *testing.T, tlsOn bool, delay time.Duration, cancelled *atomic.Int32) *httptest.Server {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				cancelled.Add(1)
				return
			}
		case "/stall":
			w.Header().Set("Content-Length", strconv.Itoa(1<<20))
			w.Write(bytes.Repeat([]byte("a"), 64<<10))
			w.(http.Flusher).Flush()
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				cancelled.Add(1)
			}
			return
		case "/echo":
			io.Copy(w, r.Body)
			return
		}
		io.WriteString(w, "page "+r.URL.Path)
	})
	origin := httptest.NewUnstartedServer(h)
	if tlsOn {
		origin.StartTLS()
	} else {
		origin.Start()
	}
	t.Cleanup(origin.Close)
	return origin
}

// A client that leaves while its request waits for a slow upstream cancels
// that request (as net/http's background read does), long before the
// response-header timeout; the access log records it as cancelled.
func TestFastPathClientGoneCancelsUpstream(t *testing.T) {
	var cancelled atomic.Int32
	origin := slowOrigin(t, false, time.Minute, &cancelled)
	tp := startProxy(t, Config{ResponseHeaderTimeout: time.Minute})
	c, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, proxyHead("GET", origin.URL, "/slow", ""))
	time.Sleep(100 * time.Millisecond)
	c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for cancelled.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the upstream request was not cancelled after the client left")
		}
		time.Sleep(10 * time.Millisecond)
	}
	tp.waitAccess(t, func(l map[string]any) bool {
		u, _ := l["url"].(string)
		return strings.HasSuffix(u, "/slow") && l["error"] == "canceled"
	})
}

// A client that leaves while a stalled response body is copied to it
// cancels the upstream request too (as net/http's background read does),
// long before the upstream idle timeout would end it.
func TestFastPathClientGoneDuringBodyCancelsUpstream(t *testing.T) {
	var cancelled atomic.Int32
	origin := slowOrigin(t, false, time.Minute, &cancelled)
	tp := startProxy(t, Config{TunnelIdleTimeout: time.Minute})
	c, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, proxyHead("GET", origin.URL, "/stall", ""))
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "GET"})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("got %v %v, want 200", resp, err)
	}
	c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for cancelled.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the upstream request was not cancelled after the client left during the body")
		}
		time.Sleep(10 * time.Millisecond)
	}
	deadline = time.Now().Add(10 * time.Second)
	for tp.OpenConns() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("got %d open client connections, want 0", tp.OpenConns())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A response slower than the watch's start keeps its connection: a request
// pipelined behind it is answered next, in order, and so is one sent after.
func TestFastPathSlowResponseKeepsConnection(t *testing.T) {
	var cancelled atomic.Int32
	origin := slowOrigin(t, false, 5*clientWatchTick, &cancelled)
	tp := startProxy(t, Config{})
	c, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	io.WriteString(c, proxyHead("GET", origin.URL, "/slow", "")+proxyHead("GET", origin.URL, "/fast", ""))
	for _, want := range []string{"page /slow", "page /fast"} {
		if resp, body := readResp(t, br, "GET"); resp.StatusCode != 200 || body != want {
			t.Fatalf("pipelined: %d %q, want %q", resp.StatusCode, body, want)
		}
	}
	for _, path := range []string{"/slow", "/fast"} {
		io.WriteString(c, proxyHead("GET", origin.URL, path, ""))
		if resp, body := readResp(t, br, "GET"); resp.StatusCode != 200 || body != "page "+path {
			t.Fatalf("after: %d %q, want %q", resp.StatusCode, body, "page "+path)
		}
	}
	if n := cancelled.Load(); n != 0 {
		t.Errorf("%d requests cancelled while their client stayed", n)
	}
}

// originHead is a request head in origin form for host + path.
func originHead(method, host, path, extra string) string {
	return method + " " + path + " HTTP/1.1\r\nHost: " + host + "\r\n" + extra + "\r\n"
}

// Inside an intercepted tunnel, pipelined requests the fast path serves
// (GET, HEAD) and declines (a POST with a body, a request for another
// authority) are answered in order on the one connection, and the access
// log has each inner request's full https URL.
func TestFastPathInsideTunnelHandsOff(t *testing.T) {
	var cancelled atomic.Int32
	origin := slowOrigin(t, true, 0, &cancelled)
	ca := testCA(t)
	tp, _ := startIntercepting(t, ca, origin.Certificate())
	host := strings.TrimPrefix(origin.URL, "https://")
	tc, br := intercepted(t, tp.addr, ca.Certificate(), host)
	io.WriteString(tc, originHead("GET", host, "/a?q=1", "")+
		originHead("HEAD", host, "/b", "")+
		originHead("POST", host, "/echo", "Content-Length: 5\r\n")+"hello"+
		originHead("GET", host, "/c", "")+
		originHead("GET", "169.254.169.254", "/d", ""))
	for i, want := range []struct {
		method string
		status int
		body   string
	}{{"GET", 200, "page /a"}, {"HEAD", 200, ""}, {"POST", 200, "hello"}, {"GET", 200, "page /c"}, {"GET", 421, ""}} {
		resp, body := readResp(t, br, want.method)
		if resp.StatusCode != want.status || want.body != "" && body != want.body {
			t.Fatalf("response %d: %d %q, want %d %q", i, resp.StatusCode, body, want.status, want.body)
		}
		if want.method == "HEAD" && resp.ContentLength != int64(len("page /b")) {
			t.Errorf("HEAD Content-Length %d", resp.ContentLength)
		}
	}
	tp.waitAccess(t, func(l map[string]any) bool { return l[fURL] == origin.URL+"/a" && l[fTunnel] != nil })
}

// A client that leaves an intercepted tunnel while its request waits for a
// slow origin cancels that request; a slow response with a request
// pipelined behind it keeps the tunnel, as on plain connections.
func TestFastPathInsideTunnelWatchesClient(t *testing.T) {
	var cancelled atomic.Int32
	origin := slowOrigin(t, true, 5*clientWatchTick, &cancelled)
	ca := testCA(t)
	tp, _ := startIntercepting(t, ca, origin.Certificate())
	host := strings.TrimPrefix(origin.URL, "https://")

	tc, br := intercepted(t, tp.addr, ca.Certificate(), host)
	io.WriteString(tc, originHead("GET", host, "/slow", "")+originHead("GET", host, "/fast", ""))
	for _, want := range []string{"page /slow", "page /fast"} {
		if resp, body := readResp(t, br, "GET"); resp.StatusCode != 200 || body != want {
			t.Fatalf("pipelined: %d %q, want %q", resp.StatusCode, body, want)
		}
	}
	io.WriteString(tc, originHead("GET", host, "/after", ""))
	if resp, body := readResp(t, br, "GET"); resp.StatusCode != 200 || body != "page /after" {
		t.Fatalf("after: %d %q", resp.StatusCode, body)
	}
	if n := cancelled.Load(); n != 0 {
		t.Fatalf("%d requests cancelled while their client stayed", n)
	}

	tc, _ = intercepted(t, tp.addr, ca.Certificate(), host)
	io.WriteString(tc, originHead("GET", host, "/slow", ""))
	time.Sleep(100 * time.Millisecond)
	tc.NetConn().Close()
	deadline := time.Now().Add(10 * time.Second)
	for cancelled.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the upstream request was not cancelled after the client left the tunnel")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
